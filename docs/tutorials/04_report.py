"""Tutorial 4: an alignment and stability report for a training run.

Trains a short DFC run on the teacher-student task (``models/fig3_dfc.toml``, the paper's
Fig. 3 setting, with the analysis metrics logged) or reuses an existing run folder
(``--from RUN_DIR``, e.g. the MNIST run of tutorial 2), writes its report with the report API
(the same as ``neurodfc report RUN_DIR``), then reloads the trained system and measures, on one
test minibatch, the alignment of its update with BP / GN / MN / DFC-SSA, Conditions 1-3 and the
eigenvalues of the linearised closed loop.

    python docs/tutorials/04_report.py                       # full mode (about 45 s)
    python docs/tutorials/04_report.py --quick               # CI mode (seconds)
    python docs/tutorials/04_report.py --from /tmp/neurodfc_tutorials/02_mnist_dfc_ssa/run
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
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.analysis import alignment, conditions, stability  # noqa: E402
from neurodfc.config import load_config  # noqa: E402
from neurodfc.experiment import load_data  # noqa: E402
from neurodfc.report import key_numbers, report  # noqa: E402
from neurodfc.training import load_run, train  # noqa: E402

NAME = "04_report"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIGURES = HERE / "figures"
SIMULATING = ("dfc", "dfc_ss", "strong_dfc", "strong_dfc_single")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny run (CI)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurodfc_tutorials" / NAME,
        help="folder of the run and its report (and, with --quick, the figures)",
    )
    p.add_argument("--from", dest="run", type=Path, default=None, help="an existing run folder")
    return p.parse_args(argv)


def train_short_run(out: Path, quick: bool) -> Path:
    """DFC on the teacher-student task with alignment, Conditions and stability logged."""
    overrides = [
        f"training.epochs={1 if quick else 3}",
        f"feedback_learning.pretrain_epochs={1 if quick else 5}",  # the paper: 50
        f"analysis.log_interval={1 if quick else 5}",
        'analysis.metrics=["alignment", "conditions", "stability"]',
        "analysis.max_samples=16",  # Conditions and eigenvalues on 16 samples per logged batch
    ]
    if quick:
        overrides += ["data.n_train=128", "data.n_val=32", "data.n_test=32"]
        overrides += ["training.batch_size=32", "simulation.steps=200"]
    cfg = load_config(REPO / "models" / "fig3_dfc.toml", overrides)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    train(cfg, run_dir, quiet=True, log=lambda msg: print("  " + msg))
    print(f"trained {cfg.name} in {time.perf_counter() - t0:.0f} s -> {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the documentation's figures come from the default run; --quick and --from write to --out
    fig_dir = args.out if (args.quick or args.run is not None) else FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ 1. a run
    run_dir = args.run if args.run is not None else train_short_run(args.out, args.quick)

    # ------------------------------------------------------------------ 2. its report
    # report() reads RUN_DIR/metrics.nc and writes PNGs and report.md (neurodfc report RUN_DIR).
    # Written next to the other outputs, so that a run folder passed with --from stays as it was.
    md = report(run_dir, out=args.out / "report")
    print(f"wrote {md} with {len(list(md.parent.glob('*.png')))} figures")
    with xr.open_dataset(run_dir / "metrics.nc") as opened:
        metrics = opened.load()
    for quantity, value in key_numbers(metrics):  # the report's table of key numbers
        if "angle_network" in quantity or "condition2" in quantity or "stability" in quantity:
            print(f"  {quantity}: {value}")
    if (md.parent / "fig3_panels.png").exists() and fig_dir == FIGURES:
        shutil.copy(md.parent / "fig3_panels.png", fig_dir / f"{NAME}_fig3_panels.png")

    # ------------------------------------------------------------------ 3. the trained system
    system = load_run(run_dir).system  # config.toml + the weights of checkpoint.pt
    cfg = system.cfg
    data = load_data(cfg)
    # Eigenvalues of dense (N + n_L)-square matrices cost O((N + n_L)^3) per sample: a few
    # samples suffice for a large network (N + n_L = 788 for MNIST).
    n_units = sum(cfg.network.sizes[1:]) + cfg.network.sizes[-1]
    B = 8 if args.quick else 64
    B_stab = min(B, 4 if n_units > 200 else 32)
    x, y = data.test.x[:B], data.test.y[:B]
    print(f"{cfg.name} ({cfg.method.name}), {B} test samples, N + n_L = {n_units}")

    # Alignment: the angle between the method's update of this minibatch and the references.
    # The DFC-SSA update of the same batch is a reference unless the method is DFC-SSA.
    refs = ["bp", "gn", "mn"] + ([] if cfg.method.name == "dfc_ssa" else ["ssa"])
    gen = torch.Generator().manual_seed(0)
    al = alignment(system, x, y, against=refs, gamma=0.1, generator=gen)
    print("angle of the whole-network update with (deg):")
    for ref in refs:
        whole = float(al["angle_network"].sel(reference=ref))
        per_layer = ", ".join(f"{float(a):.1f}" for a in al["angle_W"].sel(reference=ref))
        print(f"  {ref:3s}: {whole:6.1f}   W per layer: {per_layer}")

    # Conditions 1-3, per sample; the batch mean is what the paper's figures show.
    co = conditions(system, x, y)
    print(
        f"Condition 1 (std/mean |r_k|): {float(co['condition1'].mean()):.3f}; "
        f"Condition 2 |PQ|/|Q|: {float(co['condition2'].mean()):.3f}; "
        f"Condition 3 holds (margin > 0) for "
        f"{int((co['condition3_ss'] > 0).sum())} / {B} samples"
    )
    print(
        f"angle(Q, J^T) = {float(co['angle_Q_JT'].mean()):.1f} deg, "
        f"angle(Q, J^+) = {float(co['angle_Q_pinv'].sel(gamma=0.0).mean()):.1f} deg"
    )

    # Stability: A_I, A~_I, A_I_inst and A_PI linearised at the simulated end state (a
    # simulating method) or the Lemma-1 steady state (DFC-SSA), all eigenvalues kept.
    at = "simulated" if cfg.method.name in SIMULATING else "analytic"
    st = stability(system, x[:B_stab], y[:B_stab], at=at, full_spectrum=True)
    for m in st["matrix"].values:
        mx = st["max_re_eig"].sel(matrix=m)
        print(f"  max Re eig({m:9s}): mean {float(mx.mean()):+.4f}, max {float(mx.max()):+.4f}")
    stable = int((st["stability_measure"] < 0).sum())
    print(f"locally stable (max Re eig(A_PI) < 0) at the {at} state: {stable} / {B_stab} samples")

    # ------------------------------------------------------------------ 4. figure
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    al["angle_W"].plot.line(ax=axes[0], x="layer", marker="o")
    axes[0].set(title="update vs reference, per layer", ylabel="angle (deg)")
    co["condition2"].plot.hist(ax=axes[1], bins=20)
    axes[1].set(title="Condition-2 measure per sample", xlabel=r"$\|PQ\|_F / \|Q\|_F$")
    for k, m in enumerate(("A_PI", "A_I")):
        e = st.sel(matrix=m)
        axes[2].scatter(
            e["eig_real"].values.ravel(),
            e["eig_imag"].values.ravel(),
            s=6,
            alpha=0.5,
            color=f"C{k}",
            label=m,
        )
    axes[2].axvline(0.0, color="k", lw=0.8)
    axes[2].set(
        xscale="symlog", title=f"eigenvalues ({at} state)", xlabel=r"Re [1/$\tau_u$]", ylabel="Im"
    )
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / f"{NAME}.png", dpi=90)
    plt.close(fig)
    print(f"wrote {fig_dir / (NAME + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
