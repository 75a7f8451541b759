"""The trajectory accumulator of the forward rules, written once for every solver.

A simulation sums the teaching signal over its time points (the reference scheme) or its
quadrature points (ETDRK4, the Runge-Kutta weights folded into ``d``)::

    W_i = sum_k d_i[k]^T r_{i-1}[k]   [n_i, n_{i-1}],        b_i = sum_k sum_b d_i[k]   [n_i]

Summing one product per point is slow; :class:`ChunkedSums` keeps the rates ``r_i`` and signals
``d_i`` of a chunk of points in slot buffers (the solver writes its state's rates straight into
them) and adds a whole chunk with one ``[n_i, K B] @ [K B, n_{i-1} + 1]`` product per layer: the
presynaptic rates carry a column of ones, so the same product yields the bias sums. Layer 1's
input ``r_0`` is constant: its ``d_1`` is summed over the points and multiplied by ``r_0`` once.
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
    """

    def __init__(
        self, sizes: list[int], batch: int, slots: int, accumulate: bool, like: torch.Tensor
    ) -> None:
        self.sizes = sizes
        self.L = L = len(sizes)
        self.accumulate = accumulate
        dt, dev = like.dtype, like.device
        ones = [accumulate and i < L - 1 for i in range(L)]
        self.R_full = [
            torch.empty((slots, batch, n + int(ones[i])), dtype=dt, device=dev)
            for i, n in enumerate(sizes)
        ]
        for i in range(L):
            if ones[i]:
                self.R_full[i][..., -1] = 1.0
        self.rates = [[self.R_full[i][k, :, :n] for k in range(slots)] for i, n in enumerate(sizes)]
        self.D = (
            [torch.empty((slots, batch, n), dtype=dt, device=dev) for n in sizes]
            if accumulate
            else []
        )
        self.signals = [[D[k] for k in range(slots)] for D in self.D]
        self.acc_d1 = torch.zeros((batch, sizes[0]), dtype=dt, device=dev)
        self.acc_aug = [torch.zeros((sizes[0], 1), dtype=dt, device=dev)] + [
            torch.zeros((sizes[i], sizes[i - 1] + 1), dtype=dt, device=dev) for i in range(1, L)
        ]

    def flush(self, lo: int, hi: int, dead: torch.Tensor | None = None) -> None:
        """Add slots ``lo..hi-1`` to the sums; the rows of ``dead`` samples [B] (bool) are
        zeroed first (they contribute nothing)."""
        if hi <= lo:
            return
        if dead is not None:
            for i in range(self.L):
                self.D[i][lo:hi, dead] = 0.0
                self.R_full[i][lo:hi, dead] = 0.0
        self.acc_d1.add_(self.D[0][lo:hi].sum(0))
        for i in range(1, self.L):
            Di = self.D[i][lo:hi].reshape(-1, self.sizes[i])
            Ri = self.R_full[i - 1][lo:hi].reshape(-1, self.R_full[i - 1].shape[-1])
            self.acc_aug[i].addmm_(Di.t(), Ri)

    def add_repeated(self, d_slot: int, r_slot: int, times: int) -> None:
        """Add the signals of slot ``d_slot`` paired with the rates of slot ``r_slot``,
        ``times`` times (a state that stays where it is, in closed form)."""
        self.acc_d1.add_(self.signals[0][d_slot], alpha=times)
        for i in range(1, self.L):
            r = self.R_full[i - 1][r_slot]
            self.acc_aug[i].addmm_(self.signals[i][d_slot].t(), r, alpha=times)

    def totals(
        self, x: torch.Tensor, scale: list[float] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(W, b)`` per layer: the sums so far, layer 1 paired with the input ``x`` [B, n_0];
        ``scale`` multiplies each layer's sums (None: 1)."""
        W = [self.acc_d1.t() @ x] + [a[:, :-1] for a in self.acc_aug[1:]]
        b = [self.acc_d1.sum(0)] + [a[:, -1] for a in self.acc_aug[1:]]
        for i, s in enumerate(scale or []):
            if s != 1.0:
                W[i] = W[i] * s
                b[i] = b[i] * s
        return W, b
