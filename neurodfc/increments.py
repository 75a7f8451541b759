"""Rate increments ``phi(a + z) - phi(a)`` without cancellation.

The simulation paths integrate the deviation ``z = v - v^ff`` of every voltage from its
feedforward value instead of ``v`` itself: at the paper's settings the controller moves the
voltages by ~1e-4 of their size, so in float32 a state ``v`` would carry rounding errors
(~6e-8 |v|) of the size of the signal, and the integral controller would integrate the rounding
of ``r_L`` like a real output error (float32 DFC updates then differ from float64 by 50-180 %).
With ``z`` as the state, every quantity the dynamics and the learning rules need is a small
difference computed directly:

* ``r - r^ff = phi(v^ff + z) - phi(v^ff)`` by the identities below (relative accuracy of a few
  ulp of the increment itself, not of ``phi``);
* the output error ``e = r_L* - r_L = (r_L* - r_L^ff) - (r_L - r_L^ff)``;
* the basal deviation ``W_i r_{i-1} - W_i r_{i-1}^ff = W_i (r_{i-1} - r_{i-1}^ff)``.

Identities (``a`` fixed per sample, computed once per batch):

* ``tanh``: ``tanh(a + z) - tanh(a) = tanh(z) sech^2(a) / (1 + tanh(a) tanh(z))``;
* ``sigmoid``: ``s(a + z) - s(a) = s(a + z) s(-a) (1 - exp(-z))`` (``-expm1(-z)``);
* ``relu``: ``max(z, -a)`` where ``a > 0``, else ``max(a + z, 0)``;
* ``linear``: ``z``.

Each is accurate to a few ulp of the increment (float64 tanh: to ~eps absolute, see
:meth:`RateIncrement.__call__`); the tanh identity loses digits only where
``1 + tanh(a) tanh(z)`` is small (``a`` and ``z`` large and of opposite sign: a deviation of
order one, far from the regime it is needed for), the relu branch ``a <= 0 < a + z`` to an
absolute ``eps |a|`` (``tests/unit/test_increments.py``, against 50-digit arithmetic).
"""

from __future__ import annotations

import torch


def fast_tanh(v: torch.Tensor, out: torch.Tensor, half: torch.Tensor | None = None) -> None:
    """``out = tanh(v) = 2 sigmoid(2 v) - 1`` (torch's float64 ``tanh`` is not vectorised on
    CPU: about 4x slower than ``sigmoid``); agrees with ``torch.tanh`` to a few ulp.

    Args:
        v: voltages (any shape).
        out: output buffer shaped like ``v``.
        half: optional buffer that receives ``sigmoid(2 v)`` as well.
    """
    s = half if half is not None else out
    torch.mul(v, 2.0, out=s)
    torch.sigmoid(s, out=s)
    torch.add(_minus_one(out), s, alpha=2.0, out=out)


_MINUS_ONE: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _minus_one(like: torch.Tensor) -> torch.Tensor:
    key = (like.dtype, like.device)
    t = _MINUS_ONE.get(key)
    if t is None:
        t = _MINUS_ONE[key] = torch.tensor(-1.0, dtype=like.dtype, device=like.device)
    return t


class RateIncrement:
    """``phi(a + z) - phi(a)`` for a fixed ``a`` [B, n] (one layer's feedforward voltage).

    Args:
        act: activation name (``tanh``, ``sigmoid``, ``relu``, ``linear``).
        a: the fixed point of expansion ``v^ff`` [B, n] (or any shape ``z`` broadcasts with).
        relative: float64 ``tanh`` to a few ulp of the increment itself (``torch.tanh``, about
            2.5x slower than the default's ``2 sigmoid(2 z) - 1``, which is accurate to ~eps
            absolute: enough for a state, not for remainders of size ``z^2``).
    """

    def __init__(self, act: str, a: torch.Tensor, relative: bool = False) -> None:
        if act not in ("tanh", "sigmoid", "relu", "linear"):
            raise ValueError(f"no rate increment for activation {act!r}")
        self.act = act
        self.a = a
        self.relative = relative
        if act == "tanh":
            self.tanh_a = torch.tanh(a)
            # sech^2(a) = 4 s(2a) s(-2a): no cancellation where |tanh(a)| -> 1
            self.sech2_a = 4.0 * torch.sigmoid(2.0 * a) * torch.sigmoid(-2.0 * a)
        elif act == "sigmoid":
            self.sig_neg_a = torch.sigmoid(-a)
        elif act == "relu":
            self.pos = a > 0
            self.neg_a = -a

    def __call__(
        self, z: torch.Tensor, out: torch.Tensor, work: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``out = phi(a + z) - phi(a)`` [B, n]; ``work`` is a scratch buffer of the same shape
        (allocated when omitted). ``out`` must not alias ``z``."""
        if self.act == "linear":
            return out.copy_(z)
        if work is None:
            work = torch.empty_like(z)
        if self.act == "tanh":
            if z.dtype == torch.float64 and not self.relative:
                # 2 sigmoid(2 z) - 1: 2.5x faster than torch's float64 tanh on CPU, absolute
                # error ~eps (as a state-based formulation); float32 needs the relative accuracy
                fast_tanh(z, work)
            else:
                torch.tanh(z, out=work)
            torch.mul(work, self.tanh_a, out=out)
            out.add_(1.0)
            torch.div(work, out, out=out)
            return out.mul_(self.sech2_a)
        if self.act == "sigmoid":
            torch.add(self.a, z, out=work)
            torch.sigmoid(work, out=work)
            torch.neg(z, out=out)
            torch.expm1(out, out=out)
            out.neg_()
            out.mul_(work)
            return out.mul_(self.sig_neg_a)
        # relu
        torch.maximum(z, self.neg_a, out=work)
        torch.add(self.a, z, out=out)
        out.clamp_(min=0.0)
        return torch.where(self.pos, work, out, out=out)


def rate_increments(acts: list[str], v_ff: list[torch.Tensor]) -> list[RateIncrement]:
    """One :class:`RateIncrement` per layer.

    Args:
        acts: activation name of each layer.
        v_ff: feedforward voltages ``v_i^ff`` [B, n_i] of each layer.
    """
    return [RateIncrement(a, v) for a, v in zip(acts, v_ff, strict=True)]
