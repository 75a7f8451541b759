"""The linear-response solver (``simulation.solver = 'linear_response'``).

The closed loop linearised about the feedforward state is solved in closed form
(:mod:`neurodfc.solvers.lr_closed_forms`): per sample an affine LTI system of dimension
``(L + 1) n_L`` in the lagged controls, whose final state, time integral and Gramian give the
final voltages, the control and the forward rules' trajectory integrals without time stepping.
Exact for linear networks. For a nonlinear ``phi`` the loop is linearised with secant slopes
through the fixed point of the tangent linearisation (:func:`secant_slopes`): the fixed point
is then second order in the output error, the transient first order, and
:func:`neurodfc.solvers.lr_estimate.error_estimate` bounds the relative error per sample
(the first neglected term, in closed form, times a safety factor). Samples whose estimate exceeds
``simulation.linear_response_tol``, whose linearised loop is unstable or whose result is not
finite are simulated by ``simulation.fallback_solver``;
``Solution.extras`` says which (``lr_path``: 0 closed form, 1 fallback; ``lr_reason``: see
:data:`REASONS`; ``lr_estimate``; ``lr_estimate_final``: the final deviations' estimate;
``lr_transient``: the transient's relative amplitude at ``T``).
``simulation.order = 2`` adds the rule sums' first neglected term (second order in the output
error) to the sums; its estimate is then that of the corrected sums.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from neurodfc.components.controller import PIController
from neurodfc.components.neurons import NeuronLayer
from neurodfc.config import SimulationConfig
from neurodfc.core.linalg import eigvals
from neurodfc.core.loop import ClosedLoop
from neurodfc.core.solution import (
    Accumulator,
    RawRun,
    Solution,
    Status,
    build_solution,
    classify,
    record_steps,
)
from neurodfc.solvers.base import Problem
from neurodfc.solvers.lr_closed_forms import (
    Moments,
    augmented,
    basal_span,
    contracts,
    lag_deviations,
    moments,
    output_projection,
    power_moments,
    power_trajectory,
    reduced_system,
    reference_system,
    span_matrices,
    trajectory,
)
from neurodfc.solvers.lr_derivatives import increment, rule_slope, second_derivative
from neurodfc.solvers.lr_estimate import error_estimate, fixed_point_voltages
from neurodfc.solvers.lr_fallback import fallback, fallback_sim, merge_fallback

REASONS = ("closed_form", "estimate_above_tol", "unstable", "nonfinite", "output_too_wide")
"""``lr_reason`` codes: why a sample took its path."""

EXTRAS: dict[str, dict[str, str]] = {
    "lr_path": {"long_name": "linear response: path taken (0 closed form, 1 fallback solver)"},
    "lr_reason": {
        "long_name": "linear response: why the sample took its path",
        "values": " | ".join(f"{code} {name}" for code, name in enumerate(REASONS)),
    },
    "lr_estimate": {"long_name": "linear response: relative error estimate of the product"},
    "lr_estimate_final": {
        "long_name": "linear response: relative error estimate of the final deviations"
    },
    "lr_transient": {
        "long_name": "linear response: relative amplitude of the transient left at t_max"
    },
}
"""The per-sample ``Solution.extras`` this solver writes, with their netCDF attributes
(:func:`neurodfc.results.solution_to_xarray`)."""

MAX_REDUCED_DIM = 512
"""Largest reduced dimension ``(L + 1) n_L`` solved in closed form; wider outputs (the
autoencoder's 784) would need block exponentials larger than the network: the whole batch goes
to the fallback solver (reason ``output_too_wide``)."""


class LinearResponse:
    """The linear-response solver with per-sample fallback (see the module docstring)."""

    def solve(self, problem: Problem) -> Solution:
        """Solve ``problem`` in closed form; samples outside the series' range go to the
        fallback solver.

        Args:
            problem: the resolved simulation request (PI controller, equal time constants,
                instantaneous apical input, no noise).
        """
        p, sim = problem, problem.sim
        _check_supported(p)
        B = p.x.shape[0]
        if (p.net.depth + 1) * p.net.n_out > MAX_REDUCED_DIM:
            sol = fallback(p).solve(dataclasses.replace(p, sim=fallback_sim(p)))
            sol.extras.update(
                lr_path=torch.ones(B, dtype=torch.int8, device=p.x.device),
                lr_reason=torch.full((B,), 4, dtype=torch.int8, device=p.x.device),
                **{  # nothing computed for them
                    k: torch.full((B,), float("nan"), dtype=p.x.dtype, device=p.x.device)
                    for k in ("lr_estimate", "lr_estimate_final", "lr_transient")
                },
            )
            return sol
        loop = p.loop()
        first = _Linearised(loop, p.pi, p.tau_ratio, sim, spans=False)
        y0 = steady_state(first)
        fixed = fixed_point_voltages(first, y0)  # the secants pass through it
        lin = _Linearised(loop, p.pi, p.tau_ratio, sim, secant_slopes(loop, fixed))
        mom = lin.moments()
        estimate = error_estimate(
            lin, mom, fixed, y0, steady_state(lin), p.accumulate, order=sim.order
        )
        est = estimate.estimate
        reason = torch.zeros(p.x.shape[0], dtype=torch.int8, device=p.x.device)
        reason[~(est <= sim.linear_response_tol)] = 1
        reason[~(first.stable() & lin.stable())] = 2
        finite = torch.isfinite(mom.final).all(1) & torch.isfinite(mom.gram).flatten(1).all(1)
        reason[~finite] = 3
        sol = _closed_form_solution(p, loop, lin, mom, reason == 0, estimate.correction)
        fb = reason != 0
        if bool(fb.any()):
            sol = merge_fallback(p, sol, fb)
        sol.extras.update(
            lr_path=fb.to(torch.int8),
            lr_reason=reason,
            lr_estimate=est,
            lr_estimate_final=estimate.final_estimate,
            lr_transient=estimate.transient,
        )
        return sol


def _check_supported(p: Problem) -> None:
    """One-line errors for the assemblies the closed forms do not cover."""
    name = "simulation.solver = 'linear_response'"
    if not p.builtin:
        raise ValueError(f"{name} needs the built-in neurons and the PI controller")
    if p.apical_tau is not None:
        raise ValueError(f"{name} needs an instantaneous apical compartment (apical.tau unset)")
    if p.sim.inst_system_dynamics:
        raise ValueError(f"{name} does not implement simulation.inst_system_dynamics")
    if p.sim.discretisation == "reference_euler" and not p.sim.inst_transmission:
        raise ValueError(
            f"{name} with discretisation = 'reference_euler' needs "
            "simulation.inst_transmission = true"
        )


class _Linearised:
    """The linearised loop of one batch: spans ``P``, basal spans ``S`` (only with ``spans``;
    without, the deviations come from vector recursions), ``D``; continuous:
    the reduced system ``A`` [B, m, m] and its augmented form ``Aw`` (``dw/dt = A_w w``);
    ``reference_euler``: the augmented step matrix ``Aw`` (``w[t+1] = A_w w[t]``)."""

    def __init__(
        self,
        loop: ClosedLoop,
        pi: PIController,
        tau: float,
        sim: SimulationConfig,
        slopes: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
        spans: bool = True,
    ) -> None:
        self.loop, self.pi, self.tau, self.sim = loop, pi, tau, sim
        self.discrete = sim.discretisation == "reference_euler"
        self.nL = loop.sizes[-1]
        self.D = [lay.phi_prime(v) for lay, v in zip(loop.layers, loop.v_ff, strict=True)]
        self.D_tan = self.D_rule = self.D
        if slopes is not None:
            self.D, self.D_rule = slopes
        self.spans = spans
        if spans:
            self.P = span_matrices(loop.W, self.D, loop.Q)
            self.S = [basal_span(P, self.nL) for P in self.P]
            C = self.D[-1].unsqueeze(-1) * self.P[-1]
        else:  # the tangent loop: its fixed point and stability need only C
            C = output_projection(loop.W, self.D, loop.Q)
        self.e0 = loop.r_target - loop.r_ff[-1]
        self.C = C
        if self.discrete:
            self.Aw = reference_system(
                C, self.e0, beta=sim.dt / tau, dt=sim.dt, k_p=pi.k_p, alpha=pi.alpha,
                leak=pi.leak, proactive=sim.proactive_controller,
            )  # fmt: skip
        else:
            A, f = reduced_system(C, self.e0, tau=tau, k_p=pi.k_p, alpha=pi.alpha, leak=pi.leak)
            self.Aw = augmented(A, f)

    def moments(self) -> Moments:
        """Final state, integral (sum over the points) and Gramian over the horizon."""
        if self.discrete:
            return power_moments(self.Aw, self.sim.n_steps)
        return moments(self.Aw, self.sim.horizon)

    def states(self, steps: list[int]) -> torch.Tensor:
        """Reduced states [len(steps), B, m] at the (increasing) step indices ``steps``."""
        if self.discrete:
            return power_trajectory(self.Aw, steps)
        h = self.sim.horizon / (self.sim.n_steps - 1)
        return trajectory(self.Aw, [k * h for k in steps])

    @functools.cached_property
    def f2(self) -> list[torch.Tensor]:
        """``phi''(v^-)`` per layer [B, n_i], computed once per loop
        (:func:`~neurodfc.solvers.lr_derivatives.second_derivative`)."""
        return second_derivative(self)

    @functools.cached_property
    def P_dc(self) -> list[torch.Tensor]:
        """The spans' static gains per layer [B, n_i, n_L] (every lag's gain is 1: the sum of
        ``P_i``'s lag blocks), computed once per loop."""
        L, nL = self.loop.L, self.nL
        return [P.reshape(*P.shape[:2], L, nL).sum(2) for P in self.P]

    @functools.cached_property
    def spectrum(self) -> torch.Tensor:
        """The modes' eigenvalues [B, m] (complex), computed once per loop: continuous, those
        of ``A``; the scheme, the logarithms of the step matrix's (rates per step)."""
        return _spectrum(self.Aw[:, :-1, :-1], self.discrete)

    @property
    def slowest(self) -> torch.Tensor:
        """The slowest mode's eigenvalue [B] (complex): that of :attr:`spectrum` of largest
        real part."""
        return _slowest(self.spectrum)

    def stable(self) -> torch.Tensor:
        """Per sample [B]: the linearised loop is stable (continuous: ``max Re eig A < 0``;
        the scheme: spectral radius of the step matrix ``< 1``).

        From the slowest mode where it is known (the secant loop's estimate needs it);
        otherwise (the tangent loop) a contracting propagator over the horizon proves it
        (:func:`~neurodfc.solvers.lr_closed_forms.contracts`) and only the samples it does not
        prove take the eigenvalues. The proof is used where it is the cheaper way: for the
        scheme (9 squarings of the step matrix at 1000 steps: 15 ms against LAPACK's 92 ms for
        a Table-1 MNIST batch) and on accelerators, which have no batched general
        eigensolver; on the CPU a continuous loop's ``exp(A T)`` costs more than its
        eigenvalues (62 ms against 54 ms), which it then takes."""
        proof_is_cheaper = self.discrete or self.Aw.device.type != "cpu"
        if "spectrum" in self.__dict__ or not proof_is_cheaper:
            return self.slowest.real < 0.0
        A = self.Aw[:, :-1, :-1]
        ok = contracts(A, discrete=self.discrete, horizon=self.sim.horizon, n=self.sim.n_steps)
        rest = (~ok).nonzero().squeeze(-1)
        if rest.numel() > 0:
            ok[rest] = _slowest(_spectrum(A[rest], self.discrete)).real < 0.0
        return ok

    @property
    def points(self) -> float:
        """What the closed form's sums and integrals count: the scheme's points
        (``n_steps``), the continuous horizon."""
        return self.sim.n_steps if self.discrete else self.sim.horizon

    @property
    def duration(self) -> float:
        """The horizon in the loop's time unit (that of :attr:`spectrum`): the scheme's steps
        (``n_steps - 1``), the continuous horizon."""
        return self.sim.n_steps - 1 if self.discrete else self.sim.horizon

    @property
    def Kn(self) -> int:
        """``L n_L``: the lag entries of the reduced state."""
        return self.loop.L * self.nL

    def deviations(self, y: torch.Tensor) -> list[torch.Tensor]:
        """``z_i = P_i x`` per layer [..., B, n_i] for reduced states ``y`` [..., B, m]."""
        if not self.spans:
            lp = self.loop
            return lag_deviations(lp.W, self.D, lp.Q, y[..., : self.Kn])
        x = y[..., : self.Kn].unsqueeze(-1)
        return [(P @ x).squeeze(-1) for P in self.P]

    def control(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(e, u, u_int)`` of the linearised loop at reduced states ``y`` [..., B, m]."""
        x = y[..., : self.Kn].unsqueeze(-1)
        e = self.e0 - (self.C @ x).squeeze(-1)
        u_int = y[..., self.Kn : self.Kn + self.nL]
        if self.discrete:  # the scheme's u[t] is a state (it lags e by a step)
            return e, y[..., self.Kn + self.nL :], u_int
        return e, u_int + self.pi.k_p * e, u_int


def _spectrum(A: torch.Tensor, discrete: bool) -> torch.Tensor:
    """The modes' eigenvalues [B, m] of the matrices ``A`` [B, m, m] (see
    :attr:`_Linearised.spectrum`)."""
    ev = eigvals(A)
    return torch.log(ev) if discrete else ev


def _slowest(ev: torch.Tensor) -> torch.Tensor:
    """The eigenvalue of largest real part [B] of the spectra ``ev`` [B, m]."""
    return ev.gather(-1, ev.real.argmax(-1, keepdim=True)).squeeze(-1)


def _final_state(
    p: Problem, loop: ClosedLoop, lin: _Linearised, y_T: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """``(v, r, v_basal)`` per layer at the final reduced state ``y_T`` [B, m]."""
    z = lin.deviations(y_T)
    v = [vf + zi for vf, zi in zip(loop.v_ff, z, strict=True)]
    r = [lay.phi(vi) for lay, vi in zip(loop.layers, v, strict=True)]
    vb = [loop.basal(i, r[i - 1] if i > 0 else loop.x) for i in range(loop.L)]
    return v, r, vb


def _accumulate(
    p: Problem,
    lin: _Linearised,
    mom: Moments,
    keep: torch.Tensor,
    correction: list[torch.Tensor] | None = None,
) -> Accumulator:
    """The rule's trajectory integrals ``int sum_b d_i r_{i-1}^T dt`` of the kept samples:
    ``d_i = D_i^rule S_i x`` (``D_i^rule = phi'(v_i^-)`` for the nonlinear difference and the
    derivative matrix, 1 for the voltage difference) and ``r_{i-1} = r_{i-1}^- + D_{i-1} P_{i-1}
    x``, so ``int d_i r_{i-1}^T = D S (int x) r^-T + D S (int x x^T) P^T D``; ``correction``
    (``order = 2``): the second-order term of ``int d_i`` per layer [B, n_i], paired with
    ``r_{i-1}^-``."""
    loop, Kn, nL = lin.loop, lin.Kn, lin.nL
    every = bool(keep.all())  # the common case: no masking copies

    def kept(t: torch.Tensor) -> torch.Tensor:
        return t if every else torch.where(keep.view(-1, *([1] * (t.dim() - 1))), t, 0.0)

    X1 = kept(mom.integral[:, :Kn])
    W_acc, b_acc = [], []
    for i in range(loop.L):
        k = (i + 1) * nL  # layer i's spans have no blocks beyond lag i
        scale = rule_slope(lin, p.accumulate, i)
        S = lin.S[i][..., :k]
        d_int = (S @ X1[:, :k].unsqueeze(-1)).squeeze(-1)
        if scale is not None:
            d_int = d_int * scale
        if correction is not None:
            d_int = d_int + correction[i]
        d_int = kept(d_int)
        b_acc.append(d_int.sum(0))
        if i == 0:
            W_acc.append(d_int.T @ loop.x)
            continue
        j = i * nL  # the presynaptic span's blocks
        SG = S @ mom.gram[:, :k, :j]
        if scale is not None:
            SG = SG * scale.unsqueeze(-1)
        SG = kept(SG)
        PD = kept(lin.D[i - 1].unsqueeze(-1) * lin.P[i - 1][..., :j])
        n_i, n_p = SG.shape[1], PD.shape[1]
        quad = SG.transpose(0, 1).reshape(n_i, -1) @ PD.transpose(0, 1).reshape(n_p, -1).T
        W_acc.append(d_int.T @ loop.r_ff[i - 1] + quad)
    return Accumulator(W=W_acc, b=b_acc, count=lin.points)


def _closed_form_solution(
    p: Problem,
    loop: ClosedLoop,
    lin: _Linearised,
    mom: Moments,
    keep: torch.Tensor,
    correction: list[torch.Tensor] | None = None,
) -> Solution:
    """The :class:`Solution` of the closed forms (every sample; the accumulator sums only the
    ``keep`` samples), status by the reference criteria on the linearised output."""
    sim = p.sim
    n = sim.n_steps
    rec = record_steps(n, sim.record_every) if p.record else [0, n - 1]
    y_rec = torch.cat([lin.states(rec[:-1]), mom.final.unsqueeze(0)])
    dt = sim.horizon / (n - 1) if not lin.discrete else sim.dt
    times = [k * dt for k in rec]
    if p.record_v:
        v_rec = [vf + z for vf, z in zip(loop.v_ff, lin.deviations(y_rec), strict=True)]
    else:
        x = y_rec[..., : lin.Kn].unsqueeze(-1)
        v_rec = [loop.v_ff[-1] + (lin.P[-1] @ x).squeeze(-1)]
    r_out = loop.layers[-1].phi(v_rec[-1])
    _, u_rec, _ = lin.control(y_rec)
    v, r, vb = _final_state(p, loop, lin, mom.final)
    e_T, u_T, u_int_T = lin.control(mom.final)
    raw = RawRun(
        t=torch.tensor(times, dtype=p.x.dtype),
        r_out=r_out,
        u=u_rec,
        e=None,
        v=v_rec if p.record_v else [],
        apical=[u_rec @ q.T for q in loop.Q] if p.record_apical else [],
        v_final=v,
        r_final=r,
        vb_final=vb,
        u_final=u_T,
        u_int_final=u_int_T,
        steps_run=0,
        nfe=0,
        accumulator=(
            _accumulate(p, lin, mom, keep, correction) if p.accumulate is not None else None
        ),
    )
    pi = p.pi
    sol = build_solution(
        raw, p.r_target, loop.v_ff, loop.r_ff, alpha=pi.alpha, leak=pi.leak, sim=sim
    )
    # the criteria on the linearised output r_L^- + D_L z_L = r_L* - e (the floor of
    # phi(v^- + z) - (r_L^- + D_L z_L) is second order, not a transient)
    e0n = torch.linalg.vector_norm(lin.e0, dim=1)
    status = classify(
        p.r_target - e_T, p.r_target, u_T, u_int_T, loop.r_ff[-1], e0n,
        alpha=pi.alpha, leak=pi.leak, sim=sim,
    )  # fmt: skip
    status[~torch.isfinite(mom.final).all(1)] = int(Status.NONFINITE)
    sol.status = status
    return sol


def steady_state(lin: _Linearised) -> torch.Tensor:
    """The fixed point ``y_ss`` [B, m] of the linearised loop (continuous: ``A y + f = 0``;
    the scheme: ``y = A_w y``).

    Args:
        lin: the linearised loop.
    """
    A, f = lin.Aw[:, :-1, :-1], lin.Aw[:, :-1, -1]
    if lin.discrete:
        A = A - torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    y, info = torch.linalg.solve_ex(A, -f.unsqueeze(-1))
    return torch.where((info == 0)[:, None], y.squeeze(-1), torch.nan)


def secant_slopes(
    loop: ClosedLoop, fixed: tuple[list[torch.Tensor], list[torch.Tensor]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Secant slopes at the fixed point of a linearised loop:
    ``(phi(v^- + z) - phi(v^-)) / z`` per unit (propagation and presynaptic rates) and
    ``(phi(v) - phi(v_b)) / (v - v_b)`` (the nonlinear-difference signal); ``phi'`` where the
    deviation vanishes or the fixed point is not finite. With them the linear loop's fixed point
    solves the nonlinear fixed-point equations up to the move of the fixed point.

    Args:
        loop: the closed loop.
        fixed: voltages and basal voltages per layer [B, n_i] at the (tangent) linearised
            loop's fixed point (:func:`~neurodfc.solvers.lr_estimate.fixed_point_voltages`).
    """
    v, vb = fixed

    def secant(lay: NeuronLayer, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = b - a
        tiny = d.abs() < 1e-12 * (1.0 + a.abs())
        q = increment(lay, a)(d) / torch.where(tiny, 1.0, d)
        return torch.where(tiny, lay.phi_prime(a), q)

    prop = [secant(lay, vf, vi) for lay, vf, vi in zip(loop.layers, loop.v_ff, v, strict=True)]
    rule = [secant(lay, b, vi) for lay, b, vi in zip(loop.layers, vb, v, strict=True)]
    return prop, rule
