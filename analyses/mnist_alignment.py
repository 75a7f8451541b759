"""Alignment on MNIST (the paper's appendix alignment figures): the Table-1 networks
(784-256-256-256-10 tanh, softmax cross-entropy) trained a few epochs with DFC, DFC-SS, DFC-SSA
(trained and fixed feedback) and DFA, logging every 50 minibatches the whole-network angles
with BP, GN and MN (damping gamma = 1, as the reference's pipeline configs), the SSA angle, the
per-layer null-space measure of the update (``nullspace_ratio``) and the Condition-2 measure (on
32 samples of the logged minibatch); the simulating runs (DFC, DFC-SS) also log the convergence
group on those 32 samples (distance to Lemma 1, recorded apical voltages per layer). MN and SSA
use the reference code's definitions (``analysis.mn_rule = "auto"``: the nonlinear difference
of the GN targets for these ``nonlinear_difference`` configs; ``analysis.ssa_rates =
"simulated"``: Lemma-1 ``dv`` with the simulated rates).

Full mode: ``models/mnist_*.toml`` as they are (feedback pre-training included), for
``--epochs`` epochs (default 3). ``--quick``: 256 training samples, one epoch of minibatches of
64, one short pre-training epoch, 60 simulation steps (non-converged samples kept), runs
DFC-SSA, DFC-SS and DFA. The
MNIST files are found through ``NEURODFC_DATA``, ``../shared/data`` beside the repository or
neurodfc.data's usual folders. Writes ``mnist_alignment.nc`` and ``mnist_alignment.png``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from _common import REPO, model, outputs, parser, say, stack_runs, train_all

from neurodfc.figures import plot_alignment_runs
from neurodfc.results import write_netcdf

RUNS = (
    "mnist_dfc",
    "mnist_dfc_ss",
    "mnist_dfc_ssa",
    "mnist_fixed_dfc",
    "mnist_fixed_dfc_ss",
    "mnist_fixed_dfc_ssa",
    "mnist_dfa",
)
QUICK_RUNS = ("mnist_dfc_ssa", "mnist_dfc_ss", "mnist_dfa")


def metric_groups(name: str) -> list[str]:
    """Analysis groups logged by run ``name``: DFA alignment and null space; DFC-SSA also the
    Condition-2 group; the simulating runs also the convergence group (distance to Lemma 1,
    recorded apical voltages)."""
    if name.endswith("dfa"):
        return ["alignment", "nullspace"]
    groups = ["alignment", "conditions", "nullspace"]
    return groups if name.endswith("dfc_ssa") else [*groups, "convergence"]


def overrides(name: str, quick: bool, epochs: int, device: str | None) -> list[str]:
    """Logging (+ quick) overrides of one run."""
    ssa_ref = not (name.endswith("dfc_ssa") or name.endswith("dfa"))
    against = '["bp", "gn", "mn", "ssa"]' if ssa_ref else '["bp", "gn", "mn"]'
    over = [
        f"training.epochs={epochs}",
        f"analysis.log_interval={2 if quick else 50}",
        f"analysis.metrics={json.dumps(metric_groups(name))}",
        'analysis.mn_rule="auto"',
        'analysis.ssa_rates="simulated"',
        f"analysis.against={against}",
        "analysis.gamma=1.0",
        "analysis.gammas=[0.0, 1.0]",
        f"analysis.max_samples={8 if quick else 32}",
    ]
    shared = REPO.parent / "shared" / "data"
    if not os.environ.get("NEURODFC_DATA") and shared.is_dir():
        over.append(f'data.data_dir="{shared}"')
    if quick:
        over += [
            "data.max_train_samples=256",
            "data.max_test_samples=64",
            "data.val_size=64",
            "training.batch_size=64",
            "feedback_learning.pretrain_epochs=1",
            "feedback_learning.extra_epochs=0",
        ]
        if not name.endswith("dfa"):
            # 60 steps do not converge: keep the samples, or the DFC updates are all zero
            over += ["simulation.steps=60", "method.include_non_converged=true"]
    if device is not None:
        over.append(f'device="{device}"')
    return over


def _fmt(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.1f}"


def _ends(r: xr.Dataset, var: str, digits: int) -> str:
    """``first -> last`` log of ``var`` of one run (``gamma = 0`` where it has that dim)."""
    if var not in r:
        return "-"
    v = r[var].sel(gamma=0.0).values if "gamma" in r[var].dims else r[var].values
    if not np.isfinite(v).any():
        return "-"
    return f"{v[0]:.{digits}f} -> {v[-1]:.{digits}f}"


def summary_table(ds: xr.Dataset) -> str:
    """Markdown tables of ``mnist_alignment.nc``: per run and reference the whole-network angle
    at the first and last log and its mean over the logs of each epoch; per run the
    Condition-2 measure (first -> last log), the angle of ``Q`` with ``J^+`` (``gamma = 0``,
    trained feedback only), the null-space ratio of the hidden layers (mean over the hidden
    layers, last log) and the test accuracy after each epoch.

    Args:
        ds: the stacked runs (what ``main`` writes).
    """
    epochs = np.asarray(ds["step_epoch"].values) if "step_epoch" in ds.coords else None
    ep_ids = sorted(set(int(e) for e in epochs)) if epochs is not None else []
    head = "| run | reference | first log | last log | " + " | ".join(
        f"mean, epoch {e}" for e in ep_ids
    )
    lines = [head + " |", "|" + "---|" * (4 + len(ep_ids))]
    ang = ds["angle_network"]
    for run in ds["run"].values:
        for ref in ds["reference"].values:
            a = ang.sel(run=run, reference=ref).values
            if not np.isfinite(a).any():
                continue
            means = [float(np.nanmean(a[epochs == e])) for e in ep_ids] if ep_ids else []
            cells = [_fmt(float(a[0])), _fmt(float(a[-1])), *[_fmt(m) for m in means]]
            lines.append(f"| {run} | {ref} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| run | Condition 2: first -> last | Q vs J^+ [deg]: first -> last | "
        "null-space ratio, hidden layers (last) | test accuracy per epoch [%] |",
        "|---|---|---|---|---|",
    ]
    for run in ds["run"].values:
        r = ds.sel(run=run)

        ns = "-"
        if "nullspace_ratio" in r:
            last = r["nullspace_ratio"].isel(step=-1).values[:-1]  # hidden layers
            ns = f"{float(np.nanmean(last)):.3f}" if np.isfinite(last).any() else "-"
        acc = ", ".join(f"{100 * float(v):.2f}" for v in r["test_accuracy"].values)
        c2, qp = _ends(r, "condition2", 3), _ends(r, "angle_Q_pinv", 1)
        lines.append(f"| {run} | {c2} | {qp} | {ns} | {acc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train the MNIST runs and write ``mnist_alignment.nc`` / ``.png`` into ``--out``."""
    p = parser("mnist_alignment", __doc__ or "")
    p.add_argument("--runs", default=None, help="comma-separated subset of runs")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes")
    p.add_argument(
        "--summary-only",
        action="store_true",
        help="print the markdown tables of the existing OUT/mnist_alignment.nc and exit",
    )
    args = p.parse_args(argv)
    if args.summary_only:
        path = Path(args.out) / "mnist_alignment.nc"
        if not path.is_file():
            say(f"mnist_alignment: {path} not found (train first, without --summary-only)")
            return 2
        with xr.open_dataset(path) as done:
            print(summary_table(done.load()))
        return 0
    names = (
        [n.strip() for n in args.runs.split(",")]
        if args.runs
        else list(QUICK_RUNS if args.quick else RUNS)
    )
    epochs = 1 if args.quick else args.epochs
    jobs = [
        (model(n, overrides(n, args.quick, epochs, args.device)), args.out / "mnist_runs" / n)
        for n in names
    ]
    say(f"mnist_alignment: training {len(jobs)} runs")
    paths = train_all(jobs, processes=args.jobs)
    ds = stack_runs({n.removeprefix("mnist_"): q for n, q in zip(names, paths, strict=True)})
    ds.attrs["created_by"] = "analyses/mnist_alignment.py"
    nc, png = outputs(args.out, "mnist_alignment")
    write_netcdf(ds, nc)
    plot_alignment_runs(ds, png, refs=("bp", "gn", "mn", "ssa"))
    last = ds["angle_network"].isel(step=-1)
    for run in ds["run"].values:
        vals = ", ".join(
            f"{r}: {float(last.sel(run=run, reference=r)):.1f}" for r in ds["reference"].values
        )
        say(f"mnist_alignment {run}: last angles [deg] {vals}")
        if "nullspace_ratio" in ds:
            ns = ds["nullspace_ratio"].sel(run=run).isel(step=-1).values
            say(f"mnist_alignment {run}: last null-space ratios per layer {ns.round(3).tolist()}")
    print(summary_table(ds))
    say(f"mnist_alignment: wrote {nc} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
