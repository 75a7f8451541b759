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

from neurodfc.components.controller import control_signal, integral_rate, leak_residual
from neurodfc.config import SimulationConfig
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
    """Sums over time steps and batch of a forward rule's teaching signal ``d_i``.

    ``W[i] = sum_t d_i[t]^T r_{i-1}[t]`` [n_i, n_{i-1}], ``b[i] = sum_t sum_b d_i[t]`` [n_i];
    ``count`` time points summed (the initial state included, as in the reference code).
    """

    W: list[torch.Tensor]
    b: list[torch.Tensor]
    count: int


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
    ``|e(T)| < epsilon^2 |e(0)|``; diverged if the ratio exceeds ``divergence_threshold``."""
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
) -> Solution:
    """Simulate the closed loop for inputs ``x`` [B, n_0] pushed towards ``r_target`` [B, n_L].

    Args:
        system: the DFC system (weights, feedback, controller and simulation settings).
        sim: overrides ``system.cfg.simulation`` (solver, dt, steps, flags, recording).
        alpha, k_p, tau_ratio: override the controller's values (the sleep phase uses its own).
        record_v: also record every layer's voltage ``v_i(t)``.
        record: record ``r_L, u, e`` every ``sim.record_every`` steps (else only the ends).
        accumulate: a forward rule (``nonlinear_difference``, ``voltage_difference``,
            ``derivative_matrix``) whose teaching signal is summed over the trajectory
            (reference Euler path only); see :class:`Accumulator`.
        noise: ``(sigma, sigma_output)`` apical noise; defaults to ``system.cfg.noise``.
        generator: random generator for the noise.
        apical_tau: overrides ``system.cfg.apical.tau`` (None = instantaneous apical input).
        accumulate_feedback: sum ``a_i[t]^T u[t+1]`` over the steps (the sleep-phase rule's
            pairing of the apical voltage with the next control); reference Euler path only.

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
        if accumulate is not None or accumulate_feedback:
            raise ValueError("accumulate needs simulation.solver = 'euler_reference'")
        if tau_a != cfg.apical.tau:
            raise ValueError("apical_tau overrides need simulation.solver = 'euler_reference'")
        return _odeint(system, x, r_target, sim, params, record, record_v)


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
    """The official code's forward-Euler scheme, fused: input projection once, running sums,
    in-place updates. Step t -> t+1 (t = 0..T-2)::

        e = r* - r_L[t];  u_int[t+1] = u_int[t] + dt (e - alpha u[t]);  u[t+1] = u_int[t+1] + k_p e
        a_i[t+1] = a_i[t] + dt/tau_A (-a_i[t] + Q_i u[t+1 if proactive else t]) (+ noise)
        vb_i[t+1] = W_i r_{i-1}[t+1 if inst_transmission else t] + b_i
        v_i[t+1] = v_i[t] + dt/tau_ratio (a_i + vb_i - v_i[t])   (or a_i + vb_i if inst_system)
    """
    net = system.network
    cfg = system.cfg
    alpha, k_p, tcr = params
    leak = cfg.controller.leak
    dt = sim.dt
    T = sim.n_steps
    L = net.depth
    tau_a = apical_tau if apical_tau is not None else dt
    inst_tx = sim.inst_transmission or sim.inst_system_dynamics
    sigma, sigma_out = noise
    noisy = sigma > 0 or sigma_out > 0
    W = [w.detach() for w in net.W]
    Q = [q.detach() for q in net.Q]
    bias = [b.detach() for b in net.b] if net.has_bias else [None] * L

    v_ff, r_ff = net.feedforward(x)
    drive0 = v_ff[0]  # W_1 r_0 + b_1, constant over the simulation
    v = [t.clone() for t in v_ff]
    r = [t.clone() for t in r_ff]
    vb = [t.clone() for t in v_ff]
    va = [torch.zeros_like(t) for t in v_ff]
    u = torch.zeros_like(r_target)
    u_int = torch.zeros_like(r_target)
    e0 = r_target - r[-1]

    rec_steps = _record_steps(T, sim.record_every) if record else [0, T - 1]
    rec_set = {s: k for k, s in enumerate(rec_steps)}
    n_rec = len(rec_steps)
    r_rec = torch.empty((n_rec, *r_target.shape), dtype=x.dtype, device=x.device)
    u_rec = torch.empty_like(r_rec)
    e_rec = torch.empty_like(r_rec)
    v_rec = (
        [torch.empty((n_rec, *t.shape), dtype=x.dtype, device=x.device) for t in v]
        if record_v
        else []
    )

    def store(k: int) -> None:
        r_rec[k] = r[-1]
        u_rec[k] = u
        e_rec[k] = r_target - r[-1]
        for i in range(len(v_rec)):
            v_rec[i][k] = v[i]

    store(0)
    acc_W: list[torch.Tensor] = []
    acc_b: list[torch.Tensor] = []
    acc_d1 = torch.zeros_like(v[0])
    dprime_ff: list[torch.Tensor] = []
    if accumulate is not None:
        acc_W = [torch.zeros_like(w) for w in W]
        acc_b = [torch.zeros(w.shape[0], dtype=x.dtype, device=x.device) for w in W]
        if accumulate == "derivative_matrix":
            dprime_ff = [net.act_prime(i, v_ff[i]) for i in range(L)]
    noise_scale = math.sqrt(dt) / tau_a
    layer_order = range(L) if inst_tx else range(L - 1, -1, -1)

    acc_Q = [torch.zeros_like(q) for q in Q] if accumulate_feedback else []
    for t in range(T - 1):
        e = r_target - r[-1]
        u_int_new = u_int + dt * integral_rate(e, u, u_int, alpha, leak)
        u_new = control_signal(u_int_new, e, k_p)
        for i in range(len(acc_Q)):
            acc_Q[i] += va[i].T @ u_new
        u_ap = u_new if sim.proactive_controller else u
        for i in layer_order:
            if i == 0:
                vb[0] = drive0
            else:
                vb[i] = torch.nn.functional.linear(r[i - 1], W[i], bias[i])
            fb = u_ap @ Q[i].T
            if tau_a == dt:
                va[i] = fb
            else:
                va[i] = va[i] + (dt / tau_a) * (fb - va[i])
            if noisy:
                s = sigma_out if i == L - 1 else sigma
                if s > 0:
                    xi = torch.randn(va[i].shape, generator=generator, dtype=x.dtype, device="cpu")
                    va[i] = va[i] + (s * noise_scale) * xi.to(x.device)
            if sim.inst_system_dynamics:
                v[i] = va[i] + vb[i]
            else:
                v[i] = v[i] + (dt / tcr) * (va[i] + vb[i] - v[i])
            r[i] = net.act(i, v[i])
        u, u_int = u_new, u_int_new
        if accumulate is not None:
            for i in range(L):
                if accumulate == "nonlinear_difference":
                    d = r[i] - net.act(i, vb[i])
                elif accumulate == "voltage_difference":
                    d = v[i] - vb[i]
                else:
                    d = dprime_ff[i] * (v[i] - vb[i])
                acc_b[i] += d.sum(0)
                if i == 0:
                    acc_d1 += d
                else:
                    acc_W[i] += d.T @ r[i - 1]
        k = rec_set.get(t + 1)
        if k is not None:
            store(k)

    accumulator = None
    if accumulate is not None:
        acc_W[0] = acc_d1.T @ x
        accumulator = Accumulator(W=acc_W, b=acc_b, count=T)
    status = classify(
        r[-1],
        r_target,
        u,
        u_int,
        r_ff[-1],
        torch.linalg.vector_norm(e0, dim=1),
        alpha=alpha,
        leak=leak,
        sim=sim,
    )
    times = torch.tensor(rec_steps, dtype=x.dtype) * dt
    return Solution(
        t=times,
        r_out=r_rec,
        u=u_rec,
        e=e_rec,
        v=v_rec,
        v_final=v,
        r_final=r,
        v_basal_final=vb,
        u_final=u,
        u_int_final=u_int,
        r_target=r_target,
        r_ff=r_ff,
        v_ff=v_ff,
        status=status,
        steps_run=T - 1,
        nfe=T - 1,
        accumulator=accumulator,
        feedback_accumulator=Accumulator(W=acc_Q, b=[], count=T - 1) if acc_Q else None,
    )


def _odeint(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    sim: SimulationConfig,
    params: tuple[float, float, float],
    record: bool,
    record_v: bool,
) -> Solution:
    """Integrate :class:`~neurodfc.system.VectorField` with ``torchdiffeq.odeint``."""
    from torchdiffeq import odeint

    alpha, k_p, tcr = params
    cfg = system.cfg
    ctrl = cfg.controller.model_copy(update={"alpha": alpha, "k_p": k_p, "tau_ratio": tcr})
    f = VectorField(system, x, r_target)
    f.ctrl = ctrl
    T = sim.n_steps
    rec_steps = _record_steps(T, sim.record_every) if record else [0, T - 1]
    horizon = sim.horizon
    times = torch.tensor(rec_steps, dtype=x.dtype, device=x.device) * (horizon / (T - 1))
    y0 = f.initial_state()
    options: dict[str, object] = {}
    kwargs: dict[str, object] = {}
    if sim.solver in ("dopri5", "bosh3", "adaptive_heun"):
        kwargs = {"rtol": sim.rtol, "atol": sim.atol}
        options = {"first_step": sim.dt}
    else:
        options = {"step_size": sim.dt}
    traj = odeint(f, y0, times, method=sim.solver, options=options, **kwargs)
    L = system.network.depth
    v_traj = list(traj[:L])
    u_int_traj = traj[-1]
    e_list, u_list = [], []
    for k in range(len(rec_steps)):
        e_k, u_k = f.control(v_traj[-1][k], u_int_traj[k])
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
    )
