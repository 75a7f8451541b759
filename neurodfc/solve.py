"""Simulating the closed loop: :func:`simulate`, the one entry point over every solver.

The loop is assembled from its components (:mod:`neurodfc.core.loop`: the network's neurons or
user-defined :class:`~neurodfc.components.neurons.NeuronLayer` s, the PI controller or any
:class:`~neurodfc.components.controller.Controller`) and handed to the solver registered under
``simulation.solver`` (:mod:`neurodfc.solvers`). It returns a :class:`Solution` with a per-sample
:class:`Status` (never an exception for a diverging sample) and, on request, the
trajectory-summed DFC update. No autograd graph is built.
"""

from __future__ import annotations

from typing import Literal

import torch

from neurodfc.components.controller import Controller
from neurodfc.components.neurons import NeuronLayer
from neurodfc.config import SimulationConfig
from neurodfc.core.noise import NoiseSource
from neurodfc.core.solution import (
    FREEZE_FACTOR,
    STATUS_NAMES,
    Accumulator,
    Solution,
    Status,
    classify,
    record_steps,
)
from neurodfc.core.teaching import FORWARD_RULES, check_rule
from neurodfc.solvers import Problem, get_solver
from neurodfc.system import DFCSystem

__all__ = [
    "FORWARD_RULES",
    "FREEZE_FACTOR",
    "STATUS_NAMES",
    "Accumulator",
    "Solution",
    "Status",
    "classify",
    "record_steps",
    "simulate",
]


def simulate(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    *,
    sim: SimulationConfig | None = None,
    alpha: float | None = None,
    k_p: float | None = None,
    tau_ratio: float | None = None,
    record_v: bool = False,
    record: bool = True,
    accumulate: str | None = None,
    noise: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    apical_tau: float | None | Literal["config"] = "config",
    accumulate_feedback: bool = False,
    controller: Controller | None = None,
    neurons: list[NeuronLayer] | None = None,
    noise_source: NoiseSource | None = None,
    record_apical: bool = False,
    error: str = "difference",
    noise_tau: float | None = None,
) -> Solution:
    """Simulate the closed loop for inputs ``x`` [B, n_0] pushed towards ``r_target`` [B, n_L].

    Args:
        system: the DFC system (weights, feedback, controller and simulation settings).
        x: inputs ``r_0`` [B, n_0].
        r_target: output targets ``r_L*`` [B, n_L].
        sim: overrides ``system.cfg.simulation`` (solver, dt, steps, flags, recording).
        alpha: overrides the controller's leak ``alpha`` (the sleep phase uses its own); with
            a custom ``controller``, the leak of the convergence criterion.
        k_p: overrides the proportional gain ``k_p``.
        tau_ratio: overrides ``tau_v / tau_u`` (of the layers whose component leaves it unset).
        record_v: also record every layer's voltage ``v_i(t)``.
        record: record ``r_L, u, e`` every ``sim.record_every`` steps (else only the ends).
        accumulate: a forward rule (``nonlinear_difference``, ``voltage_difference``,
            ``derivative_matrix``) whose teaching signal is summed over the trajectory
            (reference Euler: over the time points; continuous-time solvers: integrated over
            [0, t_max]); see :class:`Accumulator`.
        noise: ``(sigma, sigma_output)`` apical noise; defaults to ``system.cfg.noise``.
        generator: random generator for the noise.
        apical_tau: overrides ``system.cfg.apical.tau`` (None = instantaneous apical input).
        accumulate_feedback: sum ``a_i[t]^T u[t+1]`` over the steps (the sleep-phase rule's
            pairing of the apical voltage with the next control); reference Euler only.
        controller: a :class:`~neurodfc.components.controller.Controller` replacing the PI
            controller (e.g. a PID, see the tutorial "Adding a new controller"); runs on every
            solver. The recorded ``u`` is the controller's output, ``u_int_final`` its last
            state entry.
        neurons: one :class:`~neurodfc.components.neurons.NeuronLayer` per layer replacing the
            network's activations (and, where set, ``tau_ratio``); the feedforward state and
            ``Solution.r_ff`` then use them too (compute ``r_target`` from
            :meth:`neurodfc.core.loop.ClosedLoop.feedforward`).
        noise_source: the standard normals of the noise (e.g.
            :class:`~neurodfc.core.noise.ReplayNoise` of recorded noise); default: drawn from
            ``generator``.
        record_apical: also record every layer's apical voltage ``v_i^fb(t)``
            (``Solution.apical``).
        error: the controller's error, ``difference`` (``e = r_L* - r_L``, DFC) or
            ``softmax`` (``e = r_L* - softmax(r_L)``, Strong-DFC's loss gradient; not on
            ``etdrk4``).
        noise_tau: Ornstein-Uhlenbeck apical noise with this time constant instead of white
            noise (Strong-DFC; reference scheme).

    Returns:
        A :class:`Solution`; samples that diverge get a status, never an exception.
    """
    cfg = system.cfg
    sim = sim or cfg.simulation
    if noise is None:
        s = cfg.noise.sigma
        noise = (s, cfg.noise.sigma_output if cfg.noise.sigma_output is not None else s)
    check_rule(accumulate)
    ctrl = cfg.controller
    tau_a = cfg.apical.tau if apical_tau == "config" else apical_tau
    problem = Problem(
        net=system.network,
        x=x,
        r_target=r_target,
        sim=sim,
        alpha=ctrl.alpha if alpha is None else alpha,
        k_p=ctrl.k_p if k_p is None else k_p,
        tau_ratio=ctrl.tau_ratio if tau_ratio is None else tau_ratio,
        leak=ctrl.leak,
        apical_tau=tau_a,
        controller=controller,
        neurons=neurons,
        record=record,
        record_v=record_v,
        record_apical=record_apical,
        accumulate=accumulate,
        accumulate_feedback=accumulate_feedback,
        noise=noise,
        noise_source=noise_source,
        generator=generator,
        error=error,
        noise_tau=noise_tau,
    )
    if sim.solver != "euler_reference":
        _check_noiseless(problem)
    with torch.no_grad():
        if system.batcher is not None:  # an ensemble member: solved with the others
            return system.batcher.solve(problem)
        return get_solver(sim.solver).solve(problem)


def _check_noiseless(p: Problem) -> None:
    """The continuous-time solvers integrate the noiseless ODE."""
    if p.noisy:
        raise ValueError(
            f"simulation.solver = {p.sim.solver!r} integrates the noiseless ODE; noise "
            "(noise.sigma > 0) needs solver = 'euler_reference'"
        )
    if p.accumulate_feedback:
        raise ValueError("accumulate_feedback needs simulation.solver = 'euler_reference'")
