"""The reference Euler scheme of the official code (``simulation.solver = 'euler_reference'``).

Built-in assembly (the network's neurons, a PI controller): the fused in-place specialisation
:func:`neurodfc.fastpath.run_fused`. Any other assembly: the generic loop over
:meth:`neurodfc.core.loop.ClosedLoop.euler_step` (the definition the fused path is tested
against step for step, ``tests/unit/test_core.py``).
"""

from __future__ import annotations

import torch

from neurodfc.core.loop import ClosedLoop, EulerScheme, LoopState
from neurodfc.core.noise import ApicalNoise, NoiseSource
from neurodfc.core.solution import (
    Accumulator,
    RawRun,
    Solution,
    Status,
    build_solution,
    classify,
    record_steps,
)
from neurodfc.core.teaching import teaching_signal_into
from neurodfc.fastpath import EulerRun, FusedSettings, run_fused
from neurodfc.solvers.base import Problem


class EulerReference:
    """The reference scheme: fused for the built-in assembly, generic otherwise."""

    def solve(self, problem: Problem) -> Solution:
        """Simulate ``problem`` (see the module docstring)."""
        p = problem
        return finish(p, _fused(p) if p.builtin else _generic(p, p.loop()))


def fused_settings(p: Problem, rec: list[int]) -> FusedSettings:
    """The fused run's settings for the problem ``p``, recording the time points ``rec``.

    Args:
        p: the problem.
        rec: the recorded time points.
    """
    sim, pi = p.sim, p.pi
    return FusedSettings(
        dt=sim.dt,
        n_steps=sim.n_steps,
        alpha=pi.alpha,
        k_p=pi.k_p,
        tau_ratio=p.tau_ratio,
        leak=pi.leak,
        inst_transmission=sim.inst_transmission,
        proactive_controller=sim.proactive_controller,
        inst_system_dynamics=sim.inst_system_dynamics,
        record_steps=tuple(rec),
        record_v=p.record_v,
        accumulate=p.accumulate,
        noise=p.noise,
        apical_tau=p.apical_tau,
        accumulate_feedback=p.accumulate_feedback,
        early_stop=sim.early_stop,
        record_apical=p.record_apical,
        error=p.error,
        tau_noise=p.noise_tau,
        cuda_graphs=sim.cuda_graphs,
    )


def _fused(p: Problem) -> RawRun:
    """:func:`neurodfc.fastpath.run_fused` on the problem (PI controller, built-in neurons)."""
    sim, pi = p.sim, p.pi
    rec = recorded_steps(p)
    r_ff_out = p.net(p.x)
    e0_norm = torch.linalg.vector_norm(p.r_target - r_ff_out, dim=1)

    def converged(r_out: torch.Tensor, u: torch.Tensor, u_int: torch.Tensor) -> torch.Tensor:
        status = classify(
            r_out, p.r_target, u, u_int, r_ff_out, e0_norm, alpha=pi.alpha, leak=pi.leak, sim=sim
        )
        return status == int(Status.CONVERGED)

    cfg = fused_settings(p, rec)
    run = run_fused(
        p.net,
        p.x,
        p.r_target,
        cfg,
        generator=p.generator,
        converged=converged,
        noise_source=p.noise_source,
    )
    return raw_run(p, run, rec)


def recorded_steps(p: Problem) -> list[int]:
    """The time points the problem ``p`` records (every ``record_every``-th, or the two ends).

    Args:
        p: the problem.
    """
    T = p.sim.n_steps
    return record_steps(T, p.sim.record_every) if p.record else [0, T - 1]


def raw_run(p: Problem, run: EulerRun, rec: list[int]) -> RawRun:
    """The :class:`RawRun` of a fused run of the problem ``p`` that recorded ``rec``.

    Args:
        p: the problem.
        run: its fused run (one member's part of an ensemble's run).
        rec: the recorded time points.
    """
    T = p.sim.n_steps
    acc = Accumulator(W=run.acc_W, b=run.acc_b, count=T) if p.accumulate is not None else None
    fb = Accumulator(W=run.acc_Q, b=[], count=T - 1) if p.accumulate_feedback else None
    return RawRun(
        t=torch.tensor(rec, dtype=p.x.dtype) * p.sim.dt,
        r_out=run.r_rec,
        u=run.u_rec,
        e=run.e_rec,
        v=run.v_rec,
        apical=run.a_rec,
        v_final=run.v,
        r_final=run.r,
        vb_final=run.vb,
        u_final=run.u,
        u_int_final=run.u_int,
        steps_run=run.steps_run,
        nfe=run.steps_run,
        accumulator=acc,
        feedback_accumulator=fb,
    )


def finish(p: Problem, run: RawRun) -> Solution:
    """The :class:`Solution` of the problem ``p``'s raw run (the per-sample status included).

    Args:
        p: the problem.
        run: its raw run.
    """
    loop = p.loop()
    pi = p.pi
    return build_solution(
        run, p.r_target, loop.v_ff, loop.r_ff, alpha=pi.alpha, leak=pi.leak, sim=p.sim
    )


class _Sums:
    """Running sums of the teaching signal (``W``, ``b``) and of the sleep-phase pairing."""

    def __init__(self, loop: ClosedLoop, rule: str | None, feedback: bool) -> None:
        self.loop, self.rule = loop, rule
        self.W = [torch.zeros_like(w) for w in loop.W]
        self.b = [torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) for w in loop.W]
        nL = loop.sizes[-1]
        self.Q = [
            torch.zeros((n, nL), dtype=loop.x.dtype, device=loop.x.device) for n in loop.sizes
        ]
        self.feedback = feedback
        self.dphi = (
            [lay.phi_prime(v) for lay, v in zip(loop.layers, loop.v_ff, strict=True)]
            if rule == "derivative_matrix"
            else [None] * loop.L
        )

    def add(self, old: LoopState, new: LoopState) -> None:
        """Add step ``old -> new``: ``d_i[t+1] r_{i-1}[t+1]^T`` and ``a_i[t]^T u[t+1]``."""
        if self.feedback:
            for i, a in enumerate(old.a):
                self.Q[i] += a.T @ new.u
        if self.rule is None:
            return
        prev = [self.loop.x, *new.r[:-1]]
        for i, lay in enumerate(self.loop.layers):
            d = torch.empty_like(new.v[i])
            teaching_signal_into(lay, self.rule, new.v[i], new.vb[i], new.r[i], d, self.dphi[i])
            self.W[i] += d.T @ prev[i]
            self.b[i] += d.sum(0)


def _generic(p: Problem, loop: ClosedLoop) -> RawRun:
    """The reference scheme on any assembly (plain operations, one step at a time)."""
    sim = p.sim
    if sim.early_stop:
        raise ValueError("simulation.early_stop needs the built-in neurons and PI controller")
    T = sim.n_steps
    scheme = EulerScheme(
        sim.dt, sim.inst_transmission, sim.proactive_controller, sim.inst_system_dynamics
    )
    noise = ApicalNoise(*p.noise, p.noise_tau)
    src: NoiseSource | None = p.noise_normals() if noise.active else None
    rec = record_steps(T, sim.record_every) if p.record else [0, T - 1]
    states: list[LoopState] = []
    sums = _Sums(loop, p.accumulate, p.accumulate_feedback)
    st = loop.euler_state()
    states.append(st)
    keep = set(rec)
    for t in range(T - 1):
        new = loop.euler_step(st, scheme, noise, src.next() if src is not None else None)
        sums.add(st, new)
        st = new
        if t + 1 in keep:
            states.append(st)
    return RawRun(
        t=torch.tensor(rec, dtype=p.x.dtype) * sim.dt,
        r_out=torch.stack([s.r[-1] for s in states]),
        u=torch.stack([s.u for s in states]),
        e=None,
        v=[torch.stack([s.v[i] for s in states]) for i in range(loop.L)] if p.record_v else [],
        apical=(
            [torch.stack([s.a[i] for s in states]) for i in range(loop.L)]
            if p.record_apical
            else []
        ),
        v_final=st.v,
        r_final=st.r,
        vb_final=st.vb,
        u_final=st.u,
        u_int_final=st.c[-1],
        steps_run=T - 1,
        nfe=T - 1,
        accumulator=Accumulator(W=sums.W, b=sums.b, count=T) if p.accumulate else None,
        feedback_accumulator=(
            Accumulator(W=sums.Q, b=[], count=T - 1) if p.accumulate_feedback else None
        ),
    )
