"""The trajectory accumulator of the forward rules, written once for every solver.

A simulation sums the teaching signal over its time points (the reference scheme) or its
quadrature points (ETDRK4, the Runge-Kutta weights folded into ``d``)::

    W_i = sum_k d_i[k]^T r_{i-1}[k]   [n_i, n_{i-1}],        b_i = sum_k sum_b d_i[k]   [n_i]

Summing one product per point is slow; :class:`ChunkedSums` keeps the rates ``r_i`` and signals
``d_i`` of a chunk of points in slot buffers (the solver writes its state's rates straight into
them; each slot is a contiguous ``[B, n_i]`` block) and adds a whole chunk with one
``[n_i, K B] @ [K B, n_{i-1}]`` product per layer and one sum of ``d_i`` over the chunk for the
bias. Layer 1's input ``r_0`` is constant: its ``d_1`` is summed over the points and multiplied
by ``r_0`` once.

An ensemble (:mod:`neurodfc.solvers.ensemble`) adds a leading member dimension ``lead = (M,)``
to every buffer and sum; the chunk products become batched products, one per member.
"""

from __future__ import annotations

import torch


class ChunkedSums:
    """Slot buffers for ``slots`` points of rates (``rates[i][k]`` [B, n_i]) and, with
    ``accumulate``, signals (``signals[i][k]``), and the running sums.

    Args:
        sizes: layer sizes ``n_1..n_L``.
        batch: batch size ``B``.
        slots: points per chunk.
        accumulate: whether signals are summed (else only the rate slots exist).
        like: a tensor giving the dtype and device.
        lead: leading dimensions of every buffer and sum (``(M,)``: an ensemble of M members;
            default none).
    """

    def __init__(
        self,
        sizes: list[int],
        batch: int,
        slots: int,
        accumulate: bool,
        like: torch.Tensor,
        lead: tuple[int, ...] = (),
    ) -> None:
        self.sizes = sizes
        self.L = L = len(sizes)
        self.accumulate = accumulate
        self.lead = lead
        dt, dev = like.dtype, like.device
        self.R = [torch.empty((*lead, slots, batch, n), dtype=dt, device=dev) for n in sizes]
        self.rates = [[R[..., k, :, :] for k in range(slots)] for R in self.R]
        self.D = (
            [torch.empty((*lead, slots, batch, n), dtype=dt, device=dev) for n in sizes]
            if accumulate
            else []
        )
        self.signals = [[D[..., k, :, :] for k in range(slots)] for D in self.D]
        self.acc_d1 = torch.zeros((*lead, batch, sizes[0]), dtype=dt, device=dev)
        self.acc_W = [torch.zeros((*lead, sizes[0], 0), dtype=dt, device=dev)] + [
            torch.zeros((*lead, sizes[i], sizes[i - 1]), dtype=dt, device=dev) for i in range(1, L)
        ]
        self.acc_b = [torch.zeros((*lead, n), dtype=dt, device=dev) for n in sizes]

    def flush(self, lo: int, hi: int, dead: torch.Tensor | None = None) -> None:
        """Add slots ``lo..hi-1`` to the sums; the rows of ``dead`` samples [B] (bool) are
        zeroed first (they contribute nothing)."""
        if hi <= lo:
            return
        if dead is not None:
            assert not self.lead, "per-sample freezing is not batched over members"
            for i in range(self.L):
                self.D[i][lo:hi, dead] = 0.0
                self.R[i][lo:hi, dead] = 0.0
        lead = self.lead
        self.acc_d1.add_(self.D[0][..., lo:hi, :, :].sum(-3))
        for i in range(1, self.L):
            Di = self.D[i][..., lo:hi, :, :].reshape(*lead, -1, self.sizes[i])
            Ri = self.R[i - 1][..., lo:hi, :, :].reshape(*lead, -1, self.sizes[i - 1])
            if lead:
                self.acc_W[i].baddbmm_(Di.transpose(-1, -2), Ri)
            else:
                self.acc_W[i].addmm_(Di.t(), Ri)
            self.acc_b[i].add_(Di.sum(-2))

    def add_repeated(self, d_slot: int, r_slot: int, times: int) -> None:
        """Add the signals of slot ``d_slot`` paired with the rates of slot ``r_slot``,
        ``times`` times (a state that stays where it is, in closed form)."""
        assert not self.lead, "early termination is not batched over members"
        self.acc_d1.add_(self.signals[0][d_slot], alpha=times)
        for i in range(1, self.L):
            d = self.signals[i][d_slot]
            self.acc_W[i].addmm_(d.t(), self.rates[i - 1][r_slot], alpha=times)
            self.acc_b[i].add_(d.sum(0), alpha=times)

    def totals(
        self, x: torch.Tensor, scale: list[float] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(W, b)`` per layer: the sums so far, layer 1 paired with the input ``x``
        [*lead, B, n_0]; ``scale`` multiplies each layer's sums (None: 1)."""
        W = [self.acc_d1.transpose(-1, -2) @ x, *self.acc_W[1:]]
        b = [self.acc_d1.sum(-2), *self.acc_b[1:]]
        for i, s in enumerate(scale or []):
            if s != 1.0:
                W[i] = W[i] * s
                b[i] = b[i] * s
        return W, b
