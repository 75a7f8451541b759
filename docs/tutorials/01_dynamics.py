"""Tutorial 1: a dynamics study with the Python API.

Build a DFC network from typed config objects, simulate the controlled dynamics with two
solvers (the official code's forward-Euler scheme and torchdiffeq's adaptive dopri5), compare
the simulated steady state with Lemma 1, and plot everything from the xarray Dataset.

    python docs/tutorials/01_dynamics.py            # full mode (about 12 s)
    python docs/tutorials/01_dynamics.py --quick    # CI mode (a few seconds)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNG files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.config import (  # noqa: E402
    ControllerConfig,
    ExperimentConfig,
    FeedbackConfig,
    LossConfig,
    NetworkConfig,
    SimulationConfig,
)
from neurodfc.data import teacher_student  # noqa: E402
from neurodfc.results import solution_to_xarray, write_netcdf  # noqa: E402
from neurodfc.solve import simulate  # noqa: E402
from neurodfc.system import DFCSystem, lemma1  # noqa: E402

NAME = "01_dynamics"
FIGURES = Path(__file__).resolve().parent / "figures"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes for CI (a few seconds)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurodfc_tutorials" / NAME,
        help="folder for the netCDF results (and the figures in --quick mode)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # Full mode writes the figures shown on the documentation page; quick mode never writes
    # into the repository.
    fig_dir = args.out if args.quick else FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ 1. typed components
    # Every section of an experiment is a frozen pydantic model: a typo in a field name or a
    # value out of range is rejected here, before any computation. Time is in units of tau_u.
    t_max = 10.0 if args.quick else 40.0
    dt = 0.005
    cfg = ExperimentConfig(
        name="tutorial_dynamics",
        # a 15-10-10-5 tanh network with a linear output layer
        network=NetworkConfig(sizes=[15, 10, 10, 5], hidden_activation="tanh"),
        # the PI controller u = u_int + k_p e with the leak alpha (reference convention)
        controller=ControllerConfig(k_p=1.0, alpha=0.0015, tau_ratio=0.2),
        # feedback Q_i = W_{i+1}^T ... W_L^T (the paper's "fixed" feedback)
        feedback=FeedbackConfig(init="weight_product"),
        # the official code's forward-Euler scheme: t_max / dt steps
        simulation=SimulationConfig(solver="euler_reference", dt=dt, t_max=t_max, record_every=20),
        # target r_L* = r_L^- - lam dL/dr_L with the summed MSE: a 10 % step towards y
        loss=LossConfig(loss="mse", lam=0.05, reduction="sum"),
        dtype="float64",
        seed=0,
    )
    system = DFCSystem.from_config(cfg)  # weights and feedback, seeded from cfg.seed
    print(f"network {cfg.network.sizes}, N = {sum(cfg.network.sizes[1:])} controlled units")

    # A few inputs of the teacher-student regression task (a random ReLU teacher network).
    n_samples = 4 if args.quick else 8
    data = teacher_student(n_in=15, n_out=5, n_train=n_samples, n_val=0, n_test=0, seed=0)
    x, y = data.train.x, data.train.y
    r_target = system.target(x, y)  # [B, n_L]: r_L* = r_L^- - lam dL/dr_L

    # ------------------------------------------------------------------ 2. two solvers
    # The same closed loop, integrated twice. `sim=` replaces the config's [simulation]
    # section for one call; both keep the same record times so the trajectories line up.
    solvers = {
        "euler_reference": cfg.simulation,
        "dopri5": cfg.simulation.model_copy(
            update={"solver": "dopri5", "rtol": 1e-8, "atol": 1e-10}
        ),
    }
    steady = lemma1(system, x, r_target)  # Lemma 1: u_ss = (J Q + alpha I)^-1 delta_L
    datasets = []
    for name, sim in solvers.items():
        t0 = time.perf_counter()
        sol = simulate(system, x, r_target, sim=sim)
        wall = time.perf_counter() - t0
        # A Solution knows per sample whether it converged (never an exception).
        status = dict(Counter(sol.status_names()))
        print(f"{name:16s} {wall:5.2f} s, {sol.nfe:5d} vector-field evaluations, status {status}")
        # The labelled Dataset: dims time, sample, output, unit_l<i>; config JSON in attrs.
        datasets.append(solution_to_xarray(sol, system, steady))

    # One Dataset with a new dim `solver`: variables that differ between the solvers (the
    # trajectories, the end state, the status) get it, the shared ones (the target r_L*, the
    # feedforward output, Lemma 1) stay as they are. The record times agree up to rounding.
    ds = xr.concat(
        datasets,
        dim="solver",
        data_vars="different",
        compat="equals",
        join="override",
        combine_attrs="drop_conflicts",
    ).assign_coords(solver=list(solvers))
    write_netcdf(ds, args.out / f"{NAME}.nc")

    # ------------------------------------------------------------------ 3. Lemma 1
    # Distance of the simulated end state to the Lemma-1 steady state, per sample:
    # |u(T) - u_ss| / |u_ss|. For a tanh network Lemma 1 linearises the network around the
    # feedforward state, so the distance is O(lam), not zero.
    rel_u = np.linalg.norm(ds["u_final"] - ds["u_ss_lemma1"], axis=-1) / np.linalg.norm(
        ds["u_ss_lemma1"], axis=-1
    )  # [solver, sample]
    for k, name in enumerate(ds["solver"].values):
        print(f"{name:16s} |u(T) - u_ss| / |u_ss|: median {np.median(rel_u[k]):.3e}")
    diff = float(
        abs(ds["r_L"].sel(solver="euler_reference") - ds["r_L"].sel(solver="dopri5")).max()
    )
    print(f"max |r_L(t) euler - r_L(t) dopri5| over the trajectory: {diff:.2e}")

    # How the distance scales with lam: converged dopri5 runs for a few step sizes.
    lams = [0.2, 0.05] if args.quick else [0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625]
    dist = []
    for lam in lams:
        cfg_l = cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"lam": lam})})
        sys_l = DFCSystem.from_config(cfg_l)  # same seed: same weights
        rt = sys_l.target(x, y)
        sol = simulate(sys_l, x, rt, sim=solvers["dopri5"], record=False)
        ss = lemma1(sys_l, x, rt)
        d = (sol.u_final - ss.u).norm(dim=1) / ss.u.norm(dim=1)
        dist.append(float(np.median(d.numpy())))
        print(f"lam = {lam:<8g} median |u(T) - u_ss| / |u_ss| = {dist[-1]:.3e}")
    slope = np.polyfit(np.log(lams), np.log(dist), 1)[0]
    print(f"log-log slope of the distance against lam: {slope:.2f} (Lemma 1 error is O(lam))")

    # ------------------------------------------------------------------ 4. figures
    # Everything is drawn from the Dataset: select with .sel / .isel by name, not by index.
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    t = ds["time"].values
    for j in range(min(3, ds.sizes["sample"])):
        one = ds.isel(sample=j, output=0)
        axes[0].plot(t, one["r_L"].sel(solver="euler_reference"), color=f"C{j}", lw=1.5)
        axes[0].plot(t[::10], one["r_L"].sel(solver="dopri5")[::10], "o", color=f"C{j}", ms=3)
        axes[0].axhline(float(one["r_L_target"]), color=f"C{j}", ls=":", lw=1)
        axes[2].plot(t, one["u"].sel(solver="euler_reference"), color=f"C{j}", lw=1.5)
        axes[2].axhline(float(one["u_ss_lemma1"]), color="k", ls="--", lw=0.8)
    axes[0].set(
        xlabel=r"time ($\tau_u$)", ylabel=r"$r_{L,1}(t)$", title="output (line: Euler, o: dopri5)"
    )
    for name, style in (("euler_reference", "-"), ("dopri5", "--")):
        med = ds["e_norm"].sel(solver=name).median("sample")
        axes[1].semilogy(t, med, style, label=name)
    axes[1].set(xlabel=r"time ($\tau_u$)", ylabel=r"median $|e(t)|$", title="control error")
    axes[1].legend(fontsize=8)
    axes[2].set(xlabel=r"time ($\tau_u$)", ylabel=r"$u_1(t)$", title="control (dashed: Lemma 1)")
    fig.tight_layout()
    fig.savefig(fig_dir / f"{NAME}.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.loglog(lams, dist, "o-", label="simulation (dopri5)")
    ax.loglog(lams, dist[-1] * np.asarray(lams) / lams[-1], "k:", label=r"slope 1")
    ax.set(
        xlabel=r"$\lambda$",
        ylabel=r"$|u(T) - u_{ss}| / |u_{ss}|$",
        title="Lemma 1 is O($\\lambda$)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / f"{NAME}_lambda.png", dpi=90)
    plt.close(fig)
    print(f"wrote {args.out / (NAME + '.nc')} and the figures {NAME}*.png in {fig_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
