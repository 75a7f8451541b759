"""The paper's figures, drawn from the Datasets of the ``analyses/`` scripts: Fig. 3's six
panels, Fig. 2, Fig. S1, Figs. C2/C3 and the appendix alignment figures.
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

from neurodfc.figures.common import ROLLING_WINDOW, _label, _save, plot_rolling, step_axis  # noqa: E402

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
