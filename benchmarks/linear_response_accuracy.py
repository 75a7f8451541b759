"""Accuracy and cost of the linear-response solver at the paper's settings.

Usage::

    OMP_NUM_THREADS=1 NEURODFC_DATA=/work/shared/data \\
        python benchmarks/linear_response_accuracy.py models/fig3_dfc.toml [...] [--batch 128]
    python benchmarks/linear_response_accuracy.py runs/a [...]   # after training

For each model file (at initialisation, first training batch of its data set, seed of the
config; a run folder of ``neurodfc train`` instead: its config and its checkpoint's trained
weights, forward and feedback): the DFC update (the config's rule) and the DFC-SS final voltage
deviations of the closed form (``linear_response``, every sample in closed form; the DFC-SS
estimate is the one without a rule, set against each sample's final-deviation error) against the
continuous-time limit (``etdrk4`` at rtol 1e-8; with ``--discretisation reference_euler``:
against the reference scheme ``euler_reference`` at the config's dt and steps), the per-sample
error estimates, the fraction of samples that would fall back at ``linear_response_tol`` = 1e-6,
and the wall times. With ``--per-sample N``, the first ``N`` samples are also run one at a
time (with the batch's targets) by both solvers, so that each sample's own update error and
final-deviation error can be set against its estimate (``error_over_estimate_max`` must stay
below 1).

A sample whose deviations are tiny (after training: 1e-9 to 1e-7 of the voltages) cannot be
checked against the reference scheme: it integrates ``v`` itself, so its rounding leaves about
``1e-16 / (|z| / |v|)`` in the sample's relative error. ``--precise-oracle`` (continuous
discretisation) makes the ETDRK4 oracle resolve them: ``atol`` 1e-24 and the neurons' rate
increments ``phi(v^- + z) - phi(v^-)`` to a few ulp of the increment itself
(``RateIncrement(relative=True)``, patched into this process; the solvers' default is accurate
to ``eps`` absolute, enough for a state, not for a sample's own update at these deviations).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch

from neurodfc.components import neurons
from neurodfc.config import SimulationConfig, load_config
from neurodfc.experiment import load_data
from neurodfc.increments import RateIncrement
from neurodfc.solve import Solution, simulate
from neurodfc.system import DFCSystem
from neurodfc.training import load_run


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|``; the absolute ``|a - b|`` where ``b`` is 0 (a sample at its target)."""
    return float((a - b).norm() / b.norm()) if float(b.norm()) > 0 else float((a - b).norm())


def _flat(sol: Solution) -> torch.Tensor:
    assert sol.accumulator is not None
    return torch.cat([a.flatten() for a in [*sol.accumulator.W, *sol.accumulator.b]])


def _dz(sol: Solution) -> torch.Tensor:
    return torch.cat([v - f for v, f in zip(sol.v_final, sol.v_ff, strict=True)], 1)


def per_sample(
    system: DFCSystem,
    x: torch.Tensor,
    rt: torch.Tensor,
    sims: dict[str, SimulationConfig],
    rule: str,
    est: torch.Tensor,
    est_final: torch.Tensor,
) -> dict[str, float]:
    """Each sample's own errors (run alone, with the batch's targets) against its estimates
    (``lr_estimate`` covers both errors at order 1, the update's at order 2;
    ``lr_estimate_final`` the final deviations').

    Args:
        system: the system.
        x: the samples to run [N, n_0].
        rt: their targets (computed on the whole batch) [N, n_L].
        sims: the closed form's (``lr``) and the oracle's (``ref``) simulation settings.
        rule: the forward rule.
        est: the samples' estimates [N].
        est_final: the samples' final-deviation estimates [N].
    """
    err, upd, fin = [], [], []
    for b in range(x.shape[0]):
        xb, rb = x[b : b + 1], rt[b : b + 1]
        lr, ref = (simulate(system, xb, rb, sim=sims[k], record=False, accumulate=rule)
                   for k in ("lr", "ref"))  # fmt: skip
        upd.append(_rel(_flat(lr), _flat(ref)))
        fin.append(_rel(_dz(lr), _dz(ref)))
        err.append(max(upd[-1], fin[-1]))
    e = torch.tensor(err, dtype=est.dtype)
    eu, ef = torch.tensor(upd, dtype=est.dtype), torch.tensor(fin, dtype=est.dtype)
    return {
        "per_sample_update_error_max": float(eu.max()),
        "update_error_over_estimate_max": float((eu / est).max()),
        "estimate_over_update_error_median": float((est / eu).median()),
        "final_error_over_final_estimate_max": float((ef / est_final).max()),
        "per_sample_n": float(x.shape[0]),
        "per_sample_error_median": float(e.median()),
        "per_sample_error_max": float(e.max()),
        "error_over_estimate_max": float((e / est).max()),
        "estimate_over_error_median": float((est / e).median()),
    }


def measure(
    path: str,
    batch: int,
    rtol: float,
    disc: str,
    n_single: int = 0,
    order: int = 1,
    atol: float = 1e-14,
) -> dict[str, float | str | int]:
    """Closed form vs its oracle on the first training batch of ``path``.

    Args:
        path: a model file, or a run folder (its config, its checkpoint's trained system).
        batch: batch size.
        rtol: ETDRK4's relative tolerance of the oracle (continuous).
        disc: ``continuous`` or ``reference_euler``.
        n_single: how many samples to run one at a time as well (see :func:`per_sample`).
        order: the expansion order of the closed form.
        atol: ETDRK4's absolute tolerance of the oracle (continuous).
    """
    trained = 0
    if Path(path).is_dir():
        run = load_run(path)
        cfg, system = run.system.cfg, run.system
        trained = int(run.metrics.sizes.get("epoch", 0))
    else:
        cfg = load_config(path)
        system = DFCSystem.from_config(cfg)
    data = load_data(cfg)
    x, y = data.train.x[:batch], data.train.y[:batch]
    rt = system.target_of(system.network(x), y)
    rule = cfg.method.rule
    sims = {
        "lr": cfg.simulation.model_copy(
            update={
                "solver": "linear_response",
                "linear_response_tol": 1.0,
                "discretisation": disc,
                "order": order,
            }
        ),
        "ref": cfg.simulation.model_copy(
            update={"solver": "etdrk4", "rtol": rtol, "atol": atol}
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
    flat, dz = [_flat(s) for s in (lr, ref)], [_dz(s) for s in (lr, ref)]
    # DFC-SS: the estimate without a rule (final state only), against each row's final error
    est_ss = simulate(system, x, rt, sim=sims["lr"], record=False).extras["lr_estimate"]
    err_ss = (dz[0] - dz[1]).norm(dim=1) / dz[1].norm(dim=1)
    est = lr.extras["lr_estimate"]
    unstable = lr.extras["lr_reason"] == 2
    size = torch.cat(ref.v_ff, 1).norm(dim=1)
    single = {}
    if n_single > 0:
        est_final = lr.extras["lr_estimate_final"]
        single = per_sample(
            system, x[:n_single], rt[:n_single], sims, rule, est[:n_single], est_final[:n_single]
        )
    return {
        **single,
        "config": path,
        "trained_epochs": trained,
        "batch": batch,
        "discretisation": disc,
        "order": order,
        "dfc_update_rel_error": _rel(flat[0], flat[1]),
        "final_deviation_rel_error": _rel(dz[0], dz[1]),
        "deviation_over_voltage_median": float((dz[1].norm(dim=1) / size).median()),
        "estimate_median": float(est.median()),
        "estimate_max": float(est.max()),
        "fallback_fraction_at_1e-6": float(
            ((est > 1e-6) | (lr.extras["lr_reason"] != 0)).double().mean()
        ),
        "unstable_fraction": float(unstable.double().mean()),
        "dfc_ss_estimate_median": float(est_ss.median()),
        "dfc_ss_estimate_max": float(est_ss.max()),
        "dfc_ss_error_over_estimate_max": float((err_ss / est_ss).max()),
        "dfc_ss_fallback_fraction_at_1e-6": float(
            ((est_ss > 1e-6) | (lr.extras["lr_reason"] != 0)).double().mean()
        ),
        "seconds_closed_form": secs["lr"],
        "seconds_oracle": secs["ref"],
        "oracle_nfe": float(ref.nfe),
    }


def main() -> None:
    """Measure every model file given on the command line and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("configs", nargs="+", help="model files or run folders")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument(
        "--precise-oracle",
        action="store_true",
        help="ETDRK4 oracle with atol 1e-24 and relative rate increments (continuous only)",
    )
    ap.add_argument("--discretisation", default="continuous")
    ap.add_argument("--per-sample", type=int, default=0)
    ap.add_argument("--order", type=int, default=1, help="expansion order (1 or 2)")
    args = ap.parse_args()
    if args.precise_oracle:
        if args.discretisation != "continuous":
            ap.error("--precise-oracle checks the continuous discretisation (an ETDRK4 oracle)")
        neurons.RateIncrement = functools.partial(RateIncrement, relative=True)  # type: ignore[assignment,misc]
    for path in args.configs:
        res = measure(path, args.batch, args.rtol, args.discretisation, args.per_sample, args.order,
                      atol=1e-24 if args.precise_oracle else 1e-14)  # fmt: skip
        res["precise_oracle"] = args.precise_oracle
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
