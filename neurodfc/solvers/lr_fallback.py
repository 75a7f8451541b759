"""The linear-response solver's fallback: the samples outside the closed form's range are
simulated by an integrating solver and merged into the closed form's :class:`Solution`."""

from __future__ import annotations

import dataclasses

import torch

from neurodfc.config import SimulationConfig
from neurodfc.core.solution import Solution
from neurodfc.solvers.base import Problem, Solver, get_solver


def fallback_sim(p: Problem) -> SimulationConfig:
    """The simulation settings of the fallback solver (``fallback_solver``, None: the
    discretisation's integrator).

    Args:
        p: the linear-response problem.
    """
    name = p.sim.fallback_solver
    if name is None:
        name = "euler_reference" if p.sim.discretisation == "reference_euler" else "etdrk4"
    return p.sim.model_copy(update={"solver": name})


def fallback(p: Problem) -> Solver:
    """The fallback solver object.

    Args:
        p: the linear-response problem.
    """
    return get_solver(fallback_sim(p).solver)


def merge_fallback(p: Problem, sol: Solution, fb: torch.Tensor) -> Solution:
    """``sol`` with the samples ``fb`` [B] replaced by the fallback solver's run of them
    (final state, status, recordings; their sums added, rescaled to ``sol``'s count).

    Args:
        p: the linear-response problem.
        sol: the closed form's solution (its accumulator sums only the other samples).
        fb: the samples to simulate [B] (bool).
    """
    sub = dataclasses.replace(p, x=p.x[fb], r_target=p.r_target[fb], sim=fallback_sim(p))
    other = fallback(p).solve(sub)
    idx = fb.nonzero().squeeze(1)

    def put(dst: torch.Tensor, src: torch.Tensor, dim: int) -> torch.Tensor:
        out = dst.clone()
        out.index_copy_(dim, idx, src.to(dst.dtype))
        return out

    for field in ("v_final", "r_final", "v_basal_final"):
        pairs = zip(getattr(sol, field), getattr(other, field), strict=True)
        setattr(sol, field, [put(a, b, 0) for a, b in pairs])
    sol.u_final = put(sol.u_final, other.u_final, 0)
    sol.u_int_final = put(sol.u_int_final, other.u_int_final, 0)
    sol.status = put(sol.status, other.status, 0)
    if other.r_out.shape[0] == sol.r_out.shape[0]:
        sol.r_out = put(sol.r_out, other.r_out, 1)
        sol.u = put(sol.u, other.u, 1)
        sol.e = put(sol.e, other.e, 1)
        sol.v = [put(a, b, 1) for a, b in zip(sol.v, other.v, strict=True)]
        sol.apical = [put(a, b, 1) for a, b in zip(sol.apical, other.apical, strict=True)]
    if sol.accumulator is not None and other.accumulator is not None:
        s = sol.accumulator.count / other.accumulator.count
        acc = sol.accumulator
        acc.W = [a + s * b for a, b in zip(acc.W, other.accumulator.W, strict=True)]
        acc.b = [a + s * b for a, b in zip(acc.b, other.accumulator.b, strict=True)]
    sol.steps_run, sol.nfe = other.steps_run, other.nfe
    return sol
