"""The ETDRK4 step (Cox & Matthews 2002) on the deviation form ``f(y) = D y + N(y)``
(:class:`~neurodfc.core.split.SplitField`), its embedded error estimate and the quadrature of
the forward rule's time integral at the step's stage states.

* :class:`Quadrature` -- the rule's signal ``d_i`` at the four quadrature points of each step
  (``y_n``, ``a``, ``b``, ``c`` with the classical RK4 weights ``h/6, h/3, h/3, h/6``), written
  into the slots of :class:`~neurodfc.core.sums.ChunkedSums`;
* :class:`ETDRK4Step` -- the four stages with the per-column phi-function coefficients of the
  diagonal (:meth:`SplitField.coefficients`), the fourth-order solution and the error estimate
  (ETD2RK from the same stages minus ETDRK4, order 2);
* :class:`ErrorNorm` -- the step's error ratio, normwise relative to the deviation per block
  (each layer's voltages, apical voltages, each controller state entry).
"""

from __future__ import annotations

import math

import torch

from neurodfc.core.freeze import Freezer
from neurodfc.core.split import SplitField
from neurodfc.core.sums import ChunkedSums

PER_STEP = 4
"""Quadrature points per step: ``y_n``, ``a``, ``b``, ``c`` (classical RK4 weights)."""


class Quadrature:
    """The forward rule's signal at the quadrature points, summed by chunks of steps.

    Args:
        F: the closed loop in deviation form.
        rule: the forward rule whose signal is integrated (None: no integrals; the rate
            slots are still used as scratch).
        chunk: steps per accumulation product.
        x: the inputs ``r_0`` [B, n_0] (batch, dtype and device).
    """

    def __init__(self, F: SplitField, rule: str | None, chunk: int, x: torch.Tensor) -> None:
        self.F, self.rule, self.on = F, rule, rule is not None
        B = x.shape[0]
        self.cap = max(chunk, 1) * PER_STEP if self.on else 1
        self.sums = ChunkedSums(F.sizes, B, self.cap, self.on, x)
        self.tmp = [torch.empty((B, n), dtype=x.dtype, device=x.device) for n in F.sizes]
        self.dprime_ff: list[torch.Tensor] = []
        if rule == "derivative_matrix":
            self.dprime_ff = [lay.phi_prime(F.v_ff[i]) for i, lay in enumerate(F.loop.layers)]
        self.fill = 0
        self.points = 0

    def signal(self, y: torch.Tensor, out: list[torch.Tensor]) -> None:
        """The rule's signal ``d_i`` at the state just evaluated (rate deviations ``F.dr``,
        basal deviations ``F.vbs``): ``phi(v_i) - phi(v_i^b) = dr_i - (phi(v^ff + z^b) -
        phi(v^ff))``, or ``z_i - z_i^b`` (times ``phi'(v_i^ff)``).

        Args:
            y: the state just evaluated by ``F.nonlinear``.
            out: per-layer outputs [B, n_i].
        """
        F, taus = self.F, self.F.taus
        z = F.voltages(y)
        for i in range(F.L):
            if self.rule == "nonlinear_difference":
                if i == 0:  # the basal input of layer 1 is the feedforward one
                    out[0].copy_(F.dr[0])
                    continue
                torch.mul(F.vbs[i], taus[i], out=self.tmp[i])
                F.inc[i](self.tmp[i], out[i], F.work[i])
                torch.sub(F.dr[i], out[i], out=out[i])
            else:
                torch.sub(z[i], F.vbs[i], alpha=taus[i], out=out[i])
                if self.dprime_ff:
                    out[i].mul_(self.dprime_ff[i])

    def flush(self, dead: torch.Tensor | None) -> None:
        """Add the filled slots to the sums (the rows of the frozen samples ``dead`` dropped).

        Args:
            dead: frozen samples [B] (bool), or None.
        """
        self.sums.flush(0, self.fill, dead)
        self.fill = 0

    def open_step(
        self, r: list[torch.Tensor], d: list[torch.Tensor], h: float, dead: torch.Tensor | None
    ) -> int:
        """Start a step of size ``h`` from the point whose rates ``r`` and signal ``d`` are
        known (first-same-as-last); returns the slot where the step starts (a rejected step
        goes back to it).

        Args:
            r: rates at the step's start.
            d: the rule's signal there.
            h: the step.
            dead: frozen samples (for a flush of a full chunk), or None.
        """
        if not self.on:
            return self.fill
        if self.fill + PER_STEP > self.cap:
            self.flush(dead)
        start = self.fill
        for i in range(self.F.L):
            self.sums.rates[i][self.fill].copy_(r[i])
            torch.mul(d[i], h / 6, out=self.sums.signals[i][self.fill])
        self.fill += 1
        return start

    def point(self, y: torch.Tensor, out_K: torch.Tensor, weight: float) -> None:
        """``N(y)`` into ``out_K``; with a rule, the weighted signal into the next slot.

        Args:
            y: a stage state.
            out_K: the output [B, S].
            weight: the quadrature weight of the point.
        """
        F = self.F
        if not self.on:
            F.nonlinear(y, None, out_K)
            return
        k = self.fill
        F.nonlinear(y, [self.sums.rates[i][k] for i in range(F.L)], out_K)
        outs = [self.sums.signals[i][k] for i in range(F.L)]
        self.signal(y, outs)
        for o in outs:
            o.mul_(weight)
        self.fill += 1


class ETDRK4Step:
    """The state ``y`` with ``N(y)`` (``Nu``), its rates and signal (first-same-as-last), and
    the buffers of one step: :meth:`attempt` fills ``y_new`` (ETDRK4) and ``y2`` (the error
    estimate), :meth:`evaluate_new` ``N(y_new)`` (``Nn``), :meth:`advance` swaps them in.

    Args:
        F: the closed loop in deviation form.
        quad: the rule's quadrature (its slots receive the stages' rates).
    """

    def __init__(self, F: SplitField, quad: Quadrature) -> None:
        self.F, self.quad = F, quad
        B, S = F.r_target.shape[0], F.S
        like = F.r_target

        def buf(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=like.dtype, device=like.device)

        self.P_r, self.P_d = [buf(B, n) for n in F.sizes], [buf(B, n) for n in F.sizes]
        self.Pn_r, self.Pn_d = [buf(B, n) for n in F.sizes], [buf(B, n) for n in F.sizes]
        self.Nu, self.Na, self.Nb, self.Nc, self.Nn = (buf(B, S) for _ in range(5))
        self.ya, self.yb, self.yc, self.y_new, self.y2 = (buf(B, S) for _ in range(5))
        self.y = F.initial_state()
        F.nonlinear(self.y, self.P_r, self.Nu)
        if quad.on:
            quad.signal(self.y, self.P_d)

    def attempt(self, h: float, dead: torch.Tensor | None) -> int:
        """One step ``h`` from ``y``: ``y_new`` and the error estimate ``y2``; returns the
        quadrature slot where the step starts.

        Args:
            h: the step.
            dead: frozen samples (for a flush of a full chunk), or None.
        """
        co = self.F.coefficients(h)
        start = self.quad.open_step(self.P_r, self.P_d, h, dead)
        y, Nu, Na, Nb, Nc = self.y, self.Nu, self.Na, self.Nb, self.Nc
        ya, yb, yc, y_new, y2 = self.ya, self.yb, self.yc, self.y_new, self.y2
        # a = E2 y + q1 Nu ; b = E2 y + q1 Na ; c = E2 a + q1 (2 Nb - Nu)
        torch.mul(y, co["E2"], out=ya)
        torch.mul(y, co["E2"], out=yb)
        ya.addcmul_(Nu, co["q1"])
        self.quad.point(ya, Na, h / 3)
        yb.addcmul_(Na, co["q1"])
        self.quad.point(yb, Nb, h / 3)
        torch.mul(ya, co["E2"], out=yc)
        torch.sub(Nb, Nu, alpha=0.5, out=Nc)  # Nc as scratch: Nb - Nu/2
        yc.addcmul_(Nc, co["q1"], value=2.0)
        self.quad.point(yc, Nc, h / 6)
        # y_new = E y + f1 Nu + f2 (Na + Nb) + f3 Nc ; y2 = E y + h p1 Nu + h p2 (Nc - Nu)
        torch.mul(y, co["E"], out=y_new)
        y_new.addcmul_(Nu, co["f1"])
        torch.add(Na, Nb, out=ya)
        y_new.addcmul_(ya, co["f2"])
        y_new.addcmul_(Nc, co["f3"])
        torch.mul(Nu, co["g1"], out=y2)  # error estimate: ETD2RK - ETDRK4
        y2.addcmul_(ya, co["g2"])
        y2.addcmul_(Nc, co["g3"])
        return start

    def evaluate_new(self) -> None:
        """``N(y_new)`` into ``Nn`` with its rates and signal (sets ``F.e``, ``F.u``)."""
        self.F.nonlinear(self.y_new, self.Pn_r, self.Nn)
        if self.quad.on:
            self.quad.signal(self.y_new, self.Pn_d)

    def advance(self) -> None:
        """Accept the step: ``y_new`` becomes ``y`` (the buffers are swapped)."""
        self.y, self.y_new = self.y_new, self.y
        self.Nu, self.Nn = self.Nn, self.Nu
        self.P_r, self.Pn_r = self.Pn_r, self.P_r
        self.P_d, self.Pn_d = self.Pn_d, self.P_d
        self.quad.points += PER_STEP if self.quad.on else 0


class ErrorNorm:
    """The error ratio of a step: ``max`` over the blocks of ``|err| / (atol + rtol
    max(|z_n|, |z_new|))`` (block 2-norms over the batch and the block's columns).

    Args:
        F: the closed loop in deviation form.
        rtol: relative tolerance.
        atol: absolute tolerance.
    """

    def __init__(self, F: SplitField, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol
        L, N, S, device = F.L, F.N, F.S, F.D.device
        # error-norm blocks: each layer's voltages, each layer's apical voltages, controller
        bounds = [(F.offs[i], F.offs[i + 1]) for i in range(L)]
        if F.apical:
            bounds += [(N + F.offs[i], N + F.offs[i + 1]) for i in range(L)]
        c0 = S - F.n_ctrl * F.nL  # each controller state entry (PI: u_int)
        bounds += [(c0 + k * F.nL, c0 + (k + 1) * F.nL) for k in range(F.n_ctrl)]
        self.block_of = torch.empty(S, dtype=torch.long, device=device)
        for k, (lo, hi) in enumerate(bounds):
            self.block_of[lo:hi] = k
        self.n_blocks = len(bounds)
        self.dtype, self.device = F.r_target.dtype, device
        self.z_n = torch.zeros(self.n_blocks, dtype=self.dtype, device=device)
        self.z_new = self.z_n

    def block_norms(self, z: torch.Tensor) -> torch.Tensor:
        """The 2-norm of each block of ``z`` [B, S].

        Args:
            z: a state or error estimate.
        """
        col = torch.linalg.vector_norm(z, dim=0)
        sq = torch.zeros(self.n_blocks, dtype=self.dtype, device=self.device)
        return sq.index_add_(0, self.block_of, col.square_()).sqrt_()

    def ratio(self, step: ETDRK4Step, freeze: Freezer) -> float:
        """The error ratio of ``step``'s attempt (<= 1: accept); the frozen samples' rows are
        held at ``y`` and kept out of the estimate, and samples that overflowed are frozen at
        their last (finite) state (rows are independent) instead of shrinking ``h`` forever.

        Args:
            step: the attempted step.
            freeze: the frozen samples.
        """
        en = self._ratio(step, freeze)
        if not math.isfinite(en):
            bad = ~(torch.isfinite(step.y_new).all(1) & torch.isfinite(step.y2).all(1))
            if freeze.mark(bad, True):
                en = self._ratio(step, freeze)
        return en

    def _ratio(self, step: ETDRK4Step, freeze: Freezer) -> float:
        if freeze.any_dead:
            dead = freeze.dead
            step.y_new[dead] = step.y[dead]
            step.y2[dead] = 0.0
        self.z_new = self.block_norms(step.y_new)
        r = self.block_norms(step.y2) / (
            self.atol + self.rtol * torch.maximum(self.z_n, self.z_new)
        )
        return float(r.max())

    def accept(self) -> None:
        """The accepted step's deviation norms become the reference of the next step."""
        self.z_n = self.z_new
