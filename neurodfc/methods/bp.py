"""Backpropagation: the autograd gradient of the batch loss (baseline)."""

from __future__ import annotations

import torch

from neurodfc.components.target import loss_value
from neurodfc.methods.base import Method, Update
from neurodfc.system import DFCSystem


class BP(Method):
    """``grad W_i = dL/dW_i`` by autograd (the loss's reduction from ``cfg.loss``)."""

    name = "bp"

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """Autograd gradients of ``system``'s batch loss on ``x`` [B, n_0], ``y``
        (``generator`` is unused); see :meth:`Method.update`."""
        net, lc = system.network, system.cfg.loss
        params = [*net.W, *(net.b if net.has_bias else [])]
        with torch.enable_grad():
            out = net(x)
            loss = loss_value(out, y, lc.loss, lc.reduction)
            grads = torch.autograd.grad(loss, params)
        L = net.depth
        gb = list(grads[L:]) if net.has_bias else [torch.zeros_like(b) for b in net.b]
        return Update(grad_W=list(grads[:L]), grad_b=gb, loss=loss.detach(), output=out.detach())
