"""DFC-SSA: the Lemma-1 steady state, no simulation (the reference code's ``ndi``)."""

from __future__ import annotations

import torch

from neurodfc.components.target import loss_value
from neurodfc.methods.base import Method, Update
from neurodfc.methods.rules import steady_state_gradients
from neurodfc.system import DFCSystem, lemma1


class DFCSSA(Method):
    """``u = (J Q + alpha_eff I)^-1 delta_L``, ``dv = Q u``, ``v_i = W_i r_{i-1} + b_i + dv_i``
    layer by layer, then the forward rule at that state."""

    name = "dfc_ssa"

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """DFC-SSA gradients of ``system``'s weights for ``x`` [B, n_0], ``y`` at the Lemma-1
        steady state (no simulation, ``generator`` is unused); see :meth:`Method.update`."""
        net, lc = system.network, system.cfg.loss
        with torch.no_grad():
            out = net(x)
            r_target = system.target_of(out, y)
            ss = lemma1(system, x, r_target)
            gW, gb = steady_state_gradients(
                net, ss.dv, [x, *ss.r[:-1]], system.cfg.method.rule, ss.v_ff
            )
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return Update(grad_W=gW, grad_b=gb, loss=loss, output=out)
