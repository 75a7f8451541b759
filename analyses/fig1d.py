"""Fig. 1D: the PI-controlled dynamics of r_L(t) and u(t) for three samples.

Full mode: ``models/fig1d.toml`` (15-10-10-1 tanh student on the teacher-student task, k_p 1,
alpha 0.0015, tau_v/tau_u 0.2, dt 0.005, 2000 steps, lam 0.05, weight-product feedback).
``--quick``: the same dynamics on a tiny data set. Writes ``fig1d.nc`` (the simulation
Dataset plus the Condition-2 measure and the convergence diagnostics per sample) and
``fig1d.png``.
"""

from __future__ import annotations

import sys

from _common import model, outputs, parser, say

from neurodfc.analysis import conditions, convergence
from neurodfc.experiment import load_data, simulate_experiment
from neurodfc.plotting import plot_dynamics
from neurodfc.results import write_netcdf
from neurodfc.system import DFCSystem


def main(argv: list[str] | None = None) -> int:
    """Simulate three samples and write ``fig1d.nc`` / ``fig1d.png`` into ``--out``."""
    p = parser("fig1d", __doc__ or "")
    p.add_argument("--samples", type=int, default=3)
    args = p.parse_args(argv)
    over = [] if args.device is None else [f'device="{args.device}"']
    if args.quick:
        over += ["data.n_train=16", "data.n_val=4", "data.n_test=4"]
    cfg = model("fig1d", over)
    system = DFCSystem.from_config(cfg)
    ds = simulate_experiment(cfg, samples=args.samples, system=system)
    data = load_data(cfg)
    x, y = data.train.x[: args.samples], data.train.y[: args.samples]
    cond = conditions(system, x, y, gammas=[])
    conv = convergence(system, x, y)
    ds["condition2"] = cond["condition2"]
    for k in ("settling_time", "decay_rate", "dist_lemma1_output"):
        ds[k] = conv[k]
    ds = ds.drop_vars([v for v in ("gamma",) if v in ds.coords])
    nc, png = outputs(args.out, "fig1d")
    write_netcdf(ds, nc)
    plot_dynamics(ds, png, samples=args.samples)
    c2 = ", ".join(f"{v:.3f}" for v in ds["condition2"].values)
    say(f"fig1d: Condition-2 measure per sample: {c2}; wrote {nc} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
