"""DFC (rule averaged over the simulated trajectory) and DFC-SS (rule at the last step)."""

from __future__ import annotations

import torch

from neurodfc.components.neurons import NeuronLayer
from neurodfc.components.target import loss_value
from neurodfc.core.teaching import teaching_signal
from neurodfc.methods.base import Capabilities, Method, Update
from neurodfc.methods.rules import bias_gradients, steady_state_gradients
from neurodfc.solve import Solution, Status, simulate
from neurodfc.system import DFCSystem

LR_FALLBACK_KEY = "n_lr_fallback"
"""Info key (and, in training, the per-epoch count): samples the ``linear_response`` solver
sent to its fallback solver."""


def _status_info(status: torch.Tensor) -> dict[str, float]:
    return {f"n_{s.name.lower()}": float((status == int(s)).sum()) for s in Status}


def _cost_info(sol: Solution) -> dict[str, float]:
    """Solver effort of a simulation: steps taken, vector-field evaluations, (continuous
    path) the number of time points at which the rule was accumulated and (``linear_response``)
    the number of samples sent to the fallback solver."""
    info = {"steps_run": float(sol.steps_run), "nfe": float(sol.nfe)}
    if "acc_points" in sol.extras:
        info["acc_points"] = float(sol.extras["acc_points"])
    if "lr_path" in sol.extras:
        info[LR_FALLBACK_KEY] = float(sol.extras["lr_path"].sum())
    return info


def _simulate_rule(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    generator: torch.Generator | None,
) -> Solution:
    """One simulation summing ``method.rule`` over the trajectory, with the system's
    ``[components]`` (None: the built-in controller and neurons)."""
    return simulate(
        system,
        x,
        r_target,
        record=False,
        accumulate=system.cfg.method.rule,
        generator=generator,
        controller=system.custom_controller,
        neurons=system.custom_neurons,
    )


def _layer_gradients(
    system: DFCSystem,
    layers: list[NeuronLayer],
    dv: list[torch.Tensor],
    r_prev: list[torch.Tensor],
    v_ff: list[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The forward rule at one state for user-defined neuron ``layers`` (the teaching
    signal of :mod:`neurodfc.core.teaching` with each layer's ``phi``, ``phi'``)."""
    net, rule = system.network, system.cfg.method.rule
    batch = dv[0].shape[0]
    gW, gb = [], []
    for i, layer in enumerate(layers):
        bias = net.b[i] if net.has_bias else None
        v_basal = torch.nn.functional.linear(r_prev[i], net.W[i], bias)
        d = teaching_signal(layer, v_basal, dv[i], rule, v_ff[i])
        gW.append((-2.0 / batch) * d.T @ r_prev[i])
        gb.append((-2.0 / batch) * d.sum(0))
    return gW, bias_gradients(net, gb)


def excluded_samples(status: torch.Tensor, include_non_converged: bool) -> torch.Tensor:
    """Boolean mask [B] of the samples left out of the update.

    Args:
        status: per-sample :class:`~neurodfc.solve.Status` codes [B] of the simulation.
        include_non_converged: ``method.include_non_converged``; False (reference default):
            every sample that did not converge is left out; True: only the non-finite ones.

    Examples:
        >>> import torch
        >>> from neurodfc.solve import Status
        >>> status = torch.tensor([int(Status.CONVERGED), int(Status.MAX_STEPS)])
        >>> excluded_samples(status, False), excluded_samples(status, True)
        (tensor([False,  True]), tensor([False, False]))
    """
    if include_non_converged:
        return status == int(Status.NONFINITE)
    return status != int(Status.CONVERGED)


class DFCSS(Method):
    """DFC-SS: simulate, then the forward rule with ``dv = v(T) - v^ff(T)`` and the rates at
    the last step (the reference code's efficient controller)."""

    name = "dfc_ss"
    capabilities = Capabilities(simulates=True, reports_status=True)

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """DFC-SS gradients of ``system``'s weights for ``x`` [B, n_0], ``y``: one simulation
        (its noise drawn from ``generator``), the rule at its last step; see
        :meth:`Method.update`."""
        net, cfg = system.network, system.cfg
        lc = cfg.loss
        with torch.no_grad():
            out = system.output(x)
            r_target = system.target_of(out, y)
            sol = simulate(
                system,
                x,
                r_target,
                record=False,
                generator=generator,
                controller=system.custom_controller,
                neurons=system.custom_neurons,
            )
            dv = [v - vb for v, vb in zip(sol.v_final, sol.v_basal_final, strict=True)]
            r_prev = [x, *sol.r_final[:-1]]
            drop = excluded_samples(sol.status, cfg.method.include_non_converged)
            if bool(drop.any()):
                dv = [torch.where(drop[:, None], 0.0, d) for d in dv]
                r_prev = [
                    torch.where(drop[:, None], rf, rp)
                    for rf, rp in zip([x, *sol.r_ff[:-1]], r_prev, strict=True)
                ]
            layers = system.custom_neurons
            if layers is None:
                gW, gb = steady_state_gradients(net, dv, r_prev, cfg.method.rule, sol.v_ff)
            else:
                gW, gb = _layer_gradients(system, layers, dv, r_prev, sol.v_ff)
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return Update(
            grad_W=gW,
            grad_b=gb,
            loss=loss,
            output=out,
            status=sol.status,
            info=_status_info(sol.status) | _cost_info(sol),
        )


class DFC(Method):
    """DFC: the rule's teaching signal averaged over every simulated time point (the initial
    state included, as in the reference code), ``grad W_i = -2/(B T) sum_t sum_b d_i r_{i-1}^T``;
    with a continuous-time solver (``simulation.solver = 'etdrk4'`` or a torchdiffeq method)
    the time average ``-2/(B t_max) int_0^t_max sum_b d_i r_{i-1}^T dt``, the dt -> 0 limit of
    the former.

    Excluded samples (see :func:`excluded_samples`) contribute nothing but still count in B.
    Their contribution is removed by re-simulating either them (and subtracting) or the kept
    samples alone, whichever is fewer; both give the same dynamics because samples are
    independent (with apical noise the re-simulation draws fresh noise).
    """

    name = "dfc"
    capabilities = Capabilities(simulates=True, reports_status=True)

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """DFC gradients of ``system``'s weights for ``x`` [B, n_0], ``y``: the rule averaged
        over one simulation (its noise drawn from ``generator``); see :meth:`Method.update`."""
        net, cfg = system.network, system.cfg
        lc = cfg.loss
        B = x.shape[0]
        with torch.no_grad():
            out = system.output(x)
            r_target = system.target_of(out, y)
            sol = _simulate_rule(system, x, r_target, generator)
            drop = excluded_samples(sol.status, cfg.method.include_non_converged)
            acc = self._sums(sol)
            n_drop = int(drop.sum())
            if n_drop > 0:
                nonfinite = bool((sol.status[drop] == int(Status.NONFINITE)).any())
                if nonfinite or 2 * n_drop > B:
                    keep = ~drop
                    acc = [torch.zeros_like(a) for a in acc]
                    if bool(keep.any()):
                        sub = _simulate_rule(system, x[keep], r_target[keep], generator)
                        acc = self._sums(sub)
                else:
                    sub = _simulate_rule(system, x[drop], r_target[drop], generator)
                    acc = [a - s for a, s in zip(acc, self._sums(sub), strict=True)]
            assert sol.accumulator is not None
            L = net.depth
            scale = -2.0 / (B * sol.accumulator.count)
            gW = [scale * a for a in acc[:L]]
            gb = [scale * a for a in acc[L:]]
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return Update(
            grad_W=gW,
            grad_b=bias_gradients(net, gb),
            loss=loss,
            output=out,
            status=sol.status,
            info=_status_info(sol.status) | _cost_info(sol),
        )

    @staticmethod
    def _sums(sol: Solution) -> list[torch.Tensor]:
        assert sol.accumulator is not None
        return [*sol.accumulator.W, *sol.accumulator.b]
