"""The forward rules' teaching signal ``d_i``, defined once.

Given a layer's basal voltage ``v_i^b = W_i r_{i-1} + b_i`` and the voltage change ``dv_i`` on top
of it (``v_i = v_i^b + dv_i``):

* ``nonlinear_difference`` (paper eq. 5): ``d_i = phi(v_i) - phi(v_i^b)``;
* ``voltage_difference`` (eq. 9): ``d_i = dv_i``;
* ``derivative_matrix`` (reference-code option): ``d_i = phi'(v_i^-) dv_i`` with ``v_i^-`` the
  feedforward voltage.

The weight update pairs ``d_i`` with the presynaptic rate: ``sum_b d_i r_{i-1}^T``.
:func:`teaching_signal` is the functional form; :func:`teaching_signal_into` writes into a
buffer from a state whose rate ``r_i = phi(v_i)`` is already known (the simulation loops).
"""

from __future__ import annotations

from typing import Literal

import torch

from neurodfc.components.neurons import NeuronLayer

ForwardRule = Literal["nonlinear_difference", "voltage_difference", "derivative_matrix"]
FORWARD_RULES: tuple[str, ...] = ("nonlinear_difference", "voltage_difference", "derivative_matrix")
"""The forward rules whose teaching signal a simulation can sum over its trajectory."""


def check_rule(rule: str | None) -> None:
    """Raise ``ValueError`` unless ``rule`` is None or one of :data:`FORWARD_RULES`.

    Args:
        rule: the forward rule name to check.
    """
    if rule is not None and rule not in FORWARD_RULES:
        raise ValueError(f"accumulate must be one of {FORWARD_RULES}, got {rule!r}")


def teaching_signal(
    layer: NeuronLayer,
    v_basal: torch.Tensor,
    dv: torch.Tensor,
    rule: str,
    v_ff: torch.Tensor | None = None,
) -> torch.Tensor:
    """The teaching signal ``d_i`` [B, n_i] of one layer (see the module docstring).

    Args:
        layer: the layer's neurons (``phi``, ``phi'``).
        v_basal: basal voltage ``v_i^b`` [B, n_i].
        dv: voltage change ``dv_i`` [B, n_i] on top of ``v_basal``.
        rule: the forward rule.
        v_ff: feedforward voltage ``v_i^-`` [B, n_i]; needed by ``derivative_matrix`` only.
    """
    if rule == "nonlinear_difference":
        return layer.phi(v_basal + dv) - layer.phi(v_basal)
    if rule == "voltage_difference":
        return dv
    if rule == "derivative_matrix":
        if v_ff is None:
            raise ValueError("the derivative_matrix rule needs the feedforward voltages")
        return layer.phi_prime(v_ff) * dv
    raise ValueError(f"unknown forward rule {rule!r}")


def teaching_signal_into(
    layer: NeuronLayer,
    rule: str,
    v: torch.Tensor,
    v_basal: torch.Tensor,
    r: torch.Tensor,
    out: torch.Tensor,
    dphi_ff: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`teaching_signal` at a state ``(v, r = phi(v))``, written into ``out``.

    Args:
        layer: the layer's neurons.
        rule: the forward rule.
        v: somatic voltage ``v_i`` [B, n_i].
        v_basal: basal voltage ``v_i^b`` [B, n_i].
        r: the rate ``phi(v_i)`` [B, n_i] (read by ``nonlinear_difference``).
        out: the output buffer [B, n_i] (must not alias the inputs).
        dphi_ff: ``phi'(v_i^-)`` [B, n_i] (``derivative_matrix`` only).

    Returns:
        ``out``.
    """
    if rule == "nonlinear_difference":
        return torch.sub(r, layer.phi(v_basal), out=out)
    torch.sub(v, v_basal, out=out)
    if rule == "derivative_matrix":
        if dphi_ff is None:
            raise ValueError("the derivative_matrix rule needs phi'(v^-)")
        out.mul_(dphi_ff)
    elif rule != "voltage_difference":
        raise ValueError(f"unknown forward rule {rule!r}")
    return out
