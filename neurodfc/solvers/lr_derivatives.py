"""Local derivatives of a linearised loop shared by the linear-response solver's closed forms,
its estimate and its quadrature: the rule's slope and ``phi''`` at the feedforward state."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from neurodfc.components.neurons import NeuronLayer
from neurodfc.increments import RateIncrement

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


def increment(lay: NeuronLayer, a: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``z -> phi(a + z) - phi(a)`` to a few ulp of the increment itself, not of ``phi``: the
    secants divide it by ``z`` and the remainders subtract ``phi' z`` from it, and at
    ``|z| = 1e-9`` (a well-learned sample's deviation) ``phi(a + z) - phi(a)`` as written keeps
    7 digits, enough to send such samples to the fallback solver.

    Args:
        lay: a layer (built in: the identities of :mod:`neurodfc.increments` with float64
            ``tanh`` to relative accuracy; custom: its own ``increment``).
        a: the voltages of expansion (a shape that broadcasts to every ``z``'s).
    """
    act = getattr(lay, "activation", None)
    if act is None:
        return lambda z: lay.increment(torch.broadcast_to(a, z.shape))(z, torch.empty_like(z), None)
    inc = RateIncrement(act, a, relative=True)
    return lambda z: inc(z, torch.empty_like(z))
