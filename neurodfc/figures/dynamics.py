"""Figures of the closed-loop dynamics of a simulation or convergence Dataset."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.figures.common import _save  # noqa: E402


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
