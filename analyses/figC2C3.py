"""Figs. C2/C3 (the reference code's S2-S4): noise-driven feedback learning on a 20-10-5
network (linear and tanh) drives Q towards the damped pseudo-inverse of J.

Settings of ``configs/toy_experiments/configs_figC2C3`` in the reference code: sleep phase
with tau_v/tau_u 0.005, apical tau 0.3, dt 0.001, 300 steps, sigma 0.01, SGD lr 0.1 with weight
decay 0.01, clipping 1, 25 epochs of 40 minibatches of 128 (1000 updates) on U[-1, 1]^20
inputs, Q_1 and Q_L learned (xavier-normal init), metrics every 5 updates on 128 samples.
Sweeps: ``gamma`` (the damping of the measured angle; one training with alpha_fb 0.5,
k_p_fb 0), ``alpha_fb`` in {0, 0.001, 0.01, 0.1, 0.5, 1} (k_p_fb 0.3, gamma 5) and ``k_p_fb``
in {0, 0.01, 0.1, 0.5, 1} (alpha_fb 0.1, gamma 5). ``--quick``: 20 updates of 32 samples,
60 steps, two values per sweep.

Writes ``figC2C3.nc`` (dims activation, sweep, case, iteration; ``value`` (sweep, case) holds
the swept value) and ``figC2C3.png``.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
import xarray as xr
from _common import outputs, parser, say, sleep_trajectory

from neurodfc.config import config_from_dict
from neurodfc.data import random_inputs
from neurodfc.figures import plot_figC2C3
from neurodfc.results import write_netcdf
from neurodfc.system import DFCSystem

GAMMAS = [0.0, 0.1, 1.0, 5.0, 10.0, 100.0, 1000.0]
ALPHAS = [0.0, 0.001, 0.01, 0.1, 0.5, 1.0]
KPS = [0.0, 0.01, 0.1, 0.5, 1.0]
SWEEPS = ("gamma", "alpha_fb", "k_p_fb")


def sleep_config(act: str, alpha_fb: float, k_p_fb: float, steps: int) -> dict[str, Any]:
    """The config tree of one C2/C3 run."""
    return {
        "seed": 42,
        "network": {"sizes": [20, 10, 5], "hidden_activation": act},
        "feedback": {"init": "xavier_normal", "learned": True, "train_output": True},
        "feedback_learning": {
            "alpha": alpha_fb,
            "k_p": k_p_fb,
            "tau_ratio": 0.005,
            "apical_tau": 0.3,
            "dt": 0.001,
            "steps": steps,
            "sigma": 0.01,
            "optimizer": "sgd",
            "lr_init": 0.1,
            "weight_decay": 0.01,
            "clip_grad_norm": 1.0,
        },
    }


def one_run(job: tuple[str, str, float, dict[str, Any]]) -> tuple[str, str, float, dict[str, Any]]:
    """Train one sleep phase; returns the logged trajectory."""
    act, sweep, value, p = job
    torch.set_num_threads(1)
    alpha, kp = (
        (0.5, 0.0) if sweep == "gamma" else ((value, 0.3) if sweep == "alpha_fb" else (0.1, value))
    )
    cfg = config_from_dict(sleep_config(act, alpha, kp, p["steps"]))
    system = DFCSystem.from_config(cfg)
    x = random_inputs(5000, 20, seed=1)
    log = sleep_trajectory(
        system,
        x,
        iterations=p["iterations"],
        batch=p["batch"],
        log_every=p["log_every"],
        gammas=GAMMAS if sweep == "gamma" else [5.0],
        lr=0.1,
        weight_decay=0.01,
        seed=7,
    )
    say(f"  {act} {sweep}={value:g}: Condition 2 {log['condition2'][-1]:.3f}")
    return act, sweep, value, log


def main(argv: list[str] | None = None) -> int:
    """Run the sweeps and write ``figC2C3.nc`` / ``figC2C3.png`` into ``--out``."""
    p = parser("figC2C3", __doc__ or "")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    args = p.parse_args(argv)
    if args.quick:
        prm = {"iterations": 20, "batch": 32, "log_every": 5, "steps": 60}
        sweeps = {"gamma": [float("nan")], "alpha_fb": [0.1, 1.0], "k_p_fb": [0.0, 0.5]}
    else:
        prm = {"iterations": 1000, "batch": 128, "log_every": 5, "steps": 300}
        sweeps = {"gamma": [float("nan")], "alpha_fb": ALPHAS, "k_p_fb": KPS}
    acts = ["linear", "tanh"]
    jobs = [(a, s, v, prm) for a in acts for s in SWEEPS for v in sweeps[s]]
    say(f"figC2C3: {len(jobs)} feedback-learning runs")
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one_run, jobs))
    else:
        results = [one_run(j) for j in jobs]
    n_case = max(len(GAMMAS), len(ALPHAS), len(KPS))
    n_it = len(results[0][3]["iteration"])
    shape = (len(acts), len(SWEEPS), n_case, n_it)
    c2, at, ap = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    value = np.full((len(SWEEPS), n_case), np.nan)
    for act, sweep, v, log in results:
        a, s = acts.index(act), SWEEPS.index(sweep)
        pinv = np.asarray(log["angle_Q_pinv"])  # [n_it, n_gamma]
        cases = range(len(GAMMAS)) if sweep == "gamma" else [sweeps[sweep].index(v)]
        for k in cases:
            c2[a, s, k] = log["condition2"]
            at[a, s, k] = log["angle_Q_JT"]
            ap[a, s, k] = pinv[:, k] if sweep == "gamma" else pinv[:, 0]
            value[s, k] = GAMMAS[k] if sweep == "gamma" else v
    dims = ("activation", "sweep", "case", "iteration")
    ds = xr.Dataset(
        {
            "condition2": (dims, c2, {"long_name": "Condition-2 measure (batch mean)"}),
            "angle_Q_JT": (
                dims,
                at,
                {"long_name": "angle(Q, J^T) (batch mean)", "units": "degree"},
            ),
            "angle_Q_pinv": (
                dims,
                ap,
                {
                    "long_name": "angle(Q, J^T (J J^T + gamma I)^-1) (batch mean); gamma = the "
                    "case's value in the gamma sweep, 5 otherwise",
                    "units": "degree",
                },
            ),
            "value": (("sweep", "case"), value, {"long_name": "swept value of the case"}),
        },
        coords={
            "activation": acts,
            "sweep": list(SWEEPS),
            "case": np.arange(n_case),
            "iteration": np.asarray(results[0][3]["iteration"]),
        },
        attrs={"created_by": "analyses/figC2C3.py", "quick": int(args.quick), **prm},
    )
    nc, png = outputs(args.out, "figC2C3")
    write_netcdf(ds, nc)
    plot_figC2C3(ds, png)
    for act in acts:
        g = ds.sel(activation=act, sweep="gamma").isel(iteration=-1)
        best = int(np.nanargmin(g["angle_Q_pinv"].values))
        say(
            f"figC2C3 {act}: final Condition 2 {float(g['condition2'][0]):.3f}; best gamma "
            f"{GAMMAS[best]:g} with angle {float(g['angle_Q_pinv'][best]):.1f} deg"
        )
    say(f"figC2C3: wrote {nc} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
