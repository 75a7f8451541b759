"""Quadrature along the linear trajectory for ``simulation.order = 2``: the rate and signal
remainders beyond their quadratic part (third order; their third moments are not in the
Gramian, and their sign along a non-monotone transient matters), integrated on a grid graded
towards the start, with the quadrature's own error estimate (the difference from the rule on
every other point) and the integrals that size the sums' presynaptic part."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from neurodfc.solvers.lr_closed_forms import Moments
from neurodfc.solvers.lr_derivatives import increment, rule_slope

if TYPE_CHECKING:
    from neurodfc.solvers.linear_response import _Linearised

QUADRATURE_POINTS = 2
"""Points per doubling of the spacing in the graded grid of :func:`quadrature_steps` (about
``2 log2(steps)`` points: 21 at 1000 steps). At the Table-1 MNIST settings (random batch of
128, both discretisations) 4 per doubling (37 points) moved the corrected update by 9e-12
relative and the estimate's median from 1.07e-7 to 9.6e-8 at 1.3x the cost of an order-2
update; 8 per doubling moved it by another 4e-12."""


QUADRATURE_CHUNK = 8
"""Grid points per pass of :func:`higher_remainders` (a chunk's ``[B, 8, n_i]`` tensors stay
in cache across the dozen elementwise operations on them)."""


def quadrature_steps(n: int, q: int = QUADRATURE_POINTS) -> list[int]:
    """Increasing step indices in ``[0, n - 1]`` graded towards the start (where the transient
    lives): spacing ``h`` (a power of 2) up to step ``2 q h``, so every gap but the last is a
    power of 2, and every other point again forms such a grid.

    Args:
        n: number of time points.
        q: points per doubling of the spacing.
    """
    pts, h = {0, n - 1}, 1
    while True:
        pts.update(range(0, min(2 * q * h, n - 1) + 1, h))
        if 2 * q * h >= n - 1:
            break
        h *= 2
    return sorted(pts)


def graded_states(mom: Moments, steps: list[int]) -> torch.Tensor:
    """Reduced states [len(steps), B, m] at the unit points ``steps`` (from
    :func:`quadrature_steps` over ``mom.points``): the moments' doubled propagators
    ``mom.powers`` applied along the binary digits of each gap.

    Args:
        mom: the moments of the loop.
        steps: increasing unit points.
    """
    pows = mom.powers
    w = torch.zeros_like(pows[0][:, :, 0])
    w[:, -1] = 1.0
    out, prev = [], 0
    for k in steps:
        gap, j = k - prev, 0
        while gap:
            if gap & 1:
                w = (pows[j] @ w.unsqueeze(-1)).squeeze(-1)
            gap, j = gap >> 1, j + 1
        out.append(w[:, :-1])
        prev = k
    return torch.stack(out)


def trapezoid_weights(
    grid: list[int], steps: list[int], discrete: bool, h: float, like: torch.Tensor
) -> torch.Tensor:
    """Weights [len(grid)] on the points ``grid`` of the trapezoid rule on the sub-grid
    ``steps`` (zero elsewhere): the integral over the horizon (the scheme: the sum over every
    step, which adds the endpoints' halves), times ``h`` (continuous); ``f @ w`` integrates
    ``f`` [..., len(grid)] sampled at ``grid``.

    Args:
        grid: the increasing unit points the integrand is sampled at.
        steps: the sub-grid (points of ``grid``) the rule uses.
        discrete: the scheme's sum over every step (else the continuous integral).
        h: the unit's length in time (continuous).
        like: a tensor whose dtype and device the weights take.
    """
    t = torch.tensor(steps, dtype=like.dtype, device=like.device)
    w = torch.zeros_like(t)
    w[1:] += (t[1:] - t[:-1]) / 2
    w[:-1] += (t[1:] - t[:-1]) / 2
    if discrete:
        w[0] += 0.5
        w[-1] += 0.5
    else:
        w = w * h
    out = torch.zeros(len(grid), dtype=like.dtype, device=like.device)
    out[[grid.index(k) for k in steps]] = w
    return out


class Quadrature(NamedTuple):
    """What :func:`higher_remainders` integrates along the linear trajectory."""

    rates: list[torch.Tensor]
    """Per layer [B, n_i]: the integral of the rates' remainder beyond its quadratic part."""
    signal: list[torch.Tensor]
    """Per layer [B, n_i]: the same for the nonlinear-difference signal (else zeros)."""
    rates_err: list[torch.Tensor]
    """The quadrature's error estimate of :attr:`rates` (difference from every other point)."""
    signal_err: list[torch.Tensor]
    """The quadrature's error estimate of :attr:`signal`."""
    pre_remainder: list[torch.Tensor]
    """Per layer ``i >= 1`` [B]: ``int |d_i| |R_{i-1}| dt``, bounding the sums' part
    ``int d_i R_{i-1}^T`` that pairs the signal with the presynaptic rates' whole remainder."""
    pre_transient: list[torch.Tensor]
    """Per layer ``i >= 1`` [B]: ``int |d_i - d_i(T)| |D_{i-1} z_{i-1}| dt``."""
    pre_settled: list[torch.Tensor]
    """Per layer ``i >= 1`` [B]: ``int |d_i(T)| |D_{i-1} z_{i-1}| dt``."""


def _as_row(slope: torch.Tensor | None) -> torch.Tensor | float:
    """A rule slope [B, n_i] as [B, 1, n_i] (None, the voltage difference: 1)."""
    return 1.0 if slope is None else slope.unsqueeze(1)


def higher_remainders(
    lin: _Linearised,
    mom: Moments,
    z0: list[torch.Tensor],
    s0: list[torch.Tensor],
    rule: str | None,
) -> Quadrature:
    """The time integrals (the scheme: sums) per layer [B, n_i] of what the quadratic
    remainders leave out, the rates' ``phi(v^- + z) - phi(v^-) - D_sec z - phi'' z (z - z0) / 2``
    and the nonlinear-difference signal's ``phi(v) - phi(v - s) - D_rule s - phi'' s ((z - z0)
    - (s - s0) / 2)``, evaluated exactly along the linear trajectory on the graded grid of
    :func:`quadrature_steps` (they are third order and vanish at the fixed point; their
    third moments are not in the Gramian, and their sign along a non-monotone transient
    matters), the quadrature's error estimate (the difference from every other point), and
    the integrals that size the sums' presynaptic part (see :class:`Quadrature`).

    Args:
        lin: the secant-linearised loop.
        mom: its moments (the doubled propagators give the grid's states).
        z0: the tangent fixed point's deviations per layer [B, n_i].
        s0: its somatic-minus-basal voltages per layer [B, n_i].
        rule: the accumulated forward rule (None: the voltage difference's sums).
    """
    loop = lin.loop
    steps = quadrature_steps(mom.points)
    half = steps[::2] if (len(steps) - 1) % 2 == 0 else [*steps[:-1:2], steps[-1]]
    h = mom.unit
    w_full = trapezoid_weights(steps, steps, lin.discrete, h, lin.P[0])
    # [K, 2]: the full rule and its difference from the rule on every other point
    w = torch.stack([w_full, w_full - trapezoid_weights(steps, half, lin.discrete, h, w_full)], 1)
    X = graded_states(mom, steps)[..., : lin.Kn].transpose(0, 1)  # [B, K, Kn]
    f2 = lin.f2
    nonlinear = rule == "nonlinear_difference"
    L, nL = loop.L, lin.nL
    PT = [lin.P[i][..., : (i + 1) * nL].transpose(1, 2) for i in range(L)]  # [B, k, n_i]
    ST = [lin.S[i][..., : (i + 1) * nL].transpose(1, 2) for i in range(L)]
    # the rule's slope per layer as [B, 1, n_i] (1: the voltage difference)
    slopes = [_as_row(rule_slope(lin, rule, i)) for i in range(L)]
    # per layer [B, 1, n_i]: the signal at T (the transient's bound is about it)
    d_T = [slopes[i] * (X[:, -1:, : (i + 1) * nL] @ ST[i]) for i in range(L)]
    d_T_norm = [torch.linalg.vector_norm(d, dim=-1) for d in d_T]  # [B, 1]
    rates = [torch.zeros_like(z) for z in z0]
    signal = [torch.zeros_like(z) for z in z0]
    rates_d = [torch.zeros_like(z) for z in z0]
    signal_d = [torch.zeros_like(z) for z in z0]
    pre = [torch.zeros((X.shape[0], 3), dtype=X.dtype, device=X.device) for _ in range(L - 1)]
    # the increments phi(v^- + z) - phi(v^-) without cancellation (the remainders are z^2 small)
    incs = [increment(lay, v.unsqueeze(1)) for lay, v in zip(loop.layers, loop.v_ff, strict=True)]
    for c0 in range(0, len(steps), QUADRATURE_CHUNK):  # chunks of the grid stay in cache
        Xc, wc = X[:, c0 : c0 + QUADRATURE_CHUNK], w[c0 : c0 + QUADRATURE_CHUNK]
        prev: tuple[torch.Tensor, torch.Tensor] | None = None  # |R_{i-1}|, |D z_{i-1}| [B, Kc]
        for i in range(L):
            k = (i + 1) * nL  # layer i's spans have no blocks beyond lag i
            z = Xc[..., :k] @ PT[i]  # [B, Kc, n_i]
            sv = Xc[..., :k] @ ST[i]
            c = f2[i].unsqueeze(1)
            pv = incs[i](z)  # phi(v) - phi(v^-), v = v^- + z
            Dz = lin.D[i].unsqueeze(1) * z
            R = pv - Dz
            zc = z - z0[i].unsqueeze(1)
            both = (R - (c / 2) * z * zc).transpose(1, 2) @ wc  # [B, n_i, 2]
            rates[i] += both[..., 0]
            rates_d[i] += both[..., 1]
            if nonlinear:
                # phi(v) - phi(v - s) - s (D_rule + c ((z - z0) - (s - s0) / 2))
                base = (lin.D_rule[i] + f2[i] * s0[i] / 2).unsqueeze(1)
                hi_r = pv - incs[i](z - sv) - sv * (base + c * zc - (c / 2) * sv)
                both = hi_r.transpose(1, 2) @ wc
                signal[i] += both[..., 0]
                signal_d[i] += both[..., 1]
            if prev is not None:
                d = slopes[i] * sv
                dn = torch.linalg.vector_norm(d, dim=-1)  # [B, Kc]
                dtr = torch.linalg.vector_norm(d - d_T[i], dim=-1)
                # [B, 3, Kc]
                f = torch.stack([dn * prev[0], dtr * prev[1], d_T_norm[i] * prev[1]], 1)
                pre[i - 1] += f @ wc[:, 0]
            if i + 1 < L:
                prev = (torch.linalg.vector_norm(R, dim=-1), torch.linalg.vector_norm(Dz, dim=-1))
    return Quadrature(
        rates=rates,
        signal=signal,
        rates_err=[t.abs() for t in rates_d],
        signal_err=[t.abs() for t in signal_d],
        pre_remainder=[t[:, 0] for t in pre],
        pre_transient=[t[:, 1] for t in pre],
        pre_settled=[t[:, 2] for t in pre],
    )
