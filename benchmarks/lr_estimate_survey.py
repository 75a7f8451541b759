"""Survey of the linear-response error estimate on random networks, settled or not.

Draws random small tanh / sigmoid networks, gains, output errors, horizons, rules, orders and
discretisations; runs each sample alone through the closed form (``linear_response_tol = 1``,
so every sample stays in it) and through its oracle (the reference scheme for the reference
discretisation, dopri5 at rtol 1e-11 for the continuous one); prints one JSON line per sample
(its parameters, ``lr_transient``, both errors and both estimates) and, at the end, the largest
error / estimate per bin of the transient's relative amplitude at ``T``. Every ratio must stay
below 1; ``docs/linear_response.md`` section 3 quotes the survey. ``--no-floor`` measures the
first neglected term alone on every sample (it sets ``lr_estimate.SETTLED`` to infinity in this
process: the threshold beyond which the solver keeps its Cauchy-Schwarz floor was chosen from
that measurement).

    python benchmarks/lr_estimate_survey.py --draws 400 --seed 2 --no-floor > survey.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linear_response_accuracy import _dz, _flat, _rel  # noqa: E402  (this script's folder)

from neurodfc.solve import simulate  # noqa: E402
from neurodfc.solvers import lr_estimate  # noqa: E402
from tests.helpers import make_system, random_batch  # noqa: E402

DT = 0.01
ORACLES: dict[str, dict[str, Any]] = {
    "reference_euler": {"solver": "euler_reference"},
    "continuous": {"solver": "dopri5", "rtol": 1e-11, "atol": 1e-14},
}
BINS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, float("inf")]


def draw(rng: random.Random, lam_max: float) -> dict[str, Any]:
    """One random setting: half the gains lightly damped (``k_p`` below 0.1)."""
    hidden = [rng.randint(2, 8) for _ in range(rng.randint(1, 3))]
    return {
        "seed": rng.randint(0, 1000),
        "sizes": [rng.randint(2, 6), *hidden, rng.randint(1, 3)],
        "k_p": rng.choice([rng.uniform(0, 0.1), rng.uniform(0, 2)]),
        "alpha": 10 ** rng.uniform(-3, -0.7),
        "lam": 10 ** rng.uniform(-3, math.log10(lam_max)),
        "act": rng.choice(["tanh", "sigmoid"]),
        "rule": rng.choice(["nonlinear_difference", "derivative_matrix", "voltage_difference"]),
        "steps": rng.choice([21, 51, 101, 151, 301, 501, 1001]),
        "order": rng.choice([1, 2]),
        "disc": rng.choice(["reference_euler", "reference_euler", "continuous"]),
    }


def measure(p: dict[str, Any]) -> list[dict[str, Any]]:
    """Both samples of one drawn setting, each alone (unstable ones skipped)."""
    system = make_system(
        p["sizes"], act=p["act"], lam=p["lam"], k_p=p["k_p"], alpha=p["alpha"], seed=p["seed"]
    )
    x, y = random_batch(system, 2)
    rt = system.target_of(system.network(x), y)
    base = system.cfg.simulation.model_copy(update={"dt": DT, "steps": p["steps"]})
    lr_sim = base.model_copy(
        update={
            "solver": "linear_response",
            "linear_response_tol": 1.0,
            "discretisation": p["disc"],
            "order": p["order"],
        }
    )
    ref_sim = base.model_copy(update=ORACLES[p["disc"]])
    rows = []
    for b in range(2):
        xb, rb = x[b : b + 1], rt[b : b + 1]
        lr = simulate(system, xb, rb, sim=lr_sim, record=False, accumulate=p["rule"])
        if int(lr.extras["lr_reason"][0]) != 0:
            continue
        ref = simulate(system, xb, rb, sim=ref_sim, record=False, accumulate=p["rule"])
        rows.append(
            {
                **p,
                "sample": b,
                "transient": float(lr.extras["lr_transient"][0]),
                "update_error": _rel(_flat(lr), _flat(ref)),
                "final_error": _rel(_dz(lr), _dz(ref)),
                "estimate": float(lr.extras["lr_estimate"][0]),
                "estimate_final": float(lr.extras["lr_estimate_final"][0]),
            }
        )
    return rows


def _ratio(err: float, est: float) -> float:
    return err / est if est > 0 else (0.0 if err == 0 else float("inf"))


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Largest error / estimate per transient bin and order."""
    out = []
    for lo, hi in zip(BINS, BINS[1:], strict=False):
        for order in (1, 2):
            sel = [r for r in rows if lo <= r["transient"] < hi and r["order"] == order]
            if not sel:
                continue
            upd = max(_ratio(r["update_error"], r["estimate"]) for r in sel)
            fin = max(_ratio(r["final_error"], r["estimate_final"]) for r in sel)
            out.append(
                f"transient [{lo:g}, {hi:g}) order {order}: n = {len(sel)}, "
                f"max update error / estimate {upd:.3f}, max final error / estimate {fin:.3f}"
            )
    return out


def main() -> None:
    """Draw, measure, print JSON lines and the summary (on stderr)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--draws", type=int, default=100, help="settings drawn (2 samples each)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lam-max", type=float, default=0.05, help="largest output-error gain")
    ap.add_argument("--no-floor", action="store_true", help="the first neglected term alone")
    args = ap.parse_args()
    if args.no_floor:
        lr_estimate.SETTLED = float("inf")
    torch.set_default_dtype(torch.float64)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    for _ in range(args.draws):
        for row in measure(draw(rng, args.lam_max)):
            rows.append(row)
            print(json.dumps(row), flush=True)
    for line in summary(rows):
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
