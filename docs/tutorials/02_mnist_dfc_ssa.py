"""Tutorial 2: train DFC-SSA on MNIST with analysis logging, then read ``metrics.nc``.

Starts from the Table-1 config ``models/mnist_dfc_ssa.toml`` (784-256-256-256-10 tanh network,
learned feedback, Lemma-1 steady-state updates) and shortens it: a subset of the training set,
one epoch, one feedback pre-training epoch. Every k-th minibatch the update's angles with BP,
Gauss-Newton and minimum-norm updates and the Conditions 1-3 are logged into ``metrics.nc``.

The MNIST files are found through ``NEURODFC_DATA`` (e.g. ``NEURODFC_DATA=/work/shared/data``)
or neurodfc.data's usual folders.

    python docs/tutorials/02_mnist_dfc_ssa.py            # full mode (1.5-2.5 min on 2 cores)
    python docs/tutorials/02_mnist_dfc_ssa.py --quick    # CI mode (256 samples, seconds)
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

from neurodfc.config import load_config  # noqa: E402
from neurodfc.training import train  # noqa: E402

NAME = "02_mnist_dfc_ssa"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIGURES = HERE / "figures"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 training samples (CI)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurodfc_tutorials" / NAME,
        help="folder of the run (RUN_DIR = OUT/run) and, with --quick, the figures",
    )
    p.add_argument("--train-samples", type=int, default=20000, help="full mode: training subset")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fig_dir = args.out if args.quick else FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ 1. the config
    # A TOML file maps one-to-one onto ExperimentConfig; "section.field=value" overrides are
    # validated like the file itself (the CLI's --set does the same).
    n_train = 256 if args.quick else args.train_samples
    overrides = [
        f"data.max_train_samples={n_train}",
        f"data.max_test_samples={64 if args.quick else 10000}",
        f"data.val_size={64 if args.quick else 5000}",
        "training.epochs=1",
        "feedback_learning.pretrain_epochs=1",  # the paper: 10 sleep-only epochs first
        "feedback_learning.extra_epochs=0",  # the paper: 2 extra sleep passes per epoch
        # analysis logging: every k-th minibatch of the epoch
        f"analysis.log_interval={1 if args.quick else 5}",
        'analysis.metrics=["alignment", "conditions"]',
        'analysis.against=["bp", "gn", "mn"]',  # DFC-SSA's own update is the "ssa" reference
        "analysis.gamma=0.1",  # damping of the GN and MN references
        "analysis.max_samples=16",  # Conditions on 16 samples of the logged batch
    ]
    if args.quick:
        overrides.append("training.batch_size=64")
    cfg = load_config(REPO / "models" / "mnist_dfc_ssa.toml", overrides)
    print(f"{cfg.name}: method {cfg.method.name}, network {cfg.network.sizes}, {n_train} samples")

    # ------------------------------------------------------------------ 2. train
    # train() writes config.toml, checkpoint.pt and metrics.nc into the run folder (the same
    # as `neurodfc train models/mnist_dfc_ssa.toml --set ... --out RUN_DIR`).
    run_dir = args.out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run folder is never overwritten silently: start afresh
    t0 = time.perf_counter()
    result = train(cfg, run_dir, quiet=True, log=lambda msg: print("  " + msg))
    print(f"trained in {time.perf_counter() - t0:.0f} s -> {result.path}")

    # ------------------------------------------------------------------ 3. read metrics.nc
    # The file is an ordinary netCDF file: any xarray (or netCDF) reader opens it.
    with xr.open_dataset(run_dir / "metrics.nc") as opened:
        ds = opened.load()
    print("dims:", dict(ds.sizes))
    per_epoch = [k for k, v in ds.data_vars.items() if v.dims == ("epoch",)]
    per_step = [k for k, v in ds.data_vars.items() if "step" in v.dims]
    print("per epoch:", ", ".join(per_epoch))
    print("per logged minibatch (dim step):", ", ".join(per_step))
    print(f"test accuracy after the epoch: {100 * float(ds['test_accuracy'][-1]):.2f} %")
    best = ds.attrs["test_error_percent_at_best_val"]  # run summaries live in the attrs
    print(f"test error at the best validation epoch: {best:.2f} %")

    # Per-step values are batch means; <name>_std holds the batch std. Select by label:
    ang = ds["angle_network"]  # dims (step, reference), degrees
    first, last = ang.isel(step=0), ang.isel(step=-1)
    for ref in ang["reference"].values:
        print(
            f"angle(DFC-SSA update, {ref}) over the whole network: "
            f"{float(first.sel(reference=ref)):.1f} deg (step 0) -> "
            f"{float(last.sel(reference=ref)):.1f} deg (step {int(ds['step'][-1])})"
        )
    c2 = ds["condition2"]
    print(f"Condition-2 measure: {float(c2[0]):.3f} -> {float(c2[-1]):.3f}")
    pinv = ds["angle_Q_pinv"].sel(gamma=0.0)  # angle(Q, J^+), degrees
    print(f"angle(Q, J^+): {float(pinv[0]):.1f} deg -> {float(pinv[-1]):.1f} deg")

    # ------------------------------------------------------------------ 4. figure
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ref in ang["reference"].values:
        ang.sel(reference=ref).plot(ax=axes[0], label=str(ref), marker=".")
    axes[0].set(ylabel="angle (deg)", title="DFC-SSA update vs BP / GN / MN")
    axes[0].legend(fontsize=8)
    ds["angle_W"].sel(reference="bp").plot.line(ax=axes[1], x="step", marker=".")
    axes[1].set(ylabel="angle (deg)", title="per layer, vs BP")
    ds["condition2"].plot(ax=axes[2], marker=".")
    axes[2].set(ylabel=r"$\|PQ\|_F / \|Q\|_F$", title="Condition-2 measure (1: satisfied)")
    for ax in axes:
        ax.set_xlabel("minibatch (step)")
    fig.tight_layout()
    fig.savefig(fig_dir / f"{NAME}.png", dpi=90)
    plt.close(fig)
    print(f"wrote {fig_dir / (NAME + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
