"""Training curves of a run and its report panels: per-epoch losses, accuracies and
simulation statuses (``metrics.nc``), and any metric logged per minibatch (dim ``step``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.figures.common import (  # noqa: E402
    ROLLING_WINDOW,
    _label,
    _lines,
    _save,
    plot_rolling,
    step_axis,
)


def plot_step_metric(
    ds: xr.Dataset, name: str, path: str | Path, *, window: int = ROLLING_WINDOW
) -> Path:
    """One logged metric ``ds[name]`` (dims ``step`` plus up to two more) over training:
    rolling mean +- std over ``window`` logs; one line per coordinate of the second dim, one
    panel per coordinate of a third.

    Args:
        ds: training metrics with dim ``step``.
        path: the PNG file to write (its folder is created).
        name: the variable to plot.
        window: rolling window (logged minibatches).
    """
    da = ds[name]
    x, xlabel = step_axis(ds)
    extra = [d for d in da.dims if d != "step"]
    panels: list[tuple[str, xr.DataArray]] = [("", da)]
    if len(extra) == 2:
        panels = [(f"{extra[0]}={c}", da.sel({extra[0]: c})) for c in da[extra[0]].values]
    elif len(extra) > 2:
        raise ValueError(f"{name} has too many dims to plot: {da.dims}")
    n = len(panels)
    ncols = min(4, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.reshape(-1)[n:]:
        ax.set_visible(False)
    for ax, (title, sub) in zip(axes.reshape(-1), panels, strict=False):
        for label, y in _lines(sub.transpose("step", ...), "step"):
            if not np.any(np.isfinite(y)):
                continue  # e.g. a reference that a run did not log
            plot_rolling(ax, x, np.asarray(y), window=min(window, max(1, x.size)), label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_label(name))
        if title:
            ax.set_title(title, fontsize=9)
        if len(ax.get_legend_handles_labels()[0]) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{name} (rolling mean +- std, window {window})", fontsize=10)
    return _save(fig, path)


def _epoch_series(ds: xr.Dataset, key: str) -> list[tuple[str, np.ndarray]]:
    """``(label, values over epoch)`` of ``ds[key]``, one per ``run`` when there is that dim."""
    da = ds[key]
    if "run" in da.dims:
        return [(f"{key} ({r})", da.sel(run=r).values) for r in da["run"].values]
    return [(key, da.values)]


def _plot_epochs(
    ds: xr.Dataset,
    keys: Sequence[str],
    path: str | Path,
    ylabel: str,
    *,
    scale: float = 1.0,
    log: bool = False,
) -> Path:
    """Per-epoch curves of ``keys`` (line style per key, colour per run)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = ("-", "--", ":")
    for key, style in zip(keys, styles, strict=False):
        if key not in ds:
            continue
        for j, (label, y) in enumerate(_epoch_series(ds, key)):
            ax.plot(
                ds["epoch"].values, scale * y, style, marker="o", ms=2, color=f"C{j}", label=label
            )
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    many = "run" in ds.dims
    ax.legend(fontsize=6 if many else 8, ncol=2 if many else 1)
    return _save(fig, path)


def plot_losses(ds: xr.Dataset, path: str | Path) -> Path:
    """Train / validation / test loss over epochs (log scale when positive); one colour per
    ``run`` if the Dataset has that dim.

    Args:
        ds: training metrics (``metrics.nc``, dim ``epoch``).
        path: the PNG file to write (its folder is created).
    """
    keys = [k for k in ("train_loss", "val_loss", "test_loss") if k in ds]
    vals = np.concatenate([ds[k].values.reshape(-1) for k in keys]) if keys else np.array([])
    finite = vals[np.isfinite(vals)]
    return _plot_epochs(ds, keys, path, "loss", log=bool(finite.size and np.all(finite > 0)))


def plot_accuracy(ds: xr.Dataset, path: str | Path) -> Path:
    """Train / validation / test accuracy (percent) over epochs.

    Args:
        ds: training metrics (``metrics.nc``, dim ``epoch``).
        path: the PNG file to write (its folder is created).
    """
    keys = ("train_accuracy", "val_accuracy", "test_accuracy")
    return _plot_epochs(ds, keys, path, "accuracy [%]", scale=100.0)


def plot_status(ds: xr.Dataset, path: str | Path) -> Path:
    """Samples per simulation status (converged, diverged, max_steps) per epoch.

    Args:
        ds: training metrics (``metrics.nc``, dim ``epoch``).
        path: the PNG file to write (its folder is created).
    """
    keys = ("n_converged", "n_diverged", "n_max_steps")
    return _plot_epochs(ds, keys, path, "samples per epoch")
