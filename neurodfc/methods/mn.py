"""MN: the damped minimum-norm voltage change ``dv = J^T (J J^T + gamma I)^-1 delta_L``, and
GN: the damped Gauss-Newton update over all weights and biases (small-network oracles)."""

from __future__ import annotations

import torch

from neurodfc.components.target import loss_value
from neurodfc.methods.base import Method, Update
from neurodfc.methods.rules import steady_state_gradients
from neurodfc.system import DFCSystem, jacobian


def min_norm_dv(J: torch.Tensor, delta: torch.Tensor, gamma: float) -> torch.Tensor:
    """The damped minimum-norm voltage change ``J^T (J J^T + gamma I)^-1 delta``.

    Args:
        J: output Jacobians ``d r_L / d v`` [B, n_L, N] (:func:`neurodfc.network.jacobian`).
        delta: output errors ``delta_L = r_L* - r_L^-`` [B, n_L].
        gamma: damping >= 0 (``gamma = 0`` needs ``J`` of full row rank).

    Returns:
        ``dv`` [B, N], all layers concatenated (split with
        :meth:`~neurodfc.network.DFCNetwork.split_units`).

    Examples:
        >>> import torch
        >>> J = torch.tensor([[[1.0, 1.0]]])  # one sample, n_L = 1, N = 2
        >>> min_norm_dv(J, torch.tensor([[2.0]]), 0.0)
        tensor([[1., 1.]])
    """
    eye = torch.eye(J.shape[1], dtype=J.dtype, device=J.device)
    w = torch.linalg.solve(J @ J.transpose(1, 2) + gamma * eye, delta.unsqueeze(-1))
    return (J.transpose(1, 2) @ w).squeeze(-1)


class MN(Method):
    """Trainable minimum-norm method: the forward rule applied to ``dv`` of
    :func:`min_norm_dv` (damping ``method.gamma``) at the feedforward rates."""

    name = "mn"

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """MN gradients of ``system``'s weights for ``x`` [B, n_0], ``y`` (no simulation,
        ``generator`` is unused); see :meth:`Method.update`."""
        net, lc, mc = system.network, system.cfg.loss, system.cfg.method
        with torch.no_grad():
            v, r = net.feedforward(x)
            out = r[-1]
            delta = system.target_of(out, y) - out
            dv = net.split_units(min_norm_dv(jacobian(net, v), delta, mc.gamma))
            gW, gb = steady_state_gradients(net, dv, [x, *r[:-1]], mc.rule, v)
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return Update(grad_W=gW, grad_b=gb, loss=loss, output=out)


def gauss_newton_step(
    system: DFCSystem, x: torch.Tensor, delta: torch.Tensor, gamma: float
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``mean_b J_theta^T (J_theta J_theta^T + gamma I)^-1 delta_b`` split into ``(dW, db)``.

    Args:
        system: the DFC system (its feedforward state at ``x``); never modified.
        x: inputs [B, n_0].
        delta: output errors ``delta_L = r_L* - r_L^-`` [B, n_L].
        gamma: damping >= 0.

    Returns:
        ``(dW, db)``: per layer [n_i, n_{i-1}] and [n_i] (zeros without biases), in the
        descent direction (the optimiser's gradient is ``-dW``).

    ``J_theta`` is the per-sample Jacobian of ``r_L`` w.r.t. all weights and biases; it is never
    formed: ``J_theta J_theta^T = sum_i J_i J_i^T (|r_{i-1}|^2 + 1_bias)`` and
    ``J_theta^T w`` is ``(J_i^T w) r_{i-1}^T`` for ``W_i`` and ``J_i^T w`` for ``b_i``.
    """
    net = system.network
    with torch.no_grad():
        v, r = net.feedforward(x)
        J = jacobian(net, v)
        blocks = net.split_units(J, dim=2)
        r_prev = [x, *r[:-1]]
        K = torch.zeros(J.shape[0], J.shape[1], J.shape[1], dtype=J.dtype, device=J.device)
        for Ji, rp in zip(blocks, r_prev, strict=True):
            scale = (rp * rp).sum(1) + (1.0 if net.has_bias else 0.0)
            K += (Ji @ Ji.transpose(1, 2)) * scale[:, None, None]
        eye = torch.eye(J.shape[1], dtype=J.dtype, device=J.device)
        w = torch.linalg.solve(K + gamma * eye, delta.unsqueeze(-1)).squeeze(-1)
        B = x.shape[0]
        dW, db = [], []
        for Ji, rp in zip(blocks, r_prev, strict=True):
            g = (Ji.transpose(1, 2) @ w.unsqueeze(-1)).squeeze(-1)  # [B, n_i]
            dW.append(g.T @ rp / B)
            db.append(g.sum(0) / B if net.has_bias else torch.zeros_like(g[0]))
    return dW, db


class GN(Method):
    """Damped Gauss-Newton over all weights and biases (``method.gamma``), scaled like the
    DFC family: ``grad = -2 mean_b J_theta^T (J_theta J_theta^T + gamma I)^-1 delta_b``."""

    name = "gn"

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """GN gradients of ``system``'s weights for ``x`` [B, n_0], ``y`` (no simulation,
        ``generator`` is unused); see :meth:`Method.update`."""
        net, lc = system.network, system.cfg.loss
        with torch.no_grad():
            out = net(x)
            delta = system.target_of(out, y) - out
            dW, db = gauss_newton_step(system, x, delta, system.cfg.method.gamma)
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return Update(
            grad_W=[-2.0 * g for g in dW], grad_b=[-2.0 * g for g in db], loss=loss, output=out
        )
