"""Local derivatives of a linearised loop shared by the linear-response solver's closed forms,
its estimate and its quadrature: the rule's slope and ``phi''`` at the feedforward state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from neurodfc.solvers.linear_response import _Linearised


def rule_slope(lin: _Linearised, rule: str | None, i: int) -> torch.Tensor | None:
    """The slope ``D_i^rule`` [B, n_i] of the teaching signal ``d_i = D_i^rule s_i`` of layer
    ``i`` (None: ``d_i = s_i``).

    Args:
        lin: the linearised loop.
        rule: the forward rule: ``nonlinear_difference`` (the secant through the fixed point),
            ``derivative_matrix`` (``phi'(v^-)``, exact) or ``voltage_difference`` / None.
        i: the layer (0-based).
    """
    if rule == "nonlinear_difference":
        return lin.D_rule[i]
    if rule == "derivative_matrix":
        return lin.D_tan[i]
    return None


def second_derivative(lin: _Linearised) -> list[torch.Tensor]:
    """``phi''(v^-)`` per layer [B, n_i] by a central difference of ``phi'`` (0 for a linear
    layer; a custom nonlinearity needs only ``phi'``).

    Args:
        lin: a linearised loop.
    """
    out = []
    for lay, v in zip(lin.loop.layers, lin.loop.v_ff, strict=True):
        h = 1e-4 * (1.0 + v.abs())
        out.append((lay.phi_prime(v + h) - lay.phi_prime(v - h)) / (2 * h))
    return out
