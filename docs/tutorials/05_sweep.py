"""Tutorial 5: a sweep on a dask cluster, locally and on Slurm through dask-jobqueue.

Plans a sweep (a grid of config values x seeds) of the toy DFC-SSA config
``models/fig3_dfc_ssa.toml``, runs every (grid point, seed) training as one task on a local
dask.distributed cluster, and reads the merged ``sweep.nc`` with xarray. The same plan runs on
a Slurm cluster with ``--slurm`` (needs ``pip install dask-jobqueue`` and a Slurm login node;
never run in CI).

    python docs/tutorials/05_sweep.py            # full mode: 2 learning rates x 3 seeds (~1.5 min)
    python docs/tutorials/05_sweep.py --quick    # CI mode: 2 tiny tasks
    python docs/tutorials/05_sweep.py --slurm    # the same sweep on Slurm (not run here)

The command-line equivalent of the full mode:

    neurodfc sweep models/fig3_dfc_ssa.toml --seeds 3 --grid training.lr=0.02,0.05 \\
        --epochs 8 --set feedback_learning.pretrain_epochs=5 --workers 2 --out SWEEP_DIR
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.sweep import SweepPlan, parse_grid, plan_grid_sweep, run_sweep  # noqa: E402

NAME = "05_sweep"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIGURES = HERE / "figures"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 tiny tasks (CI)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurodfc_tutorials" / NAME,
        help="the sweep folder SWEEP_DIR (and, with --quick, the figure)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default 2; 1 with --quick)",
    )
    p.add_argument("--slurm", action="store_true", help="run on Slurm via dask-jobqueue")
    return p.parse_args(argv)


def make_plan(out: Path, quick: bool) -> SweepPlan:
    """The sweep: one run folder per (grid point, seed), each an ordinary `neurodfc train`
    run. The seed is set through the config's ``seed`` field (weights, data split, batches)."""
    if quick:
        grid, seeds = [], range(2)  # no grid: 1 point x 2 seeds = 2 tasks
        overrides = [
            "training.epochs=1",
            "feedback_learning.pretrain_epochs=0",
            "data.n_train=64",
            "data.n_val=16",
            "data.n_test=16",
        ]
    else:
        grid, seeds = [parse_grid("training.lr=0.02,0.05")], range(3)
        overrides = ["training.epochs=8", "feedback_learning.pretrain_epochs=5"]
    return plan_grid_sweep(
        REPO / "models" / "fig3_dfc_ssa.toml", out, seeds=seeds, grid=grid, overrides=overrides
    )


def run_on_slurm(plan: SweepPlan) -> None:
    """The same plan on Slurm: dask-jobqueue submits worker jobs, the tasks go to them.

    Run this on a login node. The workers need this package (same version) and SWEEP_DIR on a
    file system they share with this machine. Adapt queue, resources and the environment.
    """
    try:
        from dask_jobqueue import SLURMCluster  # optional: pip install dask-jobqueue
    except ImportError:
        raise SystemExit("--slurm needs dask-jobqueue: pip install dask-jobqueue") from None
    from distributed import Client

    cluster = SLURMCluster(
        queue="cpu",  # the partition
        cores=8,  # one Slurm job = 8 single-threaded worker processes
        processes=8,
        memory="16GB",
        walltime="02:00:00",
        job_script_prologue=[f"source {REPO / '.venv' / 'bin' / 'activate'}"],
    )
    cluster.scale(jobs=2)  # 2 jobs = 16 workers (or cluster.adapt(minimum_jobs=1, maximum_jobs=4))
    print(cluster.job_script())  # the batch script every worker job runs
    try:
        with Client(cluster) as client:
            run_sweep(plan, client=client)  # a lost (pre-empted) job: its tasks resume elsewhere
    finally:
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fig_dir = args.out if args.quick else FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ 1. the plan
    sweep_dir = args.out / "sweep"
    if sweep_dir.exists():
        shutil.rmtree(sweep_dir)  # re-running into the same folder would skip finished runs
    plan = make_plan(sweep_dir, args.quick)
    print(f"{len(plan.tasks)} tasks, axes {[a.name for a in plan.axes]}, seeds {list(plan.seeds)}")
    for task in plan.tasks:
        print(f"  {task.name} -> {task.run_dir.relative_to(sweep_dir)}")

    # ------------------------------------------------------------------ 2. run it
    t0 = time.perf_counter()
    if args.slurm:
        run_on_slurm(plan)
    else:
        # A LocalCluster of `workers` single-threaded processes, started here and closed at
        # the end (neurodfc sweep ... --workers 2). An existing cluster: scheduler="tcp://...".
        workers = args.workers or (1 if args.quick else 2)
        report = run_sweep(plan, workers=workers, quiet=True)
        print(f"{report.count('done')} trained, {report.count('failed')} failed")
    print(f"sweep took {time.perf_counter() - t0:.0f} s")

    # ------------------------------------------------------------------ 3. the results
    # sweep.nc: dims (<grid keys>..., seed, epoch); table.md: mean +- std over seeds.
    print((sweep_dir / "table.md").read_text())
    with xr.open_dataset(sweep_dir / "sweep.nc") as opened:
        ds = opened.load()
    print("sweep.nc dims:", dict(ds.sizes))
    loss = ds["test_loss"]  # (training.lr, seed, epoch) or (seed, epoch)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    points = loss["training.lr"].values if "training.lr" in loss.dims else [None]
    for k, lr in enumerate(points):
        one = loss if lr is None else loss.sel({"training.lr": lr})
        mean, std = one.mean("seed"), one.std("seed", ddof=1)  # ddof=1 as table.md
        label = "all seeds" if lr is None else f"lr = {lr:g}"
        ax.plot(ds["epoch"], mean, "o-", color=f"C{k}", label=label)
        ax.fill_between(ds["epoch"], mean - std, mean + std, color=f"C{k}", alpha=0.2)
        final = one.isel(epoch=-1)
        print(
            f"{label}: final test loss {float(final.mean()):.3f} +- {float(final.std(ddof=1)):.3f}"
        )
    ax.set(xlabel="epoch", ylabel="test loss (MSE)", title="mean +- std over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / f"{NAME}.png", dpi=90)
    plt.close(fig)
    print(f"wrote {fig_dir / (NAME + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
