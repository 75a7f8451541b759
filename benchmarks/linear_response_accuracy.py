"""Accuracy and cost of the linear-response solver at the paper's settings.

Usage::

    OMP_NUM_THREADS=1 NEURODFC_DATA=/work/shared/data \\
        python benchmarks/linear_response_accuracy.py models/fig3_dfc.toml [...] [--batch 128]

For each model file (at initialisation, first training batch of its data set, seed of the
config): the DFC update (the config's rule) and the DFC-SS final voltage deviations of the
closed form (``linear_response``, every sample in closed form) against the continuous-time
limit (``etdrk4`` at rtol 1e-8; with ``--discretisation reference_euler``: against the reference
scheme ``euler_reference`` at the config's dt and steps), the per-sample error estimates, the
fraction of samples that would fall back at ``linear_response_tol`` = 1e-6, and the wall
times.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from neurodfc.config import load_config
from neurodfc.experiment import load_data
from neurodfc.solve import simulate
from neurodfc.system import DFCSystem


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def measure(path: str, batch: int, rtol: float, disc: str) -> dict[str, float | str]:
    """Closed form vs its oracle on the first training batch of ``path``.

    Args:
        path: a model file.
        batch: batch size.
        rtol: ETDRK4's relative tolerance of the oracle (continuous).
        disc: ``continuous`` or ``reference_euler``.
    """
    cfg = load_config(path)
    system = DFCSystem.from_config(cfg)
    data = load_data(cfg)
    x, y = data.train.x[:batch], data.train.y[:batch]
    rt = system.target_of(system.network(x), y)
    rule = cfg.method.rule
    sims = {
        "lr": cfg.simulation.model_copy(
            update={"solver": "linear_response", "linear_response_tol": 1.0, "discretisation": disc}
        ),
        "ref": cfg.simulation.model_copy(
            update={"solver": "etdrk4", "rtol": rtol, "atol": 1e-14}
            if disc == "continuous"
            else {"solver": "euler_reference"}
        ),
    }
    out, secs = {}, {}
    for k, sim in sims.items():
        t0 = time.perf_counter()
        out[k] = simulate(system, x, rt, sim=sim, record=False, accumulate=rule)
        secs[k] = time.perf_counter() - t0
    lr, ref = out["lr"], out["ref"]
    assert lr.accumulator is not None and ref.accumulator is not None
    flat = [
        torch.cat([a.flatten() for a in [*s.accumulator.W, *s.accumulator.b]]) for s in (lr, ref)
    ]
    dz = [torch.cat([v - f for v, f in zip(s.v_final, s.v_ff, strict=True)], 1) for s in (lr, ref)]
    est = lr.extras["lr_estimate"]
    unstable = lr.extras["lr_reason"] == 2
    size = torch.cat(ref.v_ff, 1).norm(dim=1)
    return {
        "config": path,
        "batch": batch,
        "discretisation": disc,
        "dfc_update_rel_error": _rel(flat[0], flat[1]),
        "final_deviation_rel_error": _rel(dz[0], dz[1]),
        "deviation_over_voltage_median": float((dz[1].norm(dim=1) / size).median()),
        "estimate_median": float(est.median()),
        "estimate_max": float(est.max()),
        "fallback_fraction_at_1e-6": float(
            ((est > 1e-6) | (lr.extras["lr_reason"] != 0)).double().mean()
        ),
        "unstable_fraction": float(unstable.double().mean()),
        "seconds_closed_form": secs["lr"],
        "seconds_oracle": secs["ref"],
        "oracle_nfe": float(ref.nfe),
    }


def main() -> None:
    """Measure every model file given on the command line and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--discretisation", default="continuous")
    args = ap.parse_args()
    for path in args.configs:
        print(json.dumps(measure(path, args.batch, args.rtol, args.discretisation)), flush=True)


if __name__ == "__main__":
    main()
