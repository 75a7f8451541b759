"""Per-sample freezing of diverging samples, shared by the adaptive solvers.

A sample whose state becomes non-finite, or whose divergence ratio
``|r_L - (r_L* - alpha u_leak)| / |r_L^-|`` passes its limit, is frozen: the solver stops
moving it (ETDRK4 holds its last finite state, torchdiffeq zeroes its derivative), leaves it
out of the error norm and of the rule's integral, and reports it. A diverging sample would
otherwise force ever smaller steps on the whole batch. The limit of each sample is the larger
of a fixed ratio and a multiple of its initial ratio (a far target alone starts with a large
ratio).
"""

from __future__ import annotations

import torch


def freeze_limit(
    r_out_ff: torch.Tensor, delta: torch.Tensor, ratio: float, growth: float
) -> torch.Tensor:
    """The per-sample limit on ``|r_L - (r_L* - alpha u_leak)|``: the ratio must pass ``ratio``
    and grow ``growth``-fold over its initial value ``|delta| / |r_L^-|``.

    Args:
        r_out_ff: the feedforward output rates ``r_L^-`` [B, n_L].
        delta: the initial output error ``r_L* - r_L^-`` [B, n_L].
        ratio: the smallest divergence ratio that freezes a sample.
        growth: the growth over the initial ratio that must also be reached.

    Returns:
        The limit [B] on the norm of ``r_L - (r_L* - alpha u_leak)``.
    """
    r_ff_norm = torch.linalg.vector_norm(r_out_ff, dim=1)
    ratio0 = torch.linalg.vector_norm(delta, dim=1) / r_ff_norm
    return torch.clamp(growth * ratio0, min=ratio) * r_ff_norm


class Freezer:
    """The frozen samples of one batch: ``dead`` [B] (bool; frozen), ``overflowed`` (frozen
    because non-finite), ``any_dead`` (whether any sample is frozen).

    Args:
        freeze_at: the per-sample limit (:func:`freeze_limit`) [B].
    """

    def __init__(self, freeze_at: torch.Tensor) -> None:
        self.freeze_at = freeze_at
        self.dead = torch.zeros(freeze_at.shape[0], dtype=torch.bool, device=freeze_at.device)
        self.overflowed = torch.zeros_like(self.dead)
        self.any_dead = False

    def mark(self, bad: torch.Tensor, overflow: bool) -> bool:
        """Freeze the samples ``bad`` [B] that are not frozen yet; returns whether there were
        any.

        Args:
            bad: the samples to freeze [B] (bool).
            overflow: report them non-finite (``overflowed``).
        """
        bad = bad & ~self.dead
        if bool(bad.any()):
            self.dead |= bad
            if overflow:
                self.overflowed |= bad
            self.any_dead = True
            return True
        return False

    def divergence(self, e: torch.Tensor, u_leak: torch.Tensor, alpha: float) -> None:
        """Freeze the samples whose ``|e - alpha u_leak|`` passes their limit.

        Args:
            e: the output error ``r_L* - r_L`` [B, n_L].
            u_leak: the leaked control signal (``u``, or ``u_int`` for the paper's leak).
            alpha: the controller leak.
        """
        far = torch.linalg.vector_norm(e - alpha * u_leak, dim=1) > self.freeze_at
        self.mark(far, False)

    def dead_or_none(self) -> torch.Tensor | None:
        """``dead`` when a sample is frozen, else None."""
        return self.dead if self.any_dead else None

    def overflowed_or_none(self) -> torch.Tensor | None:
        """``overflowed`` when a sample overflowed, else None."""
        return self.overflowed if bool(self.overflowed.any()) else None
