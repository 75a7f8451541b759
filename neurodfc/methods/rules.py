"""Forward plasticity rules at a (steady) state, shared by DFC-SS, DFC-SSA and MN.

Given per-layer voltage changes ``dv_i`` on top of the basal input ``v_i^ff = W_i r_{i-1} + b_i``
computed from presynaptic rates ``r_{i-1}``, the teaching signal is

* ``nonlinear_difference`` (paper eq. 5): ``phi(v^ff + dv) - phi(v^ff)``
* ``voltage_difference`` (eq. 9): ``dv``
* ``derivative_matrix`` (reference option): ``phi'(v^-) dv`` with ``v^-`` the feedforward voltage

and the gradient (the reference code's scaling, ``W <- W - lr grad``) is
``grad W_i = -2/B sum_b d_i r_{i-1}^T``, ``grad b_i = -2/B sum_b d_i``.
"""

from __future__ import annotations

import torch

from neurodfc.network import DFCNetwork


def teaching_signal(
    net: DFCNetwork,
    i: int,
    v_basal: torch.Tensor,
    dv: torch.Tensor,
    rule: str,
    v_ff: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rule's signal ``d_i`` [B, n_i] of layer ``i`` (0-based)."""
    if rule == "nonlinear_difference":
        return net.act(i, v_basal + dv) - net.act(i, v_basal)
    if rule == "voltage_difference":
        return dv
    if rule == "derivative_matrix":
        if v_ff is None:
            raise ValueError("the derivative_matrix rule needs the feedforward voltages")
        return net.act_prime(i, v_ff) * dv
    raise ValueError(f"unknown forward rule {rule!r}")


def steady_state_gradients(
    net: DFCNetwork,
    dv: list[torch.Tensor],
    r_prev: list[torch.Tensor],
    rule: str,
    v_ff: list[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(grad_W, grad_b)`` of the rule at one state; ``r_prev[i]`` is the presynaptic rate of
    layer i (``r_prev[0]`` the input). A sample with ``dv = 0`` contributes nothing."""
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
    """``gb`` as is, or zeros when the network has no biases (they stay zero)."""
    return gb if net.has_bias else [torch.zeros_like(g) for g in gb]
