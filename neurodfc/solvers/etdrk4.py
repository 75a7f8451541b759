"""The adaptive exponential integrator (``simulation.solver = 'etdrk4'``) on the deviation form
of any assembly (:class:`neurodfc.core.split.SplitField`), with the forward rule's time integral
integrated alongside (:func:`neurodfc.integrators.integrate`)."""

from __future__ import annotations

import math

import torch

from neurodfc.core.solution import FREEZE_FACTOR, Accumulator, RawRun, Solution, build_solution
from neurodfc.core.solution import record_steps as rec_steps_of
from neurodfc.core.split import SplitField
from neurodfc.integrators import integrate
from neurodfc.solvers.base import Problem


class ETDRK4:
    """ETDRK4 with its step-size controller; diverging or overflowing samples are frozen and
    reported, a step limit ends the run with ``max_steps``."""

    def solve(self, problem: Problem) -> Solution:
        """Simulate ``problem`` (noiseless; the reference scheme's discretisation flags do not
        apply)."""
        p, sim = problem, problem.sim
        if p.error != "difference":
            raise ValueError(f"error = {p.error!r} needs a solver other than 'etdrk4'")
        if sim.inst_system_dynamics:
            raise ValueError("simulation.inst_system_dynamics needs solver = 'euler_reference'")
        loop = p.loop()
        T = sim.n_steps
        rec = rec_steps_of(T, sim.record_every) if p.record else [0, T - 1]
        horizon = sim.horizon
        times = [k * horizon / (T - 1) for k in rec]
        pi = p.pi
        run = integrate(
            p.net,
            p.x,
            p.r_target,
            t_max=horizon,
            alpha=pi.alpha,
            k_p=pi.k_p,
            tau_ratio=p.tau_ratio,
            leak=pi.leak,
            apical_tau=p.apical_tau,
            rtol=sim.tolerances[0],
            atol=sim.tolerances[1],
            first_step=sim.dt,
            max_step=sim.max_step if sim.max_step is not None else math.inf,
            accumulate=p.accumulate,
            record_times=times,
            record_v=p.record_v,
            freeze_ratio=FREEZE_FACTOR * sim.divergence_threshold,
            freeze_growth=FREEZE_FACTOR,
            split=SplitField(loop),
            record_apical=p.record_apical,
        )
        assert run.r_rec is not None and run.u_rec is not None
        acc = None
        if p.accumulate is not None:
            acc = Accumulator(W=run.acc_W, b=run.acc_b, count=horizon)
        raw = RawRun(
            t=torch.tensor(times, dtype=p.x.dtype),
            r_out=run.r_rec,
            u=run.u_rec,
            e=None,
            v=run.v_rec,
            apical=run.a_rec,
            v_final=run.v,
            r_final=run.r,
            vb_final=run.vb,
            u_final=run.u,
            u_int_final=run.u_int,
            steps_run=run.steps,
            nfe=run.nfe,
            accumulator=acc,
            dead=run.dead,
            overflowed=run.overflowed,
            limit_reached=run.limit_reached,
            extras={
                "rejected_steps": torch.tensor(run.rejected),
                "acc_points": torch.tensor(run.acc_points),
            },
        )
        return build_solution(
            raw, p.r_target, loop.v_ff, loop.r_ff, alpha=pi.alpha, leak=pi.leak, sim=sim
        )
