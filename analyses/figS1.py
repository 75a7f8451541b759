"""Fig. S1: the largest real part of the eigenvalues of A_I, A~_I, A_I_inst and A_PI over
training (batch mean per logged minibatch; rolling mean +- std).

Full mode trains ``models/fig3_dfc.toml`` and ``models/fig3_fixed_dfc.toml`` (300 epochs)
logging only the stability group, at the simulated end state (the reference's
``eigenvalues_bcn``); ``--from DIR`` instead reuses the runs of a previous
``analyses/fig3.py --out DIR`` (``DIR/fig3_runs/*``), which log the same quantity.
``--quick``: as ``fig3.py --quick``. Writes ``figS1.nc`` and ``figS1.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import model, outputs, parser, say, stack_runs, train_all
from fig3 import run_overrides

from neurodfc.figures import plot_figS1
from neurodfc.results import write_netcdf

RUNS = ("fig3_dfc", "fig3_fixed_dfc")


def main(argv: list[str] | None = None) -> int:
    """Write ``figS1.nc`` / ``figS1.png`` into ``--out``."""
    p = parser("figS1", __doc__ or "")
    p.add_argument("--from", dest="source", type=Path, default=None, help="a fig3.py --out DIR")
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated fig3_* configs")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    if args.source is not None:
        found = sorted((args.source / "fig3_runs").glob("*/metrics.nc"))
        paths = {f.parent.name: f.parent for f in found}
        if not paths:
            p.error(f"no runs under {args.source / 'fig3_runs'}")
    else:
        jobs = []
        for n in names:
            over = run_overrides(n, args.quick, args.epochs, args.device)
            over = [o for o in over if not o.startswith("analysis.metrics")]
            over.append('analysis.metrics=["stability"]')
            jobs.append((model(n, over), args.out / "figS1_runs" / n))
        say(f"figS1: training {len(jobs)} runs")
        paths = dict(zip(names, train_all(jobs, processes=args.jobs), strict=True))
    ds = stack_runs({k.removeprefix("fig3_"): v for k, v in paths.items()})
    if "max_re_eig" not in ds:
        p.error("the runs did not log the stability group (max_re_eig)")
    if args.epochs is not None and "step_epoch" in ds.coords:  # same epochs for every run
        ds = ds.isel(step=ds["step_epoch"].values <= args.epochs)
    keep = [v for v in ds.data_vars if str(v).startswith(("max_re_eig", "stability_measure"))]
    ds = ds[keep]
    ds = ds.dropna("run", how="all", subset=["max_re_eig"])
    ds.attrs["created_by"] = "analyses/figS1.py"
    nc, png = outputs(args.out, "figS1")
    write_netcdf(ds, nc)
    plot_figS1(ds, png)
    last = ds["max_re_eig"].isel(step=slice(-30, None)).mean("step")
    for run in ds["run"].values:
        vals = ", ".join(
            f"{m}: {float(last.sel(run=run, matrix=m)):.3f}" for m in ds["matrix"].values
        )
        say(f"figS1 {run}: {vals}")
    say(f"figS1: wrote {nc} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
