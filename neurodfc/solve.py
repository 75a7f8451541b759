"""Simulating the closed loop: the fused reference-Euler path and torchdiffeq's solvers.

:func:`simulate` returns a :class:`Solution` with a per-sample :class:`Status` (never an
exception for a diverging sample) and, on request, the trajectory-summed DFC update.
No autograd graph is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

import torch

from neurodfc.components.controller import Controller, leak_residual
from neurodfc.config import SimulationConfig
from neurodfc.fastpath import euler_reference_fast
from neurodfc.integrators import integrate
from neurodfc.system import DFCSystem, VectorField

FORWARD_RULES = ("nonlinear_difference", "voltage_difference", "derivative_matrix")


class Status(IntEnum):
    """Per-sample outcome of a simulation (reference code's criteria)."""

    CONVERGED = 0
    DIVERGED = 1
    MAX_STEPS = 2
    NONFINITE = 3


STATUS_NAMES = [s.name.lower() for s in Status]


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
    """Result of :func:`simulate`.

    Trajectories are recorded every ``record_every`` steps (and the last step):
    ``t`` [T_rec]; ``r_out``, ``u``, ``e`` [T_rec, B, n_L]; ``v`` per layer [T_rec, B, n_i]
    (empty unless requested). Final state: ``v_final``, ``r_final``, ``v_basal_final`` per layer,
    ``u_final``, ``u_int_final`` [B, n_L]. ``status`` [B] holds :class:`Status` codes.
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

    @property
    def e_norm(self) -> torch.Tensor:
        """``|e(t)|`` [T_rec, B]."""
        return torch.linalg.vector_norm(self.e, dim=-1)

    def status_names(self) -> list[str]:
        """Status of each sample as a lower-case name."""
        return [STATUS_NAMES[int(s)] for s in self.status]


FREEZE_FACTOR = 100.0
"""The continuous-time solver freezes a sample once its divergence ratio exceeds this multiple
of ``simulation.divergence_threshold`` and of its own initial value (it is then reported
``diverged``; one that overflows, ``nonfinite``), so that one diverging sample cannot force ever
smaller steps on the batch; its integrals are dropped (it contributes nothing, like an excluded
sample)."""


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


def _record_steps(n_steps: int, every: int) -> list[int]:
    steps = list(range(0, n_steps, every))
    if steps[-1] != n_steps - 1:
        steps.append(n_steps - 1)
    return steps


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
) -> Solution:
    """Simulate the closed loop for inputs ``x`` [B, n_0] pushed towards ``r_target`` [B, n_L].

    Args:
        system: the DFC system (weights, feedback, controller and simulation settings).
        sim: overrides ``system.cfg.simulation`` (solver, dt, steps, flags, recording).
        alpha: overrides the controller's leak ``alpha`` (the sleep phase uses its own).
        k_p: overrides the proportional gain ``k_p``.
        tau_ratio: overrides ``tau_v / tau_u``.
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
            pairing of the apical voltage with the next control); reference Euler path only.
        controller: a :class:`~neurodfc.components.controller.Controller` replacing the PI
            controller (e.g. a PID, see the tutorial "Adding a new controller"); needs a
            torchdiffeq solver (``euler_reference`` and ``etdrk4`` have the PI controller
            fused into their step). The recorded ``u`` is the controller's output.

    Returns:
        A :class:`Solution`; samples that diverge get a status, never an exception.
    """
    cfg = system.cfg
    sim = sim or cfg.simulation
    if noise is None:
        s = cfg.noise.sigma
        noise = (s, cfg.noise.sigma_output if cfg.noise.sigma_output is not None else s)
    if accumulate is not None and accumulate not in FORWARD_RULES:
        raise ValueError(f"accumulate must be one of {FORWARD_RULES}, got {accumulate!r}")
    ctrl = cfg.controller
    params = (
        ctrl.alpha if alpha is None else alpha,
        ctrl.k_p if k_p is None else k_p,
        ctrl.tau_ratio if tau_ratio is None else tau_ratio,
    )
    tau_a = cfg.apical.tau if apical_tau == "config" else apical_tau
    if controller is not None and sim.solver in ("euler_reference", "etdrk4"):
        raise ValueError(
            f"a custom controller needs a torchdiffeq solver (simulation.solver = 'dopri5', "
            f"'rk4', ...); {sim.solver!r} has the PI controller fused into its step"
        )
    with torch.no_grad():
        if sim.solver == "euler_reference":
            return _euler_reference(
                system,
                x,
                r_target,
                sim,
                params,
                record,
                record_v,
                accumulate,
                noise,
                generator,
                tau_a,
                accumulate_feedback,
            )
        if noise[0] > 0 or noise[1] > 0:
            raise ValueError(
                f"simulation.solver = {sim.solver!r} integrates the noiseless ODE; noise "
                "(noise.sigma > 0) needs solver = 'euler_reference'"
            )
        if accumulate_feedback:
            raise ValueError("accumulate_feedback needs simulation.solver = 'euler_reference'")
        if sim.solver == "etdrk4":
            return _continuous(
                system, x, r_target, sim, params, record, record_v, accumulate, tau_a
            )
        if tau_a != cfg.apical.tau:
            raise ValueError("apical_tau overrides need simulation.solver = 'euler_reference'")
        return _odeint(system, x, r_target, sim, params, record, record_v, accumulate, controller)


def _euler_reference(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    sim: SimulationConfig,
    params: tuple[float, float, float],
    record: bool,
    record_v: bool,
    accumulate: str | None,
    noise: tuple[float, float],
    generator: torch.Generator | None,
    apical_tau: float | None,
    accumulate_feedback: bool,
) -> Solution:
    """The official code's forward-Euler scheme on the fast path
    (:func:`neurodfc.fastpath.euler_reference_fast`). Step t -> t+1 (t = 0..T-2)::

        e = r* - r_L[t];  u_int[t+1] = u_int[t] + dt (e - alpha u[t]);  u[t+1] = u_int[t+1] + k_p e
        a_i[t+1] = a_i[t] + dt/tau_A (-a_i[t] + Q_i u[t+1 if proactive else t]) (+ noise)
        vb_i[t+1] = W_i r_{i-1}[t+1 if inst_transmission else t] + b_i
        v_i[t+1] = v_i[t] + dt/tau_ratio (a_i + vb_i - v_i[t])   (or a_i + vb_i if inst_system)
    """
    net = system.network
    leak = system.cfg.controller.leak
    alpha, k_p, tcr = params
    T = sim.n_steps
    rec_steps = _record_steps(T, sim.record_every) if record else [0, T - 1]
    r_ff_out = net(x)
    e0_norm = torch.linalg.vector_norm(r_target - r_ff_out, dim=1)

    def converged(r_out: torch.Tensor, u: torch.Tensor, u_int: torch.Tensor) -> torch.Tensor:
        status = classify(
            r_out, r_target, u, u_int, r_ff_out, e0_norm, alpha=alpha, leak=leak, sim=sim
        )
        return status == int(Status.CONVERGED)

    run = euler_reference_fast(
        net,
        x,
        r_target,
        dt=sim.dt,
        n_steps=T,
        alpha=alpha,
        k_p=k_p,
        tau_ratio=tcr,
        leak=leak,
        inst_transmission=sim.inst_transmission,
        proactive_controller=sim.proactive_controller,
        inst_system_dynamics=sim.inst_system_dynamics,
        record_steps=rec_steps,
        record_v=record_v,
        accumulate=accumulate,
        noise=noise,
        generator=generator,
        apical_tau=apical_tau,
        accumulate_feedback=accumulate_feedback,
        early_stop=sim.early_stop,
        converged=converged,
    )
    v_ff, r_ff = net.feedforward(x)
    status = classify(
        run.r[-1],
        r_target,
        run.u,
        run.u_int,
        r_ff[-1],
        e0_norm,
        alpha=alpha,
        leak=leak,
        sim=sim,
    )
    accumulator = None
    if accumulate is not None:
        accumulator = Accumulator(W=run.acc_W, b=run.acc_b, count=T)
    times = torch.tensor(rec_steps, dtype=x.dtype) * sim.dt
    return Solution(
        t=times,
        r_out=run.r_rec,
        u=run.u_rec,
        e=run.e_rec,
        v=run.v_rec,
        v_final=run.v,
        r_final=run.r,
        v_basal_final=run.vb,
        u_final=run.u,
        u_int_final=run.u_int,
        r_target=r_target,
        r_ff=r_ff,
        v_ff=v_ff,
        status=status,
        steps_run=run.steps_run,
        nfe=run.steps_run,
        accumulator=accumulator,
        feedback_accumulator=(
            Accumulator(W=run.acc_Q, b=[], count=T - 1) if accumulate_feedback else None
        ),
    )


def _continuous(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    sim: SimulationConfig,
    params: tuple[float, float, float],
    record: bool,
    record_v: bool,
    accumulate: str | None,
    apical_tau: float | None,
) -> Solution:
    """The adaptive exponential integrator (:func:`neurodfc.integrators.integrate`), with the
    DFC rule integrated alongside when ``accumulate`` is given."""
    if sim.inst_system_dynamics:
        raise ValueError("simulation.inst_system_dynamics needs solver = 'euler_reference'")
    net = system.network
    leak = system.cfg.controller.leak
    alpha, k_p, tcr = params
    T = sim.n_steps
    rec_steps = _record_steps(T, sim.record_every) if record else [0, T - 1]
    horizon = sim.horizon
    times = [k * horizon / (T - 1) for k in rec_steps]
    run = integrate(
        net,
        x,
        r_target,
        t_max=horizon,
        alpha=alpha,
        k_p=k_p,
        tau_ratio=tcr,
        leak=leak,
        apical_tau=apical_tau,
        rtol=sim.tolerances[0],
        atol=sim.tolerances[1],
        first_step=sim.dt,
        max_step=sim.max_step if sim.max_step is not None else math.inf,
        accumulate=accumulate,
        record_times=times,
        record_v=record_v,
        freeze_ratio=FREEZE_FACTOR * sim.divergence_threshold,
        freeze_growth=FREEZE_FACTOR,
    )
    assert run.r_rec is not None and run.u_rec is not None
    v_ff, r_ff = net.feedforward(x)
    status = classify(
        run.r[-1],
        r_target,
        run.u,
        run.u_int,
        r_ff[-1],
        torch.linalg.vector_norm(r_target - r_ff[-1], dim=1),
        alpha=alpha,
        leak=leak,
        sim=sim,
    )
    if run.dead is not None:  # frozen at their last finite state during the run
        status[run.dead] = int(Status.DIVERGED)
        if run.overflowed is not None:
            status[run.overflowed] = int(Status.NONFINITE)
    accumulator = None
    if accumulate is not None:
        accumulator = Accumulator(W=run.acc_W, b=run.acc_b, count=horizon)
    return Solution(
        t=torch.tensor(times, dtype=x.dtype),
        r_out=run.r_rec,
        u=run.u_rec,
        e=r_target.unsqueeze(0) - run.r_rec,
        v=run.v_rec,
        v_final=run.v,
        r_final=run.r,
        v_basal_final=run.vb,
        u_final=run.u,
        u_int_final=run.u_int,
        r_target=r_target,
        r_ff=r_ff,
        v_ff=v_ff,
        status=status,
        steps_run=run.steps,
        nfe=run.nfe,
        accumulator=accumulator,
        extras={
            "rejected_steps": torch.tensor(run.rejected),
            "acc_points": torch.tensor(run.acc_points),
        },
    )


class _Augmented(torch.nn.Module):
    """:class:`VectorField` plus the rule's accumulator ``d acc/dt`` (torchdiffeq path):
    extra state ``sum_t d_1`` [B, n_1], ``acc_W[i]`` (i >= 1) and ``acc_b[i]``."""

    def __init__(self, f: VectorField, rule: str, x: torch.Tensor) -> None:
        from neurodfc.methods.rules import teaching_signal  # methods import this module

        super().__init__()
        self.signal = teaching_signal
        self.f = f
        self.rule = rule
        self.x = x
        net = f.net
        self.v_ff = net.feedforward(x)[0]
        self.n_dyn = len(f.initial_state())

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        f, net = self.f, self.f.net
        dyn = f(t, state[: self.n_dyn])
        v = list(state[: net.depth])
        d_list = []
        for i in range(net.depth):
            if i == 0:
                vb = f.input_drive
            else:
                bias = net.b[i] if net.has_bias else None
                vb = torch.nn.functional.linear(net.act(i - 1, v[i - 1]), net.W[i], bias)
            d_list.append(self.signal(net, i, vb, v[i] - vb, self.rule, self.v_ff[i]))
        dW = [d_list[i].T @ net.act(i - 1, v[i - 1]) for i in range(1, net.depth)]
        db = [d.sum(0) for d in d_list]
        return (*dyn, d_list[0], *dW, *db)


def _odeint(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    sim: SimulationConfig,
    params: tuple[float, float, float],
    record: bool,
    record_v: bool,
    accumulate: str | None = None,
    controller: Controller | None = None,
) -> Solution:
    """Integrate :class:`~neurodfc.system.VectorField` with ``torchdiffeq.odeint``; with
    ``accumulate`` the rule's integral is part of the state (kept out of the error norm);
    ``controller`` replaces the PI controller."""
    from torchdiffeq import odeint

    alpha, k_p, tcr = params
    cfg = system.cfg
    ctrl = cfg.controller.model_copy(update={"alpha": alpha, "k_p": k_p, "tau_ratio": tcr})
    f = VectorField(system, x, r_target, controller=controller)
    f.ctrl = ctrl
    T = sim.n_steps
    rec_steps = _record_steps(T, sim.record_every) if record else [0, T - 1]
    horizon = sim.horizon
    times = torch.tensor(rec_steps, dtype=x.dtype, device=x.device) * (horizon / (T - 1))
    y0 = f.initial_state()
    n_dyn = len(y0)
    func: torch.nn.Module = f
    if accumulate is not None:
        net = system.network
        func = _Augmented(f, accumulate, x)
        zeros = [torch.zeros_like(y0[0])]
        zeros += [torch.zeros_like(w) for w in net.W[1:]]
        zeros += [torch.zeros_like(b) for b in net.b]
        y0 = (*y0, *[z.detach() for z in zeros])
    options: dict[str, object] = {}
    kwargs: dict[str, object] = {}
    if sim.solver in ("dopri5", "bosh3", "adaptive_heun"):
        kwargs = {"rtol": sim.tolerances[0], "atol": sim.tolerances[1]}
        options = {"first_step": sim.dt}
        if accumulate is not None:
            options["norm"] = lambda ys: torch.stack(
                [torch.sqrt(torch.mean(y**2)) for y in ys[:n_dyn]]
            ).max()
    else:
        options = {"step_size": sim.dt}
    traj = odeint(func, y0, times, method=sim.solver, options=options, **kwargs)
    accumulator = None
    if accumulate is not None:
        L = system.network.depth
        acc = traj[n_dyn:]
        acc_W = [acc[0][-1].T @ x, *[a[-1] for a in acc[1:L]]]
        accumulator = Accumulator(W=acc_W, b=[a[-1] for a in acc[L:]], count=horizon)
        traj = traj[:n_dyn]
    L = system.network.depth
    v_traj = list(traj[:L])
    u_int_traj = traj[-1]
    e_list, u_list = [], []
    for k in range(len(rec_steps)):
        e_k, u_k = f.control_of(tuple(s[k] for s in traj))
        e_list.append(e_k)
        u_list.append(u_k)
    e_rec = torch.stack(e_list)
    u_rec = torch.stack(u_list)
    r_rec = r_target.unsqueeze(0) - e_rec
    v_final = [t[-1] for t in v_traj]
    net = system.network
    r_final = [net.act(i, v_final[i]) for i in range(L)]
    v_ff, r_ff = net.feedforward(x)
    vb_final = [f.input_drive] + [
        torch.nn.functional.linear(r_final[i - 1], net.W[i], net.b[i] if net.has_bias else None)
        for i in range(1, L)
    ]
    status = classify(
        r_final[-1],
        r_target,
        u_rec[-1],
        u_int_traj[-1],
        r_ff[-1],
        torch.linalg.vector_norm(r_target - r_ff[-1], dim=1),
        alpha=alpha,
        leak=cfg.controller.leak,
        sim=sim,
    )
    return Solution(
        t=times.cpu(),
        r_out=r_rec,
        u=u_rec,
        e=e_rec,
        v=v_traj if record_v else [],
        v_final=v_final,
        r_final=r_final,
        v_basal_final=vb_final,
        u_final=u_rec[-1],
        u_int_final=u_int_traj[-1],
        r_target=r_target,
        r_ff=r_ff,
        v_ff=v_ff,
        status=status,
        steps_run=T - 1,
        nfe=f.nfe,
        accumulator=accumulator,
    )
