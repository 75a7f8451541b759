"""Pieces of adaptive time stepping shared by the solvers: the step-size controller and the
dense output at requested recording times."""

from __future__ import annotations

import torch


def next_step(h: float, ratio: float) -> float:
    """The step-size controller: the next step after a step ``h`` whose error ratio (error /
    tolerance) was ``ratio`` -- ``h * clip(0.9 ratio^(-1/3), 0.2, 4)`` (the error estimate is
    of order 2).

    Args:
        h: the step just attempted.
        ratio: its error ratio (<= 1: accepted).
    """
    fac = 0.9 * max(ratio, 1e-10) ** (-1.0 / 3.0)
    return h * min(4.0, max(0.2, fac))


def hermite(
    y0: torch.Tensor, f0: torch.Tensor, y1: torch.Tensor, f1: torch.Tensor, h: float, th: float
) -> torch.Tensor:
    """Cubic Hermite interpolation (third order) at ``t0 + th h`` between the states ``y0``,
    ``y1`` with derivatives ``f0``, ``f1`` at the ends of a step ``h`` (dense output at the
    requested recording times).

    Args:
        y0: state at the start of the step.
        f0: its derivative.
        y1: state at the end of the step.
        f1: its derivative.
        h: the step.
        th: the fraction of the step, in [0, 1].
    """
    return (
        (2 * th**3 - 3 * th**2 + 1) * y0
        + (th**3 - 2 * th**2 + th) * h * f0
        + (-2 * th**3 + 3 * th**2) * y1
        + (th**3 - th**2) * h * f1
    )
