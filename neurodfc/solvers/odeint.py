"""torchdiffeq's solvers (``dopri5``, ``bosh3``, ``adaptive_heun``, ``euler``, ``midpoint``,
``rk4``) on :meth:`neurodfc.core.loop.ClosedLoop.vector_field` of any assembly.

Divergence is a per-sample status here too: a sample whose state becomes non-finite or whose
divergence ratio passes the freeze limit (:data:`~neurodfc.core.solution.FREEZE_FACTOR`) is
frozen (zero rates) and left out of the error norm, so it cannot stall or abort the batch; a
step limit (:data:`MAX_STEPS`) or a step-size underflow ends the run with ``max_steps``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neurodfc.core.freeze import Freezer, freeze_limit
from neurodfc.core.loop import ClosedLoop
from neurodfc.core.solution import FREEZE_FACTOR, Accumulator, RawRun, Solution, build_solution
from neurodfc.core.solution import record_steps as rec_steps_of
from neurodfc.core.teaching import teaching_signal
from neurodfc.solvers.base import Problem

ADAPTIVE = ("dopri5", "bosh3", "adaptive_heun")
FIXED = ("euler", "midpoint", "rk4")
MAX_STEPS = 100_000
"""Steps an adaptive torchdiffeq solver may take before the run ends with ``max_steps``."""

State = tuple[torch.Tensor, ...]


class _Field(torch.nn.Module):
    """The loop's vector field with the rule's integral (``accumulate``) and the per-sample
    guard; ``last`` keeps the latest evaluated state."""

    def __init__(self, loop: ClosedLoop, rule: str | None, freeze_at: torch.Tensor, p: Problem):
        super().__init__()
        self.loop, self.rule = loop, rule
        self.n_dyn = len(loop.initial_state())
        self.freeze = Freezer(freeze_at)
        self.alpha, self.paper = p.pi.alpha, p.pi.leak == "paper"
        self.nfe = 0
        self.last: State = ()

    def forward(self, t: torch.Tensor, state: State) -> State:
        """``d state/dt`` (frozen samples: 0)."""
        self.nfe += 1
        loop = self.loop
        dyn = state[: self.n_dyn]
        self.last = dyn
        self._guard(dyn)
        out = list(loop.vector_field(dyn))
        self.freeze.mark(~torch.stack([torch.isfinite(o).all(1) for o in out]).all(0), True)
        if self.rule is not None:
            out += self._integrand(dyn)
        if self.freeze.any_dead:
            for k in range(self.n_dyn):
                out[k] = torch.where(self.freeze.dead[:, None], 0.0, out[k])
        return tuple(out)

    def _guard(self, dyn: State) -> None:
        """Freeze the samples whose state is non-finite or past the divergence limit (and,
        in :meth:`forward`, those whose rates are non-finite: the state stays finite)."""
        finite = torch.stack([torch.isfinite(s).all(1) for s in dyn]).all(0)
        e, u = self.loop.control_of(dyn)
        self.freeze.mark(~finite, True)
        self.freeze.divergence(e, dyn[-1] if self.paper else u, self.alpha)

    def _integrand(self, dyn: State) -> list[torch.Tensor]:
        """``d_1``, ``d_i^T r_{i-1}`` (i >= 1) and ``sum_b d_i`` at a state."""
        loop = self.loop
        v = dyn[: loop.L]
        d = []
        r_prev = [loop.x] + [loop.layers[i].phi(v[i]) for i in range(loop.L - 1)]
        for i, lay in enumerate(loop.layers):
            vb = loop.basal(i, r_prev[i])
            d_i = teaching_signal(lay, vb, v[i] - vb, self.rule or "", loop.v_ff[i])
            if self.freeze.any_dead:
                d_i = torch.where(self.freeze.dead[:, None], 0.0, d_i)
            d.append(d_i)
        dW = [d[i].T @ r_prev[i] for i in range(1, loop.L)]
        return [d[0], *dW, *[di.sum(0) for di in d]]

    def norm(self, default: Callable[[State], torch.Tensor]) -> Callable[[State], torch.Tensor]:
        """The error norm: ``default`` while no sample is frozen, else the same without the
        frozen samples' rows."""

        def masked(ys: State) -> torch.Tensor:
            if not self.freeze.any_dead:
                return default(ys)
            keep = ~self.freeze.dead
            parts = [
                torch.sqrt(torch.mean(y[keep] ** 2)) if bool(keep.any()) else y.new_zeros(())
                for y in ys[: self.n_dyn]
            ]
            return torch.stack(parts).max()

        return masked


def _rms_max(ys: State, n: int) -> torch.Tensor:
    return torch.stack([torch.sqrt(torch.mean(y**2)) for y in ys[:n]]).max()


def _mixed(ys: State) -> torch.Tensor:
    return max(y.abs().pow(2).mean().sqrt() for y in ys)  # torchdiffeq's default


class ODEInt:
    """One torchdiffeq method.

    Args:
        method: the torchdiffeq method name.
    """

    def __init__(self, method: str) -> None:
        self.method = method

    def solve(self, problem: Problem) -> Solution:
        """Simulate ``problem`` (noiseless)."""
        from torchdiffeq import odeint

        p, sim = problem, problem.sim
        loop = p.loop()
        T = sim.n_steps
        rec = rec_steps_of(T, sim.record_every) if p.record else [0, T - 1]
        times = torch.tensor(rec, dtype=p.x.dtype, device=p.x.device) * (sim.horizon / (T - 1))
        limit = FREEZE_FACTOR * sim.divergence_threshold
        delta = p.r_target - loop.r_ff[-1]
        f = _Field(loop, p.accumulate, freeze_limit(loop.r_ff[-1], delta, limit, FREEZE_FACTOR), p)
        y0 = loop.initial_state()
        n_dyn = len(y0)
        if p.accumulate is not None:
            zeros = [torch.zeros_like(y0[0])] + [torch.zeros_like(w) for w in loop.W[1:]]
            zeros += [torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) for w in loop.W]
            y0 = (*y0, *zeros)
        kwargs: dict[str, object] = {}
        if self.method in ADAPTIVE:
            rtol, atol = sim.tolerances
            default = (lambda ys: _rms_max(ys, n_dyn)) if p.accumulate is not None else _mixed
            options: dict[str, object] = {
                "first_step": sim.dt,
                "norm": f.norm(default),
                "max_num_steps": MAX_STEPS,
            }
            kwargs = {"rtol": rtol, "atol": atol}
        else:
            options = {"step_size": sim.dt}
        limit_reached = False
        try:
            traj = odeint(f, y0, times, method=self.method, options=options, **kwargs)
        except AssertionError as err:  # torchdiffeq: max_num_steps exceeded / underflow in dt
            if "max_num_steps" not in str(err) and "underflow" not in str(err):
                raise
            limit_reached = True
            traj = tuple(s.unsqueeze(0).expand(len(rec), *s.shape) for s in f.last)
            traj = (*traj, *[z.unsqueeze(0).expand(len(rec), *z.shape) for z in y0[n_dyn:]])
        return self._finish(p, loop, f, traj, times, n_dyn, limit_reached)

    def _finish(
        self,
        p: Problem,
        loop: ClosedLoop,
        f: _Field,
        traj: State,
        times: torch.Tensor,
        n_dyn: int,
        limit_reached: bool,
    ) -> Solution:
        """The :class:`Solution` of a trajectory at ``times``."""
        L = loop.L
        acc = None
        if p.accumulate is not None:
            a = traj[n_dyn:]
            acc_W = [a[0][-1].T @ loop.x, *[s[-1] for s in a[1:L]]]
            acc = Accumulator(W=acc_W, b=[s[-1] for s in a[L:]], count=p.sim.horizon)
        dyn = traj[:n_dyn]
        eu = [loop.control_of(tuple(s[k] for s in dyn)) for k in range(len(times))]
        e_rec = torch.stack([e for e, _ in eu])
        u_rec = torch.stack([u for _, u in eu])
        v_final = [s[-1] for s in dyn[:L]]
        r_final = [lay.phi(v) for lay, v in zip(loop.layers, v_final, strict=True)]
        vb_final = [loop.basal(i, r_final[i - 1] if i > 0 else loop.x) for i in range(L)]
        apical: list[torch.Tensor] = []
        if p.record_apical:
            if loop.apical_tau is not None:
                apical = list(dyn[L : 2 * L])
            else:
                apical = [u_rec @ q.T for q in loop.Q]
        raw = RawRun(
            t=times.cpu(),
            r_out=p.r_target.unsqueeze(0) - e_rec,
            u=u_rec,
            e=e_rec,
            v=list(dyn[:L]) if p.record_v else [],
            apical=apical,
            v_final=v_final,
            r_final=r_final,
            vb_final=vb_final,
            u_final=u_rec[-1],
            u_int_final=dyn[-1][-1],
            steps_run=p.sim.n_steps - 1,
            nfe=f.nfe,
            accumulator=acc,
            dead=f.freeze.dead_or_none(),
            overflowed=f.freeze.overflowed_or_none(),
            limit_reached=limit_reached,
        )
        pi = p.pi
        return build_solution(
            raw, p.r_target, loop.v_ff, loop.r_ff, alpha=pi.alpha, leak=pi.leak, sim=p.sim
        )
