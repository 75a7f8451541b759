"""Figures of analysis results, drawn from ``xarray.Dataset`` only (nothing is recomputed).

* :func:`plot_losses`, :func:`plot_accuracy`, :func:`plot_status`: per-epoch curves of a
  training run (``metrics.nc``);
* :func:`plot_step_metric`: one logged metric over training (dim ``step``) with the paper's
  rolling mean +- rolling std (Fig. 3: window 30);
* :func:`plot_fig3_panels`: the six panels of the paper's Fig. 3 (one line per run);
* :func:`plot_fig2`, :func:`plot_figS1`, :func:`plot_figC2C3`, :func:`plot_alignment_runs`:
  the figures of the ``analyses/`` scripts.

Every function writes a PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROLLING_WINDOW = 30
"""Window of the rolling mean +- std over training (the paper's Fig. 3)."""

LABELS = {
    "condition1": "Condition 1 (std/mean of |r_k|)",
    "condition1_dev_r": "Condition 1 (reference dev_r)",
    "condition2": "Condition 2  |PQ|/|Q|",
    "condition3_ss": "Condition 3 margin (steady state)",
    "condition3_ff": "Condition 3 margin (feedforward)",
    "stability_measure": r"$\lambda_{max}(A_{PI})$ [1/$\tau_u$]",
    "angle_network": "angle with reference [deg]",
    "angle_W": "angle of W_i update [deg]",
    "angle_b": "angle of b_i update [deg]",
    "angle_Q_JT": r"angle(Q, $J^T$) [deg]",
    "angle_Q_pinv": r"angle(Q, $J^T(JJ^T+\gamma I)^{-1}$) [deg]",
    "max_re_eig": r"max Re eig [1/$\tau_u$]",
    "r_norm": r"$|r_k|$",
    "settling_time": r"settling time [$\tau_u$]",
    "decay_rate": r"decay rate of |e| [1/$\tau_u$]",
    "dist_lemma1_output": "distance to Lemma 1 (output)",
    "dist_lemma1_u": "distance to Lemma 1 (u)",
    "final_ratio": "convergence ratio at T",
    "status_count": "samples per status",
}


def _save(
    fig: Figure, path: str | Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)
) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def rolling_mean_std(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing rolling mean and std (ddof 1; 0 where the window holds one value) of the 1-D
    series ``values`` over ``window`` points, NaNs skipped, ``min_periods = 1`` (pandas'
    ``rolling`` as in the reference plotting code).

    Examples:
        >>> import numpy as np
        >>> mean, std = rolling_mean_std(np.array([1.0, 3.0, np.nan, 5.0]), window=2)
        >>> mean.tolist(), std.tolist()
        ([1.0, 2.0, 3.0, 5.0], [0.0, 1.4142135623730951, 0.0, 0.0])
    """
    v = np.asarray(values, dtype=float)
    mean = np.full(v.shape, np.nan)
    std = np.full(v.shape, np.nan)
    for k in range(v.size):
        w = v[max(0, k - window + 1) : k + 1]
        w = w[np.isfinite(w)]
        if w.size:
            mean[k] = w.mean()
            std[k] = w.std(ddof=1) if w.size > 1 else 0.0
    return mean, std


def plot_rolling(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    *,
    window: int = ROLLING_WINDOW,
    label: str | None = None,
    **style: object,
) -> None:
    """Rolling mean (line) +- rolling std (band) of ``y`` against ``x`` on the axes ``ax``
    (:func:`rolling_mean_std` over ``window`` points); ``label`` and the matplotlib ``style``
    keywords go to the line."""
    mean, std = rolling_mean_std(y, window)
    (line,) = ax.plot(x, mean, label=label, **style)  # type: ignore[arg-type]
    ax.fill_between(x, mean - std, mean + std, alpha=0.15, lw=0, color=line.get_color())


def step_axis(ds: xr.Dataset) -> tuple[np.ndarray, str]:
    """The x values and axis label of dim ``step`` of ``ds``: epochs when every log is the
    first batch of its epoch (``step_epoch``/``step_batch`` coords), else the global step."""
    if "step_epoch" in ds.coords and "step_batch" in ds.coords:
        if np.all(ds["step_batch"].values == 0):
            return ds["step_epoch"].values.astype(float), "epoch"
    return ds["step"].values.astype(float), "step (minibatch)"


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _lines(da: xr.DataArray, along: str) -> list[tuple[str, np.ndarray]]:
    """One series per coordinate value of the (at most one) dim other than ``along``."""
    other = [d for d in da.dims if d != along]
    if not other:
        return [("", da.values)]
    d = other[0]
    return [(f"{d}={c}", da.sel({d: c}).values) for c in da[d].values]


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


def plot_error_norm(ds: xr.Dataset, path: str | Path, samples: int = 10) -> Path:
    """``|e(t)|`` of the first ``samples`` samples (log scale).

    Args:
        ds: a simulation or convergence Dataset with ``e_norm`` (time, sample).
        path: the PNG file to write (its folder is created).
        samples: number of samples drawn.
    """
    fig, ax = plt.subplots(figsize=(5, 3.5))
    t = ds["time"].values
    for s in range(min(samples, ds.sizes["sample"])):
        ax.semilogy(t, ds["e_norm"].isel(sample=s).values, lw=0.8)
    ax.set_xlabel(r"time [$\tau_u$]")
    ax.set_ylabel(r"$|e(t)|$")
    return _save(fig, path)


# ------------------------------------------------------------------------ paper figures
FIG3_PANELS: tuple[tuple[str, str | None, str], ...] = (
    ("condition2", None, "Condition 2"),
    ("condition1_dev_r", None, "Condition 1 (dev_r)"),
    ("stability_measure", None, r"$\lambda_{max}(A_{PI})$"),
    ("angle_network", "mn", r"$\Delta W \angle \Delta W^{MN}$ [deg]"),
    ("angle_network", "gn", r"$\Delta W \angle \Delta W^{GN}$ [deg]"),
    ("angle_network", "ssa", r"$\Delta W \angle \Delta W^{SSA}$ [deg]"),
)
"""The six panels of Fig. 3: (variable, alignment reference or None, y label)."""


def _run_style(run: str) -> dict[str, object]:
    """Fig. 3 colours: DFC blue, DFC-SS green, DFC-SSA purple, DFA red; dashed when fixed."""
    color = "red" if "dfa" in run else "C0"
    if "ssa" in run:
        color = "purple"
    elif "ss" in run:
        color = "green"
    elif "dfc" in run:
        color = "royalblue"
    return {"color": color, "linestyle": "--" if "fixed" in run else "-", "lw": 1.0}


def plot_fig3_panels(
    ds: xr.Dataset, path: str | Path, *, window: int = ROLLING_WINDOW, title: str = ""
) -> Path:
    """The paper's Fig. 3: Condition 2, Condition 1, max Re eig(A_PI), MN, GN and SSA angles
    over training, rolling mean +- std, one line per coordinate of dim ``run`` (if any).
    Panels whose variable is missing are left empty.

    Args:
        ds: training metrics with dim ``step`` (and optionally ``run``).
        path: the PNG file to write (its folder is created).
        window: rolling window (logged minibatches).
        title: figure title.
    """
    runs = [str(r) for r in ds["run"].values] if "run" in ds.dims else [""]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True)
    x, xlabel = step_axis(ds)
    for ax, (name, ref, ylabel) in zip(axes.reshape(-1), FIG3_PANELS, strict=True):
        ax.set_ylabel(ylabel)
        if name not in ds:
            continue
        for run in runs:
            da = ds[name].sel(run=run) if run else ds[name]
            if ref is not None:
                if "reference" not in da.dims or ref not in da["reference"].values:
                    continue
                da = da.sel(reference=ref)
            y = da.values
            if not np.any(np.isfinite(y)):
                continue
            plot_rolling(ax, x, y, window=min(window, x.size), label=run or None, **_run_style(run))
    for ax in axes[1]:
        ax.set_xlabel(xlabel)
    if runs != [""]:
        handles: dict[str, Artist] = {}
        for ax in axes.reshape(-1):
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, h)
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
        )
    if title:
        fig.suptitle(title)
    return _save(fig, path, rect=(0, 0.05, 1, 1) if runs != [""] else (0, 0, 1, 1))


def plot_fig2(ds: xr.Dataset, path: str | Path) -> Path:
    """Fig. 2: PCA projection of the admissible random ``Q = J^T M`` (dots), the damped
    pseudo-inverses (orange, coloured by gamma), ``J^+`` (green X) and ``J^T`` (red X).

    Args:
        ds: the Dataset of ``analyses/fig2.py`` (``Q_pc``, ``damped_pinv_pc``, ``gamma``, ...).
        path: the PNG file to write (its folder is created).
    """
    fig, ax = plt.subplots(figsize=(6, 5.2))
    q = ds["Q_pc"].values
    ax.scatter(q[:, 0], q[:, 1], s=4, alpha=0.3, color="midnightblue", label=r"random $Q$")
    d = ds["damped_pinv_pc"].values
    sc = ax.scatter(
        d[:, 0],
        d[:, 1],
        c=np.log10(ds["gamma"].values),
        cmap="autumn",
        marker="x",
        s=25,
        label=r"$J^T(JJ^T+\gamma I)^{-1}$",
    )
    fig.colorbar(sc, ax=ax, label=r"$\log_{10}\gamma$")
    p = ds["pinv_pc"].values
    t = ds["JT_pc"].values
    ax.scatter([p[0]], [p[1]], marker="X", s=250, color="green", label=r"$J^\dagger$")
    ax.scatter([t[0]], [t[1]], marker="X", s=250, color="red", label=r"$J^T$")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Fig. 2: admissible Q (Conditions 2, 3) in PC space")
    return _save(fig, path)


def plot_figS1(ds: xr.Dataset, path: str | Path, *, window: int = ROLLING_WINDOW) -> Path:
    """Fig. S1: the batch mean of ``max Re eig`` of each A matrix over training (rolling mean
    +- std), one panel per matrix, one line per ``run`` (if any).

    Args:
        ds: training metrics with ``max_re_eig`` (step, matrix).
        path: the PNG file to write (its folder is created).
        window: rolling window (logged minibatches).
    """
    mats = [str(m) for m in ds["matrix"].values]
    runs = [str(r) for r in ds["run"].values] if "run" in ds.dims else [""]
    fig, axes = plt.subplots(1, len(mats), figsize=(4 * len(mats), 3.3), squeeze=False)
    x, xlabel = step_axis(ds)
    for ax, m in zip(axes[0], mats, strict=True):
        for run in runs:
            da = ds["max_re_eig"].sel(matrix=m)
            if run:
                da = da.sel(run=run)
            plot_rolling(ax, x, da.values, window=min(window, x.size), label=run or None)
        ax.set_title(m)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(r"max Re eig [1/$\tau_u$]")
        if runs != [""]:
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_figC2C3(ds: xr.Dataset, path: str | Path) -> Path:
    """Figs. C2/C3 (the reference's S2-S4): the Condition-2 measure, angle(Q, J^T) and the
    angle of Q with the damped pseudo-inverse over feedback-learning iterations; one row per
    (activation, sweep), one line per swept value (``value`` (sweep, case); NaN = unused).

    Args:
        ds: the Dataset of ``analyses/figC2C3.py``.
        path: the PNG file to write (its folder is created).
    """
    rows = [(str(a), str(s)) for a in ds["activation"].values for s in ds["sweep"].values]
    cols = ("condition2", "angle_Q_JT", "angle_Q_pinv")
    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 2.7 * len(rows)), squeeze=False)
    it = ds["iteration"].values
    for r, (act, sweep) in enumerate(rows):
        sub = ds.sel(activation=act, sweep=sweep)
        for case in sub["case"].values:
            val = float(sub["value"].sel(case=case))
            if not np.isfinite(val):
                continue
            line = sub.sel(case=case)
            for c, name in enumerate(cols):
                axes[r, c].plot(it, line[name].values, lw=1, label=f"{sweep}={val:g}")
        for c, name in enumerate(cols):
            axes[r, c].set_ylabel(_label(name), fontsize=8)
            axes[r, c].set_title(f"{act} network, sweep of {sweep}", fontsize=9)
        axes[r, 2].legend(fontsize=6, ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("feedback-learning iteration")
    return _save(fig, path)


def plot_alignment_runs(
    ds: xr.Dataset,
    path: str | Path,
    refs: Sequence[str] = ("bp", "mn", "ssa"),
    *,
    window: int = 5,
) -> Path:
    """Whole-network alignment angles over training for every ``run`` (one panel per
    reference) and the Condition-2 measure when logged.

    Args:
        ds: training metrics with ``angle_network`` (step, reference) and optionally ``run``.
        path: the PNG file to write (its folder is created).
        refs: the alignment references drawn (those present in ``ds``).
        window: rolling window (logged minibatches).
    """
    names = [r for r in refs if r in ds["reference"].values]
    extra = 1 if "condition2" in ds else 0
    fig, axes = plt.subplots(
        1, len(names) + extra, figsize=(4.3 * (len(names) + extra), 3.4), squeeze=False
    )
    x, xlabel = step_axis(ds)
    runs = [str(r) for r in ds["run"].values] if "run" in ds.dims else [""]
    colors = {run: f"C{j}" for j, run in enumerate(runs)}  # one colour per run everywhere
    for ax, ref in zip(axes[0], names, strict=False):
        for run in runs:
            da = ds["angle_network"].sel(reference=ref)
            if run:
                da = da.sel(run=run)
            if np.any(np.isfinite(da.values)):
                plot_rolling(
                    ax,
                    x,
                    da.values,
                    window=min(window, x.size),
                    label=run or None,
                    color=colors[run],
                )
        ax.set_title(f"angle with {ref.upper()}")
        ax.set_ylabel("[deg]")
        ax.set_xlabel(xlabel)
    if extra:
        ax = axes[0, -1]
        for run in runs:
            da = ds["condition2"].sel(run=run) if run else ds["condition2"]
            if np.any(np.isfinite(da.values)):
                plot_rolling(
                    ax,
                    x,
                    da.values,
                    window=min(window, x.size),
                    label=run or None,
                    color=colors[run],
                )
        ax.set_title("Condition 2")
        ax.set_xlabel(xlabel)
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)
