"""Fig. 3: Conditions 1-2, stability and the MN / GN / SSA angles over training on the
teacher-student task, for DFC, DFC-SS, DFC-SSA with trained and fixed feedback, and DFA.

Full mode trains ``models/fig3_*.toml`` as they are (15-10-10-5 tanh student, 300 epochs,
SGD, lam 0.05, k_p 1.5, alpha 0.0015, ...) with analysis logging on the first minibatch of
every epoch (the reference's log_interval 100 with 40 minibatches per epoch), GN / MN damping
gamma = 0.1 (DFA: 0, as the reference). The MN and SSA angles use the reference code's
definitions (``analysis.mn_rule = "auto"``: the nonlinear difference ``phi(v^- + dv) - phi(v^-)``
of the loss-gradient GN targets, as its ``use_nonlinear_gnt`` for ``nonlinear_difference``
configs; ``analysis.ssa_rates = "simulated"``: Lemma-1 ``dv`` with the simulated end state's
rates, its NDI angle), and every run also logs the per-layer null-space measure of the update
(``nullspace_ratio``, its ``save_nullspace_norm_ratio``); the simulating runs (DFC, DFC-SS) also
log the convergence group (``dist_lemma1_output``, the reference's ``rel_dist_to_NDI``, and the
recorded apical voltages ``apical_norm_final``, ``dist_lemma1_apical`` per layer). Run folders go to
``OUT/fig3_runs/<run>`` and are resumed when they exist, so a long run can be continued
(``--epochs`` extends it).
``--quick``: 128 training samples, 3 epochs, 150 simulation steps, every minibatch logged.

The seven runs train in two ensembles (:func:`neurodfc.train_ensemble`), one per schedule:
trained feedback (DFC, DFC-SS, DFC-SSA: their sleep-phase simulations stacked, and DFC's and
DFC-SS's forward simulations stacked) and fixed feedback (DFC, DFC-SS stacked; DFC-SSA and DFA
trained first); each run equals its run alone. ``--jobs 2`` trains the two ensembles in two
processes; ``--no-ensemble`` trains the runs one by one (or in ``--jobs`` processes).

Writes ``fig3.nc`` (every run's metrics stacked along dim ``run``) and ``fig3.png`` (the six
panels, rolling mean +- std over a window of 30 logs).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import xarray as xr
from _common import model, outputs, parser, say, stack_runs, train_all, train_as_ensemble

from neurodfc.figures import FIG3_PANELS, plot_fig3_panels
from neurodfc.results import write_netcdf

RUNS = (
    "fig3_dfc",
    "fig3_dfc_ss",
    "fig3_dfc_ssa",
    "fig3_fixed_dfc",
    "fig3_fixed_dfc_ss",
    "fig3_fixed_dfc_ssa",
    "fig3_dfa",
)


def metric_groups(name: str) -> list[str]:
    """Analysis groups logged by run ``name``: DFA (no controller) alignment and null space;
    DFC-SSA also conditions and stability; the simulating runs also the convergence group (the
    reference's rel_dist_to_NDI and the recorded apical voltages at the end of the simulation)."""
    if name == "fig3_dfa":
        return ["alignment", "nullspace"]
    groups = ["alignment", "conditions", "stability", "nullspace"]
    return groups if name.endswith("dfc_ssa") else [*groups, "convergence"]


def run_overrides(name: str, quick: bool, epochs: int | None, device: str | None) -> list[str]:
    """Config overrides of one run: analysis logging (+ the quick settings)."""
    dfa = name == "fig3_dfa"
    over = [
        f"analysis.log_interval={1 if quick else 100}",
        f"analysis.metrics={json.dumps(metric_groups(name))}",
        'analysis.mn_rule="auto"',  # the reference's choice: nonlinear difference here
        'analysis.ssa_rates="simulated"',  # the reference's NDI angle
        # the SSA angle of DFC-SSA is 0 by definition; DFA has no controller
        'analysis.against=["bp", "gn", "mn"]'
        if dfa or name.endswith("dfc_ssa")
        else 'analysis.against=["bp", "gn", "mn", "ssa"]',
        f"analysis.gamma={0.0 if dfa else 0.1}",
        "analysis.gammas=[0.0, 0.1]",
    ]
    if quick:
        over += [
            "data.n_train=128",
            "data.n_val=32",
            "data.n_test=32",
            "training.epochs=3",
            "training.batch_size=64",
            "feedback_learning.pretrain_epochs=1",
            "feedback_learning.extra_epochs=1",
        ]
        if not dfa:
            over.append("simulation.steps=150")
    if epochs is not None:
        over.append(f"training.epochs={epochs}")
    if device is not None:
        over.append(f'device="{device}"')
    return over


def summary(ds: xr.Dataset, last: int = 30) -> dict[str, dict[str, float]]:
    """Mean of the last ``last`` logged values of every Fig. 3 panel, per run."""
    out: dict[str, dict[str, float]] = {}
    for run in ds["run"].values:
        row: dict[str, float] = {}
        for name, ref, _ in FIG3_PANELS:
            if name not in ds:
                continue
            da = ds[name].sel(run=run)
            if ref is not None:
                if ref not in da["reference"].values:
                    continue
                da = da.sel(reference=ref)
            vals = da.values[np.isfinite(da.values)]
            if vals.size:
                row[name if ref is None else f"{name}_{ref}"] = float(vals[-last:].mean())
        if "nullspace_ratio" in ds:
            ns = ds["nullspace_ratio"].sel(run=run)
            for layer in ns["layer"].values:
                vals = ns.sel(layer=layer).values
                vals = vals[np.isfinite(vals)]
                if vals.size:
                    row[f"nullspace_ratio_layer{int(layer)}"] = float(vals[-last:].mean())
        out[str(run)] = row
    return out


def main(argv: list[str] | None = None) -> int:
    """Train the Fig. 3 runs and write ``fig3.nc`` / ``fig3.png`` into ``--out``."""
    p = parser("fig3", __doc__ or "")
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of runs")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="ensembles trained at the same time (with --no-ensemble: runs trained in "
        "parallel processes)",
    )
    p.add_argument(
        "--no-ensemble",
        action="store_true",
        help="train the runs one by one (or in --jobs processes) instead of as one ensemble",
    )
    p.add_argument(
        "--collect",
        action="store_true",
        help="do not train: stack the runs already in OUT/fig3_runs (e.g. of an unfinished run)",
    )
    args = p.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        p.error(f"unknown runs {unknown}; allowed: {list(RUNS)}")
    jobs = [
        (
            model(n, run_overrides(n, args.quick, args.epochs, args.device)),
            args.out / "fig3_runs" / n,
        )
        for n in names
    ]
    if args.collect:
        paths = [out for _, out in jobs if (out / "metrics.nc").is_file()]
        names = [n for n, (_, out) in zip(names, jobs, strict=True) if out in paths]
        if not paths:
            p.error(f"no runs to collect under {args.out / 'fig3_runs'}")
    else:
        mode = "quick" if args.quick else "full"
        if args.no_ensemble:
            say(f"fig3: training {len(jobs)} runs ({mode})")
            paths = train_all(jobs, processes=args.jobs)
        else:
            say(f"fig3: training {len(jobs)} runs in ensembles ({mode})")
            paths = train_as_ensemble(jobs, workers=args.jobs, verbose=not args.quick)
    ds = stack_runs({n.removeprefix("fig3_"): pth for n, pth in zip(names, paths, strict=True)})
    if args.epochs is not None:  # runs resumed from longer ones: compare the same epochs
        ds = ds.isel(epoch=ds["epoch"].values <= args.epochs)
        if "step" in ds.dims:
            ds = ds.isel(step=ds["step_epoch"].values <= args.epochs)
    numbers = summary(ds)
    ds.attrs["summary_last_30_logs"] = json.dumps(numbers)
    ds.attrs["created_by"] = "analyses/fig3.py"
    nc, png = outputs(args.out, "fig3")
    write_netcdf(ds, nc)
    plot_fig3_panels(ds, png, title="Fig. 3 (teacher-student, 15-10-10-5 tanh)")
    print(json.dumps(numbers, indent=1))
    say(f"fig3: wrote {nc} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
