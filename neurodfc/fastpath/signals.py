"""The forward rule's teaching signal ``d_i`` of each new state, written into the slot buffers
of the trajectory accumulator; the rule-signal test of early termination.

For ``nonlinear_difference`` on a tanh layer the signal is ``tanh(v) - tanh(v_b) =
2 (sigmoid(2 v) - sigmoid(2 v_b))``: the halves are stored (``sigmoid(2 v)`` comes out of the
layer's rate update) and the factor 2 is applied once to the sums (:attr:`TeachingSignals.scale`).
Any other rule goes through :func:`neurodfc.core.teaching.teaching_signal_into`.
"""

from __future__ import annotations

import torch

from neurodfc.components.neurons import RateNeurons
from neurodfc.core.teaching import teaching_signal_into
from neurodfc.fastpath.buffers import FusedBuffers
from neurodfc.fastpath.settings import EARLY_STOP_RATE


class TeachingSignals:
    """The signal of ``rule`` per layer, and what it needs from the feedforward state.

    Args:
        b: the run's buffers (network, feedforward voltages, slots).
        rule: the forward rule (``nonlinear_difference``, ``linear_difference``,
            ``derivative_matrix``, ...).
    """

    def __init__(self, b: FusedBuffers, rule: str) -> None:
        self.rule = rule
        acts = b.acts
        self.layers = [RateNeurons(a) for a in acts]
        self.nonlinear = rule == "nonlinear_difference"
        self.scale = [1.0] * b.L
        """Factor of each layer's sums (2 on a tanh layer of ``nonlinear_difference``)."""
        self.dprime_ff: list[torch.Tensor] = []
        self.half_b0: torch.Tensor | None = None
        if self.nonlinear:
            self.scale = [2.0 if a == "tanh" else 1.0 for a in acts]
            drive0 = b.drive0
            tanh0 = acts[0] == "tanh"
            self.half_b0 = torch.sigmoid(2.0 * drive0) if tanh0 else b.net.act(0, drive0)
        elif rule == "derivative_matrix":
            self.dprime_ff = [b.net.act_prime(i, b.v_ff[i]) for i in range(b.L)]
        self.d_prev = [torch.zeros_like(t) for t in b.v_ff]

    def into(self, b: FusedBuffers, i: int, slot: int) -> None:
        """``d_i`` of the new state (rates in ``slot``) into ``b.slot_d[i][slot]``.

        Args:
            b: the run's buffers.
            i: layer (0-based).
            slot: rate slot of the new state.
        """
        out = b.slot_d[i][slot]
        if self.nonlinear:
            tanh = b.acts[i] == "tanh"
            if i == 0:
                assert self.half_b0 is not None
                hb: torch.Tensor = self.half_b0
            elif tanh:
                hb = b.tmp[i]
                torch.mul(b.vb[i], 2.0, out=hb)
                torch.sigmoid(hb, out=hb)
            else:
                hb = b.net.act(i, b.vb[i])
            torch.sub(b.half[i] if tanh else b.slot_r[i][slot], hb, out=out)
        else:
            dphi = self.dprime_ff[i] if self.dprime_ff else None
            teaching_signal_into(
                self.layers[i], self.rule, b.v[i], b.vb[i], b.slot_r[i][slot], out, dphi
            )

    def settled(self, b: FusedBuffers, chunk: int) -> bool:
        """Whether every layer's signal (last slot) moved by less than ``EARLY_STOP_RATE``
        (relative) per step since the last check; remembers the current signals.

        Args:
            b: the run's buffers.
            chunk: steps since the last check.
        """
        ok = True
        for i in range(b.L):
            d_now = b.slot_d[i][-1]
            change = float(torch.linalg.vector_norm(d_now - self.d_prev[i]))
            size = float(torch.linalg.vector_norm(d_now))
            ok &= change <= EARLY_STOP_RATE * chunk * size
            self.d_prev[i].copy_(d_now)
        return ok
