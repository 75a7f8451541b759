"""The closed loop in deviation form, split as ``f(y) = D y + N(y)`` for exponential integrators.

State ``y`` [B, S], columns: the voltage deviations ``z_i = v_i - v_i^-`` of all layers, the apical
voltages (with an apical time constant), then the controller's state entries (``n_L`` columns
each, ``u_int`` last). Rates, output error and basal inputs are computed as small differences
(``phi(v^- + z) - phi(v^-)`` by each layer's :meth:`NeuronLayer.increment`, see
:mod:`neurodfc.increments`), which keeps float32 usable at the paper's tiny target steps.

``D`` is the exactly integrated stiff diagonal: the leak ``-1/tau_i`` of every voltage, the
proportional loop of the output layer ``-(1 + g q_LL phi_L'(v_L^-)) / tau_L`` (``g`` the
controller's feedthrough ``du/de``), the apical leak ``-1/tau_A`` and the controller's own
``stiff_diagonal`` (the PI controller with the paper's leak: ``-alpha``).
"""

from __future__ import annotations

import math

import torch

from neurodfc.components.controller import (
    ControllerState,
    LinearizedController,
    PIController,
)
from neurodfc.core.loop import ClosedLoop


def phi_scalar(z: float) -> tuple[float, float, float, float]:
    """``(exp(z), phi_1(z), phi_2(z), phi_3(z))`` with ``phi_k(z) = sum_j z^j / (j + k)!``,
    by the closed forms for ``|z| >= 0.2`` and a Taylor series below (no cancellation); for
    ``z`` below -1e100 (a decay far faster than any step) their leading terms
    ``(0, -1/z, -1/z, -1/(2 z))`` (the next terms are 1e-100 smaller; ``z**3`` would overflow).

    Args:
        z: the argument ``h d`` (step times a diagonal entry of ``D``).
    """
    if z < -1e100:
        return 0.0, -1.0 / z, -1.0 / z, -0.5 / z
    if abs(z) >= 0.2:
        ez = math.exp(z)
        p1 = (ez - 1) / z
        p2 = (ez - 1 - z) / z**2
        p3 = (ez - 1 - z - z * z / 2) / z**3
        return ez, p1, p2, p3
    p = [0.0, 0.0, 0.0]
    term = 1.0
    for j in range(16):
        for k in range(3):
            p[k] += term / math.factorial(j + k + 1)
        term *= z
    return math.exp(z), p[0], p[1], p[2]


class SplitField:
    """The :class:`ClosedLoop` as ``f(y) = D y + N(y)`` on a flat state (module docstring).

    Args:
        loop: the assembled closed loop.
    """

    def __init__(self, loop: ClosedLoop) -> None:
        self.loop = loop
        self.L = loop.L
        self.sizes = sizes = loop.sizes
        self.N = N = sum(sizes)
        self.nL = nL = sizes[-1]
        self.offs = [0]
        for n in sizes:
            self.offs.append(self.offs[-1] + n)
        self.ctrl = loop.controller
        self.pi = self.ctrl if isinstance(self.ctrl, PIController) else None
        e0 = loop.r_target - loop.r_ff[-1]
        self.n_ctrl = len(self.ctrl.initial_state(e0))
        self.apical = loop.apical_tau is not None
        self.tau_a = loop.apical_tau
        self.S = N * (2 if self.apical else 1) + self.n_ctrl * nL
        self.r_target = r_target = loop.r_target
        self.taus = taus = loop.taus
        B = r_target.shape[0]
        dtype, device = r_target.dtype, r_target.device
        inv = [1.0 / t for t in taus]
        self.W = loop.W
        # 1/tau_i folded into the products: vbs_i = (W_i r_{i-1})/tau_i (deviations)
        self.Wt_s = [(w * inv[i]).t().contiguous() for i, w in enumerate(self.W)]
        Q = loop.Q
        if self.apical:
            self.QT_s = torch.cat(Q, dim=0).t().contiguous()
        elif len(set(taus)) == 1:
            self.QT_s = (torch.cat(Q, dim=0) * inv[0]).t().contiguous()
        else:
            self.QT_s = torch.cat([q * inv[i] for i, q in enumerate(Q)], dim=0).t().contiguous()
        self.v_ff, self.r_ff = loop.v_ff, loop.r_ff
        self.inc = [lay.increment(v) for lay, v in zip(loop.layers, self.v_ff, strict=True)]
        # output error at the feedforward state, r_L* - r_L^ff (e = delta - (r_L - r_L^ff))
        self.delta = r_target - self.r_ff[-1]
        self._diagonal(dtype, device)
        self.nfe = 0
        self.vbs = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
        self.vbs[0] = torch.zeros((B, sizes[0]), dtype=dtype, device=device)
        self.dr = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
        self.work = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
        self.FB = torch.empty((B, N), dtype=dtype, device=device)
        self.e = torch.empty_like(r_target)
        self.u = torch.empty_like(r_target)

    def _diagonal(self, dtype: torch.dtype, device: torch.device) -> None:
        """``D`` per column, its distinct values and the output layer's extra term."""
        L, N, S, nL, offs = self.L, self.N, self.S, self.nL, self.offs
        inv = [1.0 / t for t in self.taus]
        D: list[float] = []
        for i, n in enumerate(self.sizes):
            D += [-inv[i]] * n
        D += [0.0] * (S - N)
        g, stiff = 0.0, (0.0,) * self.n_ctrl
        if isinstance(self.ctrl, LinearizedController):
            g, stiff = self.ctrl.feedthrough(), tuple(self.ctrl.stiff_diagonal())
        Q_L = self.loop.Q[-1]
        self.out_shift: torch.Tensor | None = None
        if g != 0.0 and Q_L.shape[0] == Q_L.shape[1]:
            dphi = self.loop.layers[-1].phi_prime(self.v_ff[-1]).mean(0)
            dL = (-(1.0 + g * torch.diagonal(Q_L) * dphi) * inv[-1]).tolist()
            D[offs[L - 1] : N] = dL
            # N_L = (vb + fb - v)/tau_L - D_L v: the extra term -(1/tau_L + D_L) v
            self.out_shift = -(torch.tensor(dL, dtype=dtype, device=device) + inv[-1])
        if self.apical:
            assert self.tau_a is not None
            D[N : 2 * N] = [-1.0 / self.tau_a] * N
        c0 = S - self.n_ctrl * nL
        for k, d in enumerate(stiff):
            D[c0 + k * nL : c0 + (k + 1) * nL] = [d] * nL
        self.stiff = tuple(stiff)
        self.D = torch.tensor(D, dtype=dtype, device=device)
        uniq = sorted(set(D))
        self.D_unique = uniq
        self.D_index = torch.tensor([uniq.index(d) for d in D], device=device)

    def coefficients(self, h: float) -> dict[str, torch.Tensor]:
        """The per-column ETDRK4 coefficients for step ``h``."""
        full = [phi_scalar(h * d) for d in self.D_unique]
        half = [phi_scalar(0.5 * h * d) for d in self.D_unique]
        rows = {
            "E": [f[0] for f in full],
            "E2": [g[0] for g in half],
            "q1": [0.5 * h * g[1] for g in half],
            "f1": [h * (f[1] - 3 * f[2] + 4 * f[3]) for f in full],
            "f2": [h * (2 * f[2] - 4 * f[3]) for f in full],
            "f3": [h * (4 * f[3] - f[2]) for f in full],
            # ETD2RK minus ETDRK4: the error estimate
            "g1": [h * (f[1] - f[2]) - h * (f[1] - 3 * f[2] + 4 * f[3]) for f in full],
            "g2": [-h * (2 * f[2] - 4 * f[3]) for f in full],
            "g3": [h * f[2] - h * (4 * f[3] - f[2]) for f in full],
        }
        keys = list(rows)
        table = torch.tensor([rows[k] for k in keys], dtype=self.D.dtype, device=self.D.device)
        cols = table[:, self.D_index]
        return {k: cols[j] for j, k in enumerate(keys)}

    def initial_state(self) -> torch.Tensor:
        """The feedforward state: zero deviations and apical voltages, the controller's start
        (the PI controller: ``u_int = 0``)."""
        y = torch.zeros(
            (self.r_target.shape[0], self.S), dtype=self.r_target.dtype, device=self.D.device
        )
        for k, s in enumerate(self.ctrl.initial_state(self.delta)):
            y[:, self.S - (self.n_ctrl - k) * self.nL :][:, : self.nL] = s
        return y

    def voltages(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer views ``z_i = v_i - v_i^ff`` of a state ``y`` [B, S]."""
        return [y[:, self.offs[i] : self.offs[i + 1]] for i in range(self.L)]

    def apical_voltages(self, y: torch.Tensor) -> list[torch.Tensor] | None:
        """Per-layer views of the apical voltages of a state ``y`` (None when
        instantaneous)."""
        if not self.apical:
            return None
        return [y[:, self.N + self.offs[i] : self.N + self.offs[i + 1]] for i in range(self.L)]

    def controller_state(self, y: torch.Tensor) -> ControllerState:
        """The controller's state entries (views [B, n_L]) of a state ``y``."""
        c0 = self.S - self.n_ctrl * self.nL
        return tuple(y[:, c0 + k * self.nL : c0 + (k + 1) * self.nL] for k in range(self.n_ctrl))

    def rates(self, y: torch.Tensor, r: list[torch.Tensor] | None) -> None:
        """``self.dr_i = phi(v_i) - phi(v_i^ff)`` at the state ``y`` and, when ``r`` is given,
        ``r_i = phi(v_i)`` into ``r``."""
        z = self.voltages(y)
        for i in range(self.L):
            self.inc[i](z[i], self.dr[i], self.work[i])
            if r is not None:
                torch.add(self.r_ff[i], self.dr[i], out=r[i])

    def nonlinear(self, y: torch.Tensor, r: list[torch.Tensor] | None, out: torch.Tensor) -> None:
        """``out = N(y) = f(y) - D y``; fills ``r`` (rates) and ``self.vbs`` (basal input
        deviations divided by tau_i), ``self.e`` and ``self.u``."""
        self.nfe += 1
        L, N, offs = self.L, self.N, self.offs
        self.rates(y, r)
        for i in range(1, L):
            torch.mm(self.dr[i - 1], self.Wt_s[i], out=self.vbs[i])
        e, u = self.e, self.u
        torch.sub(self.delta, self.dr[L - 1], out=e)
        c = self.controller_state(y)
        if self.pi is not None:
            torch.add(c[-1], e, alpha=self.pi.k_p, out=u)
        else:
            u.copy_(self.ctrl.output(e, c))
        torch.mm(u, self.QT_s, out=self.FB)
        if self.apical:
            assert self.tau_a is not None
            torch.mul(self.FB, 1.0 / self.tau_a, out=out[:, N : 2 * N])
            fb_src, fb_alpha = y[:, N : 2 * N], [1.0 / t for t in self.taus]
        else:
            fb_src, fb_alpha = self.FB, [1.0] * L
        for i in range(L):
            blk = out[:, offs[i] : offs[i + 1]]
            torch.add(self.vbs[i], fb_src[:, offs[i] : offs[i + 1]], alpha=fb_alpha[i], out=blk)
            if i == L - 1 and self.out_shift is not None:
                blk.addcmul_(y[:, offs[i] : offs[i + 1]], self.out_shift)
        self._controller_rates(y, c, out)

    def _controller_rates(self, y: torch.Tensor, c: ControllerState, out: torch.Tensor) -> None:
        """The controller's columns of ``N(y)``: its rates minus its stiff diagonal part."""
        e, u = self.e, self.u
        dc = self.controller_state(out)
        if self.pi is not None:
            if self.pi.leak == "paper":
                dc[0].copy_(e)  # e - alpha u_int: the leak is in D
            else:
                torch.sub(e, u, alpha=self.pi.alpha, out=dc[0])
            return
        for k, rate in enumerate(self.ctrl.rates(e, u, c)):
            if self.stiff and self.stiff[k] != 0.0:
                torch.sub(rate, c[k], alpha=self.stiff[k], out=dc[k])
            else:
                dc[k].copy_(rate)

    def control(self, y: torch.Tensor, dr_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, u_int)`` at the state ``y`` whose output rate deviation is ``dr_out``
        (``u_int``: the controller's last state entry)."""
        c = self.controller_state(y)
        if self.pi is not None:
            return c[-1] + self.pi.k_p * (self.delta - dr_out), c[-1]
        return self.ctrl.output(self.delta - dr_out, c), c[-1]
