"""The linear-response solver's per-sample a-posteriori error estimate.

The secant-linearised loop neglects, per unit, the remainder of the rates
``R = phi(v^- + z) - phi(v^-) - D_sec z ~ phi''(v^-) z (z - z0) / 2`` (``z0`` the tangent fixed
point through which the secant is drawn) and, for the nonlinear-difference signal,
``phi'' s ((z - z0) - (s - s0) / 2)``. Both are quadratic in the reduced state, so their time
integrals follow exactly from the Gramian already computed; the estimate is that first
neglected term carried through the loop in closed form (``docs/linear_response.md`` section 3):

* the update: ``tau dz_i/dt = -s_i + Q_i u`` gives ``int s_i = Q_i int u - tau z_i(T)`` along
  any trajectory, so the rule's sums are wrong through ``int u`` (and the rule's own
  remainder); the integral controller removes the integrated output error up to the leak,
  ``(J Q + alpha) delta int u = -g``, with ``g`` the integrated remainders carried forward to
  the output;
* the final state: the static response of the loop to the remainder at ``T``, plus a term for
  the transient still present at ``T`` (:func:`_final_term`).

The estimate is :data:`SAFETY` times the larger of the two, for every sample (with no rule, the
update term is that of ``int s_i``: the final-state term alone missed the error of lightly
damped loops on short horizons by up to 12x, the integrated term covered it). The terms for the
transient left at ``T`` carry the estimate on loops that have not settled, up to a transient
of :data:`SETTLED` of the fixed point's deviation; a loop further from its fixed point keeps
the earlier Cauchy-Schwarz bound as a floor.

``order = 2`` (with a rule): the update term above is the rule sums' first neglected term as a
signed vector; it is added to the sums (with the remainders beyond the quadratic one integrated
by quadrature along the linear trajectory, :mod:`neurodfc.solvers.lr_quadrature`), and
``lr_estimate`` becomes that of the corrected sums: the final-state errors the correction takes
as exact and its own error (:func:`_second_order_term`), the quadrature's error, and a bound of
the sums' presynaptic part. The final state is not corrected; its estimate, the order-1 one, is
returned as ``final_estimate`` (``lr_estimate_final``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from neurodfc.solvers.lr_closed_forms import Moments
from neurodfc.solvers.lr_derivatives import rule_slope
from neurodfc.solvers.lr_quadrature import higher_remainders

if TYPE_CHECKING:
    from neurodfc.solvers.linear_response import _Linearised

SAFETY = 2.0
"""Factor on the first neglected term. Measured on 373 settled samples of random 3-layer tanh /
sigmoid networks (horizons 3 to 20, ``k_p`` 0 to 2, both discretisations) and on the MNIST
configs: update error / term 0.75 to 1.49, final-deviation error / term at most 1.25; so the
estimate stayed at least 1.34x above every measured error. The wider survey of session 9
(``benchmarks/lr_estimate_survey.py``: 389 settled samples of deeper and narrower networks)
found 0.81x (order 1, ``lam`` 0.036, a 6-7-6-1 tanh network with the voltage difference)."""


OWN = 4.0
"""Factor on ``eta`` x the correction's size (``order = 2``; see :func:`_second_order_term`): the
correction's own error, its remainders taken along the linear trajectory and carried by the
secant loop, whose slopes are off the local ones by ``eta`` relative. Measured where that term
dominates: the corrected sums' error is 1.6-1.9x ``eta`` x that size."""


SETTLED = 0.25
"""Largest relative transient amplitude ``amp / |x_ss|`` at ``T`` (see :func:`_final_term`,
reported as ``lr_transient``) for which the first neglected term alone is used; a sample whose
loop is further from its fixed point keeps the conservative Cauchy-Schwarz bound
(:func:`_cauchy_schwarz_bound`) as a floor. Measured (``benchmarks/lr_estimate_survey.py``,
1381 random samples): up to 0.25 every error stayed below 0.94x its estimate without the
floor; beyond it two of 634 samples exceeded theirs (1.005x at 0.41, 1.7x at 0.93). Until
session 9 the threshold was 0.01, which sent Fig. 3 and F-MNIST (transients 5-15 %) to the
floor, 30-3200x above their errors (per-sample medians). The one settled sample above 0.94x
was the reference scheme's rounding floor, not the estimate's (its error falls as ``1 / lam``)."""


def fixed_point_voltages(
    lin: _Linearised, y: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(v, v_basal)`` per layer [B, n_i] at the reduced state ``y`` [B, m] of ``lin``
    (non-finite entries of ``y`` read as 0).

    Args:
        lin: a linearised loop.
        y: a reduced state.
    """
    loop = lin.loop
    y = torch.where(torch.isfinite(y), y, 0.0)
    v = [vf + zi for vf, zi in zip(loop.v_ff, lin.deviations(y), strict=True)]
    r = [lay.phi(vi) for lay, vi in zip(loop.layers, v, strict=True)]
    vb = [loop.basal(i, r[i - 1] if i > 0 else loop.x) for i in range(loop.L)]
    return v, vb


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with ``0 / 0 = 0`` (a sample already at its target has nothing to
    neglect)."""
    return torch.where(den > 0, num / den.where(den > 0, 1.0), torch.where(num > 0, torch.inf, 0.0))


def _carried(lin: _Linearised, rho: list[torch.Tensor]) -> list[torch.Tensor]:
    """``h_i = W_i (D_{i-1} h_{i-1} + rho_{i-1})``, ``h_0 = 0``: rate perturbations ``rho``
    (per layer [B, n_i]) carried forward through the linearised layers."""
    h = [torch.zeros_like(rho[0])]
    for i in range(1, lin.loop.L):
        h.append((lin.D[i - 1] * h[-1] + rho[i - 1]) @ lin.loop.W[i].T)
    return h


def _integral_matrix(lin: _Linearised) -> torch.Tensor:
    """``J Q + alpha_eff`` [B, n_L, n_L]: what the integral controller inverts on integrated
    output errors (``alpha_eff = alpha``, paper leak ``alpha / (1 + alpha k_p)``)."""
    pi, nL, L = lin.pi, lin.nL, lin.loop.L
    leak = pi.alpha if pi.leak == "reference" else pi.alpha / (1.0 + pi.alpha * pi.k_p)
    JQ = lin.C.reshape(lin.C.shape[0], nL, L, nL).sum(2)
    return JQ + leak * torch.eye(nL, dtype=JQ.dtype, device=JQ.device)


def _control_response(
    lin: _Linearised, rho: list[torch.Tensor], h: list[torch.Tensor]
) -> torch.Tensor:
    """``delta u`` [B, n_L] that cancels the output error of the perturbations ``rho`` (``h``
    their carried form) up to the leak: ``(J Q + alpha_eff) delta u = -(D_L h_L + rho_L)``."""
    g = lin.D[-1] * h[-1] + rho[-1]
    du, info = torch.linalg.solve_ex(_integral_matrix(lin), -g.unsqueeze(-1))
    return torch.where((info == 0)[:, None], du.squeeze(-1), torch.nan)  # singular: fall back


def _integrated_remainders(
    lin: _Linearised, mom: Moments, z0: list[torch.Tensor], s0: list[torch.Tensor], rule: str | None
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Per layer [B, n_i]: the time integrals (the scheme: sums) of the rate remainder and of
    the nonlinear-difference signal's remainder (zero for the other rules), and ``int s_i``."""
    f2 = lin.f2
    rho, rho_rule, kept = [], [], []
    for i in range(lin.loop.L):
        k = (i + 1) * lin.nL  # layer i's spans have no blocks beyond lag i
        P, S = lin.P[i][..., :k], lin.S[i][..., :k]
        X1, G = mom.integral[:, :k].unsqueeze(-1), mom.gram[:, :k, :k]
        z1, s1 = (P @ X1).squeeze(-1), (S @ X1).squeeze(-1)
        rho.append(f2[i] / 2 * (((P @ G) * P).sum(-1) - z0[i] * z1))
        if rule == "nonlinear_difference":
            SG = S @ G
            rem = (SG * P).sum(-1) - z0[i] * s1 - ((SG * S).sum(-1) - s0[i] * s1) / 2
            rho_rule.append(f2[i] * rem)
        else:
            rho_rule.append(torch.zeros_like(s1))
        kept.append(s1)
    return rho, rho_rule, kept


def _signal_correction(
    lin: _Linearised, rho: list[torch.Tensor], rho_rule: list[torch.Tensor], rule: str | None
) -> list[torch.Tensor]:
    """The first neglected term of ``int d_i`` per layer [B, n_i] (signed):
    ``D_i^rule Q_i delta int u + int (signal remainder)``, ``delta int u`` the integral
    controller's answer to the integrated rate remainders ``rho``."""
    du = _control_response(lin, rho, _carried(lin, rho))
    out = []
    for i in range(lin.loop.L):
        slope = rule_slope(lin, rule, i)
        d_err = du @ lin.loop.Q[i].T
        if slope is not None:
            d_err = slope * d_err
        out.append(d_err + rho_rule[i])
    return out


def _weighted_square(lin: _Linearised, ds: list[torch.Tensor]) -> torch.Tensor:
    """``|sum_i d_i (r_{i-1}^-, 1)^T|_F^2`` [B] per sample of per-layer signals ``d_i``
    [B, n_i]."""
    sq = torch.zeros_like(ds[0][:, 0])
    for i, d in enumerate(ds):
        r_prev = lin.loop.x if i == 0 else lin.loop.r_ff[i - 1]
        sq = sq + ((r_prev * r_prev).sum(-1) + 1.0) * (d * d).sum(-1)
    return sq


def _relative(lin: _Linearised, num: list[torch.Tensor], den: list[torch.Tensor]) -> torch.Tensor:
    """``|num| / |den|`` [B] of per-layer signals in the norm of :func:`_weighted_square`."""
    return _ratio(_weighted_square(lin, num), _weighted_square(lin, den)).sqrt()


def _rule_integrals(
    lin: _Linearised, kept: list[torch.Tensor], rule: str | None
) -> list[torch.Tensor]:
    """``int d_i = D_i^rule int s_i`` per layer [B, n_i] of the linearised solution."""
    out = []
    for i, s in enumerate(kept):
        slope = rule_slope(lin, rule, i)
        out.append(s if slope is None else slope * s)
    return out


def _static_response(
    lin: _Linearised, rho: list[torch.Tensor]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(delta z, delta u)``: the loop's static response to the rate perturbations ``rho``,
    ``delta z_i = h_i + P_i^dc delta u`` per layer [B, n_i] (every lag's static gain is 1) and
    the control's change [B, n_L]."""
    h = _carried(lin, rho)
    du = _control_response(lin, rho, h)
    dz = [hi + (P_dc @ du.unsqueeze(-1)).squeeze(-1) for hi, P_dc in zip(h, lin.P_dc, strict=True)]
    return dz, du


def _norm(zs: list[torch.Tensor]) -> torch.Tensor:
    """``|z|`` [B] over all layers of per-layer [B, n_i] vectors."""
    return torch.stack([(z * z).sum(-1) for z in zs]).sum(0).sqrt()


class _FinalTerm(NamedTuple):
    """The neglected term of the final state (see :func:`_final_term`)."""

    relative: torch.Tensor
    """Its size relative to the final deviations [B]."""
    transient: torch.Tensor
    """Relative amplitude of the transient left at ``T`` [B]."""
    static: tuple[list[torch.Tensor], torch.Tensor]
    """``(delta z, delta u)`` of the remainder at ``T``."""
    moving: tuple[list[torch.Tensor], torch.Tensor]
    """``(delta z, delta u)`` of the remainder's transient part, to be weighted by ``hist``."""
    hist: torch.Tensor
    """The transient part's weight [B]."""
    ringing: tuple[list[torch.Tensor], torch.Tensor]
    """``(delta z, delta u)`` of the remainders' integrated transient part, to be weighted by
    ``gain``."""
    gain: torch.Tensor
    """The ringing's weight [B] (:func:`_ringing_gain`)."""


def _ringing_gain(ev: torch.Tensor, T: float) -> torch.Tensor:
    """The largest ratio [B], over the modes of eigenvalues ``ev`` [B, m] (a loop's
    ``spectrum``) on a horizon ``T`` (its ``duration``), of what a mode still holds at ``T`` to
    its static response to the integrated forcing, for forcing at the mode's own rate.

    A mode of eigenvalue ``lambda`` forced by ``c exp(lambda s)`` holds ``c T exp(lambda T)``
    at ``T``, while its static response to the integrated forcing is
    ``c (1 - exp(lambda T)) / lambda^2``: the ratio is at most
    ``|lambda|^2 T exp(Re lambda T) / (1 - exp(Re lambda T))``. It is multiplied by
    ``|lambda| / |Re lambda|``, the resonance factor of the final term's transient weight: a
    margin, not part of the one-mode ratio, for forcing shared among several lightly damped
    modes (``docs/linear_response.md`` section 3 gives the survey behind it).

    Continuous: ``T`` the horizon, ``lambda`` per unit time; the scheme: ``T`` in steps,
    ``lambda`` per step. A mode gone by ``T`` (``exp(Re lambda T)`` below the smallest float;
    the scheme's zero eigenvalues) adds nothing; one that does not decay gives infinity (such
    a loop falls back anyway)."""
    decay = torch.exp(ev.real * T)
    gain = ev.abs() ** 3 * T * decay / ((1.0 - decay) * -ev.real)
    gain = torch.where(decay > 0.0, gain, 0.0)
    return torch.where(ev.real < 0.0, gain, torch.inf).amax(-1)


def _final_term(
    lin: _Linearised,
    mom: Moments,
    z0: list[torch.Tensor],
    y_ss: torch.Tensor,
    rho_int: list[torch.Tensor],
) -> _FinalTerm:
    """The neglected term of the final deviations and the relative amplitude of the transient
    left at ``T``.

    The term is the loop's static response to the remainder at ``T`` plus, for the transient
    ``x(T) - x_ss`` still present, the static response to the remainder's transient part times
    ``|lambda| T`` (a mode of eigenvalue ``lambda`` forced at its own rate answers ``|lambda| T``
    times its static response), times ``|lambda| / |Re lambda|`` (the resonance of a lightly
    damped mode) and times ``amp / |x(T) - x_ss|`` with
    ``amp^2 = |x(T) - x_ss|^2 + |dx/dt(T)|^2 / |lambda|^2`` (an oscillation caught near
    ``x_ss``), ``lambda`` the slowest eigenvalue; plus the ringing of the early remainders:
    their transient part, ``rho_int - count R(z_ss)`` per layer (``rho_int`` the integrated
    quadratic remainders, exact from the Gramian; ``R(z_ss) = phi'' z_ss (z_ss - z0) / 2`` at
    every point), is forcing that the slow modes have not finished answering at ``T``: its
    static response times :func:`_ringing_gain`."""
    Kn = lin.Kn
    zT, zss = lin.deviations(mom.final), lin.deviations(y_ss)
    f2 = lin.f2
    size = _norm(zT)
    rho = [c / 2 * z * (z - a) for c, z, a in zip(f2, zT, z0, strict=True)]
    rho_tr = [c / 2 * (2 * s - a) * (z - s) for c, z, s, a in zip(f2, zT, zss, z0, strict=True)]
    xT, x_ss = mom.final[:, :Kn], y_ss[:, :Kn]
    wT = torch.cat([mom.final, torch.ones_like(xT[:, :1])], 1).unsqueeze(-1)
    vel = (lin.Aw @ wT).squeeze(-1)[:, :Kn] - (xT if lin.discrete else 0.0)
    rate = lin.slowest.abs()
    dist = torch.linalg.vector_norm(xT - x_ss, dim=-1)
    amp = (dist**2 + (torch.linalg.vector_norm(vel, dim=-1) / rate) ** 2).sqrt()
    count = lin.duration
    tiny = torch.finfo(dist.dtype).tiny
    hist = (rate * count).clamp_min(1.0) * amp / dist.clamp_min(tiny)
    hist = hist * rate / (-lin.slowest.real).clamp_min(tiny)
    forcing = [
        r - lin.points * c / 2 * z * (z - a)
        for r, c, z, a in zip(rho_int, f2, zss, z0, strict=True)
    ]
    static, moving = _static_response(lin, rho), _static_response(lin, rho_tr)
    ringing, gain = _static_response(lin, forcing), _ringing_gain(lin.spectrum, count)
    term = _norm(static[0]) + hist * _norm(moving[0]) + gain * _norm(ringing[0])
    transient = _ratio(amp, torch.linalg.vector_norm(x_ss, dim=-1))
    return _FinalTerm(_ratio(term, size), transient, static, moving, hist, ringing, gain)


def _output_chain(lin: _Linearised, dz: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j J_j dz_j`` [B, n_L]: the output rates' change from voltage changes ``dz_j`` of
    every layer (``J_j`` the linearised Jacobian from layer ``j``'s voltages to the output)."""
    q = lin.D[0] * dz[0]
    for i in range(1, lin.loop.L):
        q = lin.D[i] * (q @ lin.loop.W[i].T + dz[i])
    return q


def _final_residual(
    lin: _Linearised, resp: tuple[list[torch.Tensor], torch.Tensor], rule: str | None
) -> list[torch.Tensor]:
    """The error per layer [B, n_i] that final-state errors ``resp = (delta z(T), delta u(T))``
    leave in the rule's corrected sums ``int d_i``.

    Along any trajectory ``int s_i = Q_i int u - tau z_i(T)`` and
    ``(J Q + alpha_eff) int u = e_0 T - g + tau sum_j J_j z_j(T) - gamma u_int(T)``
    (``gamma = 1``, paper leak ``1 / (1 + alpha k_p)``); the order-2 correction carries ``g``
    and takes the final state as exact. The scheme's sums carry ``1 / dt`` on these terms."""
    dz, du = resp
    pi, L, tau = lin.pi, lin.loop.L, lin.tau
    if pi.leak == "reference":  # at the fixed point e = alpha u, u = u_int + k_p e
        du_int = (1.0 - pi.k_p * pi.alpha) * du
    else:  # e = alpha u_int, u = (1 + k_p alpha) u_int; int e carries 1 / (1 + alpha k_p)
        du_int = du / (1.0 + pi.k_p * pi.alpha) ** 2
    rhs = tau * _output_chain(lin, dz) - du_int
    w, info = torch.linalg.solve_ex(_integral_matrix(lin), rhs.unsqueeze(-1))
    w = torch.where((info == 0)[:, None], w.squeeze(-1), torch.nan)
    scale = 1.0 / lin.sim.dt if lin.discrete else 1.0
    out = []
    for i in range(L):
        r = scale * (w @ lin.loop.Q[i].T - tau * dz[i])
        slope = rule_slope(lin, rule, i)
        out.append(r if slope is None else slope * r)
    return out


def _cauchy_schwarz_bound(
    lin: _Linearised, mom: Moments, y0: torch.Tensor, y_ss: torch.Tensor
) -> torch.Tensor:
    """The conservative bound [B] kept for loops not settled at ``T``:
    ``max_{i,a} |phi''/phi'|_{i,a} |P_{i,a}| (d_traj + d_ss)`` with ``d_traj =
    max(rms_t |x(t) - x_ss|, |x(T) - x_ss|)`` (from the Gramian) and ``d_ss = |x_ss - x_ss^(0)|``
    (Cauchy-Schwarz on ``z_{i,a} = P_{i,a} . x``)."""
    Kn = lin.Kn
    x_ss = y_ss[:, :Kn]
    count = float(lin.points)
    X1, G = mom.integral[:, :Kn], mom.gram[:, :Kn, :Kn]
    tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1) - 2 * (X1 * x_ss).sum(-1)
    rms = ((tr + count * (x_ss * x_ss).sum(-1)).clamp_min(0.0) / count).sqrt()
    d_traj = torch.maximum(rms, torch.linalg.vector_norm(mom.final[:, :Kn] - x_ss, dim=-1))
    dev = d_traj + torch.linalg.vector_norm(x_ss - y0[:, :Kn], dim=-1)
    est = torch.zeros_like(dev)
    for f2, d, P in zip(lin.f2, lin.D_tan, lin.P, strict=True):
        kappa = (f2 / d.abs().clamp_min(torch.finfo(d.dtype).tiny)).abs()
        est = torch.maximum(est, (kappa * torch.linalg.vector_norm(P, dim=-1)).amax(-1) * dev)
    return est


def _nonlinearity(lin: _Linearised, y_ss: torch.Tensor) -> torch.Tensor:
    """``max_{i,a} |phi''_a / phi'_a| |z_ss,a|`` [B]: the relative change of the slopes over
    the deviation at the fixed point ``y_ss`` [B, m] (the relative size of a first-order
    correction's own neglected term)."""
    tiny = torch.finfo(y_ss.dtype).tiny
    out = torch.zeros_like(y_ss[:, 0])
    zs = lin.deviations(torch.where(torch.isfinite(y_ss), y_ss, 0.0))
    for f2, d, z in zip(lin.f2, lin.D_tan, zs, strict=True):
        out = torch.maximum(out, (f2 / d.abs().clamp_min(tiny) * z).abs().amax(-1))
    return out


def _magnitude_correction(
    lin: _Linearised,
    rho: list[torch.Tensor],
    rho_rule: list[torch.Tensor],
    rule: str | None,
    power: int,
) -> list[torch.Tensor]:
    """:func:`_signal_correction` with every matrix (``(J Q + alpha_eff)^{-1}`` too), slope and
    remainder raised elementwise to ``|.|^power`` and the result to ``1 / power``: ``power = 1``,
    the correction's size before any cancellation between units and layers; ``power = 2``, its
    root-sum-square size, as errors of independent sign per unit see it."""

    def f(t: torch.Tensor) -> torch.Tensor:
        return t.abs() if power == 1 else t**2

    L = lin.loop.L
    h = torch.zeros_like(rho[0])
    for i in range(1, L):
        h = (f(lin.D[i - 1]) * h + f(rho[i - 1])) @ f(lin.loop.W[i]).T
    g = f(lin.D[-1]) * h + f(rho[-1])
    inv, info = torch.linalg.inv_ex(_integral_matrix(lin))
    inv = torch.where((info == 0)[:, None, None], f(inv), torch.nan)
    du = (inv @ g.unsqueeze(-1)).squeeze(-1)
    out = []
    for i in range(L):
        slope = rule_slope(lin, rule, i)
        d = du @ f(lin.loop.Q[i]).T
        if slope is not None:
            d = f(slope) * d
        d = d + f(rho_rule[i])
        out.append(d if power == 1 else d.sqrt())
    return out


def _second_order_term(
    lin: _Linearised,
    ft: _FinalTerm,
    rule: str | None,
    size: torch.Tensor,
    eta: torch.Tensor,
    ints: list[torch.Tensor],
) -> torch.Tensor:
    """Relative size [B] of what the order-2 correction of the rule's sums neglects: the
    final-state errors it takes as exact (:func:`_final_residual`, static part and transient
    part weighted as in :func:`_final_term`) and its own error, :data:`OWN` x ``eta`` x
    ``size`` (the larger of the correction's root-sum-square size, :func:`_magnitude_correction`,
    and its size times the condition number of ``J Q + alpha_eff``): the remainders
    are taken along the linear trajectory and carried by the secant loop, whose slopes are off
    the local ones by ``eta`` relative; ``ints`` the linear sums ``int d_i``."""
    resid = _relative(lin, _final_residual(lin, ft.static, rule), ints)
    resid = resid + ft.hist * _relative(lin, _final_residual(lin, ft.moving, rule), ints)
    resid = resid + ft.gain * _relative(lin, _final_residual(lin, ft.ringing, rule), ints)
    return resid + OWN * size * eta


def _loop_condition(lin: _Linearised) -> torch.Tensor:
    """The 2-norm condition number [B] of ``J Q + alpha_eff``, the matrix the integral
    controller inverts (a relative change of it moves the control's answer by up to this
    factor more)."""
    return torch.linalg.cond(_integral_matrix(lin))


class Estimate(NamedTuple):
    """The a-posteriori estimates of one batch (per sample [B]) and the order-2 correction."""

    estimate: torch.Tensor
    """The relative error estimate of the solve's product (:data:`SAFETY` times its first
    neglected term; the Cauchy-Schwarz floor beyond :data:`SETTLED`): at ``order = 1``, or with no
    rule, of the rule's sums and the final deviations together; at ``order = 2`` with a rule, of
    the corrected rule's sums."""
    final_estimate: torch.Tensor
    """The relative error estimate of the final deviations (at ``order = 1``, or with no rule,
    equal to :attr:`estimate`)."""
    correction: list[torch.Tensor] | None
    """``order = 2`` with a rule: the first neglected term of ``int d_i`` per layer [B, n_i],
    added to the rule's sums; None otherwise."""
    transient: torch.Tensor
    """The relative amplitude ``amp / |x_ss|`` of the transient left at ``T`` [B] (see
    :func:`_final_term`): how far from settled the loop is at the end of the horizon."""


def error_estimate(
    lin: _Linearised,
    mom: Moments,
    fixed: tuple[list[torch.Tensor], list[torch.Tensor]],
    y0: torch.Tensor,
    y_ss: torch.Tensor,
    rule: str | None,
    order: int = 1,
) -> Estimate:
    """Per-sample estimate of the relative error of the secant-linearised solution (of the
    rule's sums and of the final deviations): :data:`SAFETY` times the first neglected term
    (see the module docstring); with ``order = 2`` and a rule, the neglected term of the rule's
    sums is returned as a correction and the estimate is that of the corrected sums.

    Args:
        lin: the secant-linearised loop.
        mom: its moments.
        fixed: voltages and basal voltages per layer [B, n_i] at ``y0``
            (:func:`fixed_point_voltages` of the tangent-linearised loop).
        y0: the fixed point of the tangent-linearised loop [B, m] (the secants pass through
            it).
        y_ss: the fixed point of ``lin`` [B, m].
        rule: the accumulated forward rule (None: the sums of ``s_i``, i.e. the voltage
            difference).
        order: 1, or 2 (the rule's sums corrected by their first neglected term).
    """
    v0, vb0 = fixed
    z0 = [v - vf for v, vf in zip(v0, lin.loop.v_ff, strict=True)]
    s0 = [v - vb for v, vb in zip(v0, vb0, strict=True)]
    rho, rho_rule, kept = _integrated_remainders(lin, mom, z0, s0, rule)
    ints = _rule_integrals(lin, kept, rule)
    update = _relative(lin, _signal_correction(lin, rho, rho_rule, rule), ints)
    ft = _final_term(lin, mom, z0, y_ss, rho)
    final, transient = ft.relative, ft.transient
    est_final = SAFETY * torch.maximum(final, update)
    correction, est = None, est_final
    if order == 2 and rule is not None:
        # the remainders beyond the quadratic one, by quadrature along the linear trajectory
        q = higher_remainders(lin, mom, z0, s0, rule)
        rho_c = [a + b for a, b in zip(rho, q.rates, strict=True)]
        rule_c = [a + b for a, b in zip(rho_rule, q.signal, strict=True)]
        correction = _signal_correction(lin, rho_c, rule_c, rule)
        eta = _nonlinearity(lin, y_ss)
        size = torch.maximum(
            _relative(lin, _magnitude_correction(lin, rho_c, rule_c, rule, 2), ints),
            _relative(lin, correction, ints) * _loop_condition(lin),
        )
        quad = _relative(lin, _magnitude_correction(lin, q.rates_err, q.signal_err, rule, 1), ints)
        # the presynaptic part int d_i (r_{i-1} - r_{i-1}^-)^T: its remainder and the
        # signal's own error along the transient (eta) and at the fixed point (final)
        pre = [
            a + OWN * eta * b + final * c
            for a, b, c in zip(q.pre_remainder, q.pre_transient, q.pre_settled, strict=True)
        ]
        pre_rel = _ratio(torch.stack(pre).pow(2).sum(0).sqrt(), _weighted_square(lin, ints).sqrt())
        est = SAFETY * (_second_order_term(lin, ft, rule, size, eta, ints) + quad + pre_rel)
    unsettled = ~(transient <= SETTLED)
    if bool(unsettled.any()):
        bound = _cauchy_schwarz_bound(lin, mom, y0, y_ss)
        est = torch.where(unsettled, torch.maximum(est, bound), est)
        est_final = torch.where(unsettled, torch.maximum(est_final, bound), est_final)
    return Estimate(est, est_final, correction, transient)
