"""What a simulation returns: :class:`Solution`, built in one place (:func:`build_solution`)
from any solver's :class:`RawRun`, with a per-sample :class:`Status` (never an exception for a
diverging sample)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import torch

from neurodfc.components.controller import leak_residual
from neurodfc.config import SimulationConfig


class Status(IntEnum):
    """Per-sample outcome of a simulation (reference code's criteria)."""

    CONVERGED = 0
    DIVERGED = 1
    MAX_STEPS = 2
    NONFINITE = 3


STATUS_NAMES = [s.name.lower() for s in Status]

FREEZE_FACTOR = 100.0
"""The adaptive solvers freeze a sample once its divergence ratio exceeds this multiple of
``simulation.divergence_threshold`` and of its own initial value (it is then reported
``diverged``; one that overflows, ``nonfinite``), so that one diverging sample cannot force ever
smaller steps on the batch; its integrals are dropped (it contributes nothing, like an excluded
sample)."""


@dataclass
class Accumulator:
    """Sums over time and batch of a forward rule's teaching signal ``d_i``.

    ``W[i] = sum_t d_i[t]^T r_{i-1}[t]`` [n_i, n_{i-1}], ``b[i] = sum_t sum_b d_i[t]`` [n_i];
    the time average is ``W / count``. Reference scheme: ``count`` time points summed (the
    initial state included, as in the reference code). Continuous-time solvers: the sums are
    integrals over [0, t_max] and ``count = t_max``.
    """

    W: list[torch.Tensor]
    b: list[torch.Tensor]
    count: float


@dataclass
class Solution:
    """Result of :func:`neurodfc.solve.simulate`.

    Trajectories are recorded every ``record_every`` steps (and the last step):
    ``t`` [T_rec]; ``r_out``, ``u``, ``e`` [T_rec, B, n_L]; ``v`` and ``apical`` per layer
    [T_rec, B, n_i] (empty unless requested; ``apical`` is the apical voltage ``v_i^fb``).
    Final state: ``v_final``, ``r_final``, ``v_basal_final`` per layer, ``u_final``,
    ``u_int_final`` [B, n_L]. ``status`` [B] holds :class:`Status` codes.
    """

    t: torch.Tensor
    r_out: torch.Tensor
    u: torch.Tensor
    e: torch.Tensor
    v: list[torch.Tensor]
    v_final: list[torch.Tensor]
    r_final: list[torch.Tensor]
    v_basal_final: list[torch.Tensor]
    u_final: torch.Tensor
    u_int_final: torch.Tensor
    r_target: torch.Tensor
    r_ff: list[torch.Tensor]
    v_ff: list[torch.Tensor]
    status: torch.Tensor
    steps_run: int
    nfe: int
    accumulator: Accumulator | None = None
    feedback_accumulator: Accumulator | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    apical: list[torch.Tensor] = field(default_factory=list)

    @property
    def e_norm(self) -> torch.Tensor:
        """``|e(t)|`` [T_rec, B]."""
        return torch.linalg.vector_norm(self.e, dim=-1)

    def status_names(self) -> list[str]:
        """Status of each sample as a lower-case name."""
        return [STATUS_NAMES[int(s)] for s in self.status]


def classify(
    r_out: torch.Tensor,
    r_target: torch.Tensor,
    u: torch.Tensor,
    u_int: torch.Tensor,
    r_ff_out: torch.Tensor,
    e0_norm: torch.Tensor,
    *,
    alpha: float,
    leak: str,
    sim: SimulationConfig,
) -> torch.Tensor:
    """Per-sample :class:`Status` from the final state (the reference code's criteria):
    converged if ``|r_L - (r_L* - alpha u)| / |r_L^-| < convergence_threshold`` and
    ``|e(T)| < epsilon^2 |e(0)|``; diverged if the ratio exceeds ``divergence_threshold``;
    nonfinite if ``r_L`` or ``u`` holds a NaN or inf.

    Args:
        r_out: final output rates ``r_L`` [B, n_L].
        r_target: output target ``r_L*`` [B, n_L].
        u: final control ``u`` [B, n_L].
        u_int: final integral control ``u_int`` [B, n_L].
        r_ff_out: feedforward output ``r_L^-`` [B, n_L] (scale of the criterion).
        e0_norm: ``|e(0)|`` per sample [B].
        alpha: controller leak.
        leak: leak convention (``reference`` or ``paper``).
        sim: the thresholds (``convergence_threshold``, ``divergence_threshold``, ``epsilon``).

    Returns:
        int8 codes of :class:`Status` [B].
    """
    resid = leak_residual(r_target, u, u_int, alpha, leak)
    ratio = torch.linalg.vector_norm(r_out - resid, dim=1) / torch.linalg.vector_norm(
        r_ff_out, dim=1
    )
    e_norm = torch.linalg.vector_norm(r_target - r_out, dim=1)
    status = torch.full(ratio.shape, int(Status.MAX_STEPS), dtype=torch.int8, device=r_out.device)
    conv = (ratio < sim.convergence_threshold) & (e_norm < sim.epsilon**2 * e0_norm)
    status[conv] = int(Status.CONVERGED)
    status[ratio > sim.divergence_threshold] = int(Status.DIVERGED)
    finite = torch.isfinite(r_out).all(dim=1) & torch.isfinite(u).all(dim=1)
    status[~finite] = int(Status.NONFINITE)
    return status


def record_steps(n_steps: int, every: int) -> list[int]:
    """The recorded step indices: every ``every``-th of ``n_steps`` and the last.

    Args:
        n_steps: number of time points.
        every: recording interval (steps).
    """
    steps = list(range(0, n_steps, every))
    if steps[-1] != n_steps - 1:
        steps.append(n_steps - 1)
    return steps


@dataclass
class RawRun:
    """What a solver hands to :func:`build_solution` (see :class:`Solution` for the shapes);
    ``e`` None: ``r_L* - r_out``; ``dead``/``overflowed`` [B] bool: samples frozen during the run
    (reported diverged / nonfinite); ``limit_reached``: stopped at a step limit (the others are
    reported ``max_steps``)."""

    t: torch.Tensor
    r_out: torch.Tensor
    u: torch.Tensor
    e: torch.Tensor | None
    v: list[torch.Tensor]
    apical: list[torch.Tensor]
    v_final: list[torch.Tensor]
    r_final: list[torch.Tensor]
    vb_final: list[torch.Tensor]
    u_final: torch.Tensor
    u_int_final: torch.Tensor
    steps_run: int
    nfe: int
    accumulator: Accumulator | None = None
    feedback_accumulator: Accumulator | None = None
    dead: torch.Tensor | None = None
    overflowed: torch.Tensor | None = None
    limit_reached: bool = False
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def build_solution(
    run: RawRun,
    r_target: torch.Tensor,
    v_ff: list[torch.Tensor],
    r_ff: list[torch.Tensor],
    *,
    alpha: float,
    leak: str,
    sim: SimulationConfig,
) -> Solution:
    """The :class:`Solution` of a solver's raw result, with each sample's :class:`Status`.

    Args:
        run: the solver's result.
        r_target: output targets ``r_L*`` [B, n_L].
        v_ff: feedforward voltages per layer.
        r_ff: feedforward rates per layer.
        alpha: controller leak (of the convergence criterion).
        leak: leak convention (of the convergence criterion).
        sim: the thresholds of the criterion.
    """
    e0_norm = torch.linalg.vector_norm(r_target - r_ff[-1], dim=1)
    status = classify(
        run.r_final[-1],
        r_target,
        run.u_final,
        run.u_int_final,
        r_ff[-1],
        e0_norm,
        alpha=alpha,
        leak=leak,
        sim=sim,
    )
    if run.limit_reached:
        status[status == int(Status.CONVERGED)] = int(Status.MAX_STEPS)
    if run.dead is not None:  # frozen at their last finite state during the run
        status[run.dead] = int(Status.DIVERGED)
    if run.overflowed is not None:
        status[run.overflowed] = int(Status.NONFINITE)
    return Solution(
        t=run.t,
        r_out=run.r_out,
        u=run.u,
        e=run.e if run.e is not None else r_target.unsqueeze(0) - run.r_out,
        v=run.v,
        v_final=run.v_final,
        r_final=run.r_final,
        v_basal_final=run.vb_final,
        u_final=run.u_final,
        u_int_final=run.u_int_final,
        r_target=r_target,
        r_ff=r_ff,
        v_ff=v_ff,
        status=status,
        steps_run=run.steps_run,
        nfe=run.nfe,
        accumulator=run.accumulator,
        feedback_accumulator=run.feedback_accumulator,
        extras=run.extras,
        apical=run.apical,
    )
