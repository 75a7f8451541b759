"""The networks of an ensemble's members stacked along a leading member dimension, for one
batched run of the fused scheme (:func:`neurodfc.fastpath.run.run_fused`).

Members share the layer sizes, the activations and whether biases are used; they differ in
every weight. The stack holds copies: the members' own networks are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neurodfc.network import DFCNetwork


class StackedNetwork:
    """``W_i`` [M, n_i, n_{i-1}], ``b_i`` [M, n_i] and ``Q_i`` [M, n_i, n_L] of M networks,
    with the parts of :class:`~neurodfc.network.DFCNetwork` the fused scheme reads.

    Args:
        nets: the members' networks (same sizes, activations and bias setting).

    Raises:
        ValueError: the networks differ in their structure.
    """

    def __init__(self, nets: Sequence[DFCNetwork]) -> None:
        first = nets[0]
        for net in nets[1:]:
            if net.sizes != first.sizes or net.act_names != first.act_names:
                raise ValueError("ensemble members must share layer sizes and activations")
            if net.has_bias != first.has_bias:
                raise ValueError("ensemble members must all use biases or none")
        self.members = len(nets)
        self.depth = first.depth
        self.sizes = first.sizes
        self.act_names = list(first.act_names)
        self.has_bias = first.has_bias
        self._proto = first
        self.W = [torch.stack([n.W[i].detach() for n in nets]) for i in range(self.depth)]
        self.b = [torch.stack([n.b[i].detach() for n in nets]) for i in range(self.depth)]
        self.Q = [torch.stack([n.Q[i].detach() for n in nets]) for i in range(self.depth)]

    def act(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """``phi_i(v)`` of layer ``i`` (0-based), elementwise.

        Args:
            i: layer (0-based).
            v: voltages [M, B, n_i].
        """
        return self._proto.act(i, v)

    def act_prime(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """``phi_i'(v)`` of layer ``i`` (0-based), elementwise.

        Args:
            i: layer (0-based).
            v: voltages [M, B, n_i].
        """
        return self._proto.act_prime(i, v)

    def feedforward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every member's feedforward pass ``v_i = W_i r_{i-1} + b_i``, ``r_i = phi_i(v_i)``.

        Args:
            x: inputs [M, B, n_0].

        Returns:
            ``(v, r)``: lists over layers 1..L of [M, B, n_i].
        """
        vs, rs = [], []
        r = x
        for i in range(self.depth):
            wt = self.W[i].transpose(-1, -2)
            v = torch.baddbmm(self.b[i].unsqueeze(-2), r, wt) if self.has_bias else r @ wt
            r = self.act(i, v)
            vs.append(v)
            rs.append(r)
        return vs, rs
