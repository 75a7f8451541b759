"""Figures drawn from Datasets only (a figure never recomputes science)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402


def plot_dynamics(ds: xr.Dataset, path: str | Path, samples: int = 3, output_unit: int = 0) -> Path:
    """Fig. 1D style: for each sample, ``r_L(t)`` against the target ``r_L*`` (top) and the
    control ``u(t)`` (bottom) of one output unit.

    Args:
        ds: a simulation Dataset (:func:`neurodfc.results.solution_to_xarray`).
        path: the PNG file to write (its folder is created).
        samples: number of samples drawn (one column each).
        output_unit: index of the output unit drawn.

    Returns:
        ``path`` as a ``Path``.
    """
    n = min(samples, ds.sizes["sample"])
    fig, axes = plt.subplots(2, n, figsize=(4 * n, 5.5), squeeze=False, sharex=True)
    t = ds["time"].values
    for j in range(n):
        ax = axes[0, j]
        r = ds["r_L"].isel(sample=j, output=output_unit).values
        ax.plot(t, r, label=r"$r_L(t)$", color="C0")
        ax.axhline(
            float(ds["r_L_target"].isel(sample=j, output=output_unit)),
            color="C3",
            ls="--",
            label=r"$r_L^*$",
        )
        ax.axhline(
            float(ds["r_L_ff"].isel(sample=j, output=output_unit)),
            color="0.5",
            ls=":",
            label=r"$r_L^-$",
        )
        status = str(ds["status"].isel(sample=j).values)
        ax.set_title(f"sample {j} ({status})")
        if j == 0:
            ax.set_ylabel("output rate")
            ax.legend(loc="best", fontsize=8)
        ax = axes[1, j]
        ax.plot(t, ds["u"].isel(sample=j, output=output_unit).values, color="C2", label="u(t)")
        if "u_ss_lemma1" in ds:
            ax.axhline(
                float(ds["u_ss_lemma1"].isel(sample=j, output=output_unit)),
                color="k",
                ls="--",
                lw=0.8,
                label="Lemma 1",
            )
        ax.set_xlabel(r"time ($\tau_u$)")
        if j == 0:
            ax.set_ylabel("control u")
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
