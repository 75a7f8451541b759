"""Filters of the closed loop's signals (Strong-DFC's high-pass filtered control)."""

from __future__ import annotations

import torch


class LowPass:
    """Exponential low-pass ``y[0] = x[0]``, ``y[k] = a x[k] + (1 - a) y[k-1]``, ``a = dt/tau``
    (the successor's filter of ``u`` with time constant ``tau_f``). Streaming: :meth:`step`
    takes one sample and returns the filtered value (a tensor updated in place); the high-pass
    ``x - LP(x)`` removes a constant input exactly.

    Args:
        dt: time step (units of tau_u).
        tau: time constant, ``tau >= dt > 0``.
    """

    def __init__(self, dt: float, tau: float) -> None:
        if not 0 < dt <= tau:
            raise ValueError(f"the low-pass needs 0 < dt <= tau, got dt = {dt}, tau = {tau}")
        self.a = dt / tau
        self.y: torch.Tensor | None = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Filter one sample ``x`` (any shape); returns ``y[k]``."""
        if self.y is None:
            self.y = x.clone()
        else:
            # y += a (x - y): the same recursion, and exactly stationary for a constant input
            self.y.add_(x - self.y, alpha=self.a)
        return self.y
