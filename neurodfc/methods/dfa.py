"""Direct feedback alignment: the output error sent to every layer by fixed random ``Q_i``."""

from __future__ import annotations

import torch

from neurodfc.components.target import loss_gradient, loss_value
from neurodfc.methods.base import Method, Update
from neurodfc.system import DFCSystem


class DFA(Method):
    """``d_i = (e Q_i^T) * phi_i'(v_i)`` with ``e = dL/dr_L`` and the network's (frozen, random)
    feedback weights ``Q_i`` as DFA's feedback matrices.

    Scaled like the reference code's DFA (a target-propagation network whose layer targets are
    ``v_i - lam Q_i e``): ``grad W_i = (2 lam / B) sum_b d_i r_{i-1}^T``; with ``lam`` the
    configured ``loss.lam`` (the reference pairs it with normalize_lr)."""

    name = "dfa"

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """DFA gradients of ``system``'s weights for ``x`` [B, n_0], ``y`` (no simulation,
        ``generator`` is unused); see :meth:`Method.update`."""
        net, lc = system.network, system.cfg.loss
        with torch.no_grad():
            v, r = net.feedforward(x)
            out = r[-1]
            e = loss_gradient(out, y, lc.loss, lc.reduction)
            r_prev = [x, *r[:-1]]
            scale = 2.0 * lc.lam / x.shape[0]
            gW, gb = [], []
            for i in range(net.depth):
                d = scale * (e @ net.Q[i].T) * net.act_prime(i, v[i])
                gW.append(d.T @ r_prev[i])
                gb.append(d.sum(0) if net.has_bias else torch.zeros_like(net.b[i]))
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return Update(grad_W=gW, grad_b=gb, loss=loss, output=out)
