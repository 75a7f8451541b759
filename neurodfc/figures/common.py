"""Shared pieces of the figures: axis labels, the rolling mean +- std of the paper's Fig. 3,
the x axis of dim ``step`` and the PNG writer.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
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
