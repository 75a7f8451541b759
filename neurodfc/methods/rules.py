"""Forward plasticity rules at a (steady) state, shared by DFC-SS, DFC-SSA and MN.

The teaching signal itself is defined once, in :mod:`neurodfc.core.teaching`. Given per-layer
voltage changes ``dv_i`` on top of the basal input ``v_i^ff = W_i r_{i-1} + b_i``
computed from presynaptic rates ``r_{i-1}``, the teaching signal is

* ``nonlinear_difference`` (paper eq. 5): ``phi(v^ff + dv) - phi(v^ff)``
* ``voltage_difference`` (eq. 9): ``dv``
* ``derivative_matrix`` (reference option): ``phi'(v^-) dv`` with ``v^-`` the feedforward voltage

and the gradient (the reference code's scaling, ``W <- W - lr grad``) is
``grad W_i = -2/B sum_b d_i r_{i-1}^T``, ``grad b_i = -2/B sum_b d_i``.
"""

from __future__ import annotations

import torch

from neurodfc.components.neurons import RateNeurons
from neurodfc.core.teaching import teaching_signal as core_signal
from neurodfc.network import DFCNetwork


def teaching_signal(
    net: DFCNetwork,
    i: int,
    v_basal: torch.Tensor,
    dv: torch.Tensor,
    rule: str,
    v_ff: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rule's teaching signal ``d_i`` [B, n_i] of layer ``i`` of ``net``: the core's
    :func:`neurodfc.core.teaching.teaching_signal` (the one definition) for the network's
    neurons.

    Args:
        net: the network (its activation ``phi_i`` and derivative ``phi_i'``).
        i: layer index, 0-based (the paper's layer ``i + 1``).
        v_basal: basal voltage ``v_i^ff = W_i r_{i-1} + b_i`` [B, n_i].
        dv: voltage change ``dv_i`` [B, n_i] on top of ``v_basal``.
        rule: ``nonlinear_difference``, ``voltage_difference`` or ``derivative_matrix``
            (``method.rule``).
        v_ff: feedforward voltage ``v_i^-`` [B, n_i]; needed by ``derivative_matrix`` only.
    """
    return core_signal(RateNeurons(net.act_names[i]), v_basal, dv, rule, v_ff)


def steady_state_gradients(
    net: DFCNetwork,
    dv: list[torch.Tensor],
    r_prev: list[torch.Tensor],
    rule: str,
    v_ff: list[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(grad_W, grad_b)`` of the rule at one state (see the module docstring).

    Args:
        net: the network (weights, biases, activations); never modified.
        dv: per-layer voltage changes ``dv_i`` [B, n_i]; a sample with ``dv = 0`` contributes
            nothing.
        r_prev: per-layer presynaptic rates ``r_{i-1}`` [B, n_{i-1}] (``r_prev[0]`` the input).
        rule: the forward rule (``method.rule``, see :func:`teaching_signal`).
        v_ff: per-layer feedforward voltages ``v_i^-``, for ``derivative_matrix``.

    Returns:
        ``(grad_W, grad_b)``: per layer [n_i, n_{i-1}] and [n_i] (``grad_b`` zero without
        biases).
    """
    batch = dv[0].shape[0]
    gW, gb = [], []
    for i in range(net.depth):
        bias = net.b[i].detach() if net.has_bias else None
        v_basal = torch.nn.functional.linear(r_prev[i], net.W[i].detach(), bias)
        d = teaching_signal(net, i, v_basal, dv[i], rule, None if v_ff is None else v_ff[i])
        gW.append((-2.0 / batch) * d.T @ r_prev[i])
        gb.append((-2.0 / batch) * d.sum(0))
    return gW, bias_gradients(net, gb)


def bias_gradients(net: DFCNetwork, gb: list[torch.Tensor]) -> list[torch.Tensor]:
    """``gb`` as is, or zeros when ``net`` has no biases (they stay zero)."""
    return gb if net.has_bias else [torch.zeros_like(g) for g in gb]
