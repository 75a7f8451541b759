"""Strong-DFC learning methods (the :class:`~neurodfc.methods.base.Method` interface).

* :class:`StrongDFC` (``strong_dfc``): two phases. Forward weights from a (noise-free by default)
  simulation pushed towards the strong target ``r_L* = y``; feedback weights from a separate
  noisy sleep phase (:meth:`StrongDFC.feedback_gradients`, white noise into an apical compartment
  of time constant ``tau_A``, the successor's ``run_dfc.py --strong_feedback``).
* :class:`StrongDFCSingle` (``strong_dfc_single``): one noisy simulation per minibatch gives both
  the forward update and the feedback update (OU noise, instantaneous apical compartment,
  high-pass filtered ``u``, layer scaling); the successor's ``run_dfc_single_phase.py``. Its
  update is a :class:`StrongUpdate` carrying ``grad_Q``.

Feedback rule (successor, ``Q <- Q - lr grad``, anti-Hebbian)::

    grad Q_i = s_i / ((T-1) B) sum_{t=0}^{T-2} sum_b v^fb_i[t] u_f[t+1]^T,
    s_i = (1 + tau_v/tau_eps)^(L-i) / max(sigma_i, floor)^2

with ``u_f`` the (high-pass filtered) control, ``sigma_i`` the noise std of layer i (``sigma`` or
``sigma_output``), ``floor = feedback_learning.scale_floor`` and the layer factor only with
``strong.layer_scaling`` (``tau_v``: the simulation's own ``tau_ratio``, or in a feedback-only
phase with ``strong.layer_scaling_tau = "forward"`` the controller's, as the successor's
single-phase pre-training). Forward rule: ``grad W_i = -2/(B T) sum_t d_i[t]^T r_{i-1}[t]``
(``strong.update = "trajectory"``) or ``-2/B sum_b d_i r_{i-1}^T`` at the last step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodfc.components.target import loss_value, output_target
from neurodfc.config import ExperimentConfig
from neurodfc.methods.base import Capabilities, Method, Update
from neurodfc.methods.rules import steady_state_gradients
from neurodfc.network import DFCNetwork
from neurodfc.strong.dynamics import (
    ErrorKind,
    NoiseKind,
    StrongDynamics,
    StrongRun,
    simulate_strong,
)
from neurodfc.system import DFCSystem


@dataclass
class StrongUpdate(Update):
    """The :class:`~neurodfc.methods.base.Update` of a Strong-DFC method: its ``grad_Q[i]``
    [n_i, n_L] holds the feedback gradients of every layer from the same simulation in the
    single-phase method (empty for the two-phase method)."""


# --------------------------------------------------------------------------- targets
def label_target(y: torch.Tensor, n_out: int, value: float, dtype: torch.dtype) -> torch.Tensor:
    """Strong target ``r_L*`` [B, n_L] from the labels ``y``.

    Args:
        y: class labels [B] (int64) or regression targets [B, n_L] (passed unchanged).
        n_out: number of classes ``n_L``.
        value: the target of the labelled class (``strong.target_class_value``); the others
            get ``(1 - value)/(n_L - 1)``.
        dtype: floating dtype of the result.

    Examples:
        >>> import torch
        >>> label_target(torch.tensor([2, 0]), 3, 0.8, torch.float64)
        tensor([[0.1000, 0.1000, 0.8000],
                [0.8000, 0.1000, 0.1000]], dtype=torch.float64)
    """
    if y.is_floating_point():
        return y.to(dtype)
    rest = (1.0 - value) / (n_out - 1) if n_out > 1 else 0.0
    target = torch.full((y.shape[0], n_out), rest, dtype=dtype, device=y.device)
    target[torch.arange(y.shape[0], device=y.device), y] = value
    return target


def strong_target(system: DFCSystem, r_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The forward phase's output target ``r_L*`` [B, n_L] of ``system``.

    Args:
        system: the system (``strong.target``, ``loss``).
        r_out: the feedforward output ``r_L^-`` [B, n_L].
        y: labels [B] or regression targets [B, n_L].

    Returns:
        The (soft) label (:func:`label_target`) under strong feedback
        (``strong.target = "label"``), else the nudged ``r_L^- - lam dL/dr_L``
        (``loss.reduction`` sets the batch convention).
    """
    cfg = system.cfg
    if cfg.strong.target == "label":
        return label_target(y, r_out.shape[1], cfg.strong.target_class_value, r_out.dtype)
    lc = cfg.loss
    return output_target(r_out, y, lc.loss, lc.lam, lc.reduction)


def error_kind(cfg: ExperimentConfig) -> ErrorKind:
    """The error kind of ``cfg``: ``softmax`` (``e = r* - softmax(r_L)``) for the loss-gradient
    error of the cross-entropy, else ``difference`` (the loss gradient of ``1/2 |r* - r_L|^2``
    is the difference)."""
    if cfg.strong.error == "loss_gradient" and cfg.loss.loss == "cross_entropy":
        return "softmax"
    return "difference"


# --------------------------------------------------------------------------- dynamics
def _noise_kind(kind: str, sigma: float, sigma_out: float) -> NoiseKind:
    if sigma == 0.0 and sigma_out == 0.0:
        return "none"
    return "ou" if kind == "ou" else "white"


def forward_dynamics(cfg: ExperimentConfig, *, single_phase: bool) -> StrongDynamics:
    """Settings of the forward (wake) simulation from ``cfg``: ``[controller]``,
    ``[simulation]``, ``[noise]`` and ``[strong]``; with ``single_phase`` the apical
    compartment is always instantaneous (the successor's DFCNetworkSinglePhase)."""
    sim, ctrl, nz = cfg.simulation, cfg.controller, cfg.noise
    if sim.inst_system_dynamics:
        raise ValueError("strong methods do not support simulation.inst_system_dynamics = true")
    sigma_out = nz.sigma if nz.sigma_output is None else nz.sigma_output
    return StrongDynamics(
        dt=sim.dt,
        n_steps=sim.n_steps,
        alpha=ctrl.alpha,
        k_p=ctrl.k_p,
        tau_ratio=ctrl.tau_ratio,
        leak=ctrl.leak,
        inst_transmission=sim.inst_transmission,
        proactive=sim.proactive_controller,
        apical_tau=None if single_phase else cfg.apical.tau,
        noise=_noise_kind(cfg.strong.noise, nz.sigma, sigma_out),
        sigma=nz.sigma,
        sigma_output=sigma_out,
        tau_noise=cfg.strong.tau_noise,
        error=error_kind(cfg),
    )


def sleep_dynamics(cfg: ExperimentConfig, *, single_phase: bool) -> StrongDynamics:
    """Settings of the feedback-only phase (two-phase sleep, or single-phase pre-training)
    from ``cfg``: ``[feedback_learning]`` with the noise kind of ``[strong]``; the apical time
    constant is ``feedback_learning.apical_tau`` in the two-phase method, instantaneous with
    ``single_phase``."""
    fl = cfg.feedback_learning
    sigma_out = fl.sigma if fl.sigma_output is None else fl.sigma_output
    return StrongDynamics(
        dt=fl.dt,
        n_steps=fl.steps,
        alpha=fl.alpha,
        k_p=fl.k_p,
        tau_ratio=fl.tau_ratio,
        leak=cfg.controller.leak,
        inst_transmission=fl.inst_transmission,
        proactive=cfg.simulation.proactive_controller,
        apical_tau=None if single_phase else fl.apical_tau,
        noise=_noise_kind(cfg.strong.noise, fl.sigma, sigma_out),
        sigma=fl.sigma,
        sigma_output=sigma_out,
        tau_noise=cfg.strong.tau_noise,
        error=error_kind(cfg),
    )


def feedback_scales(
    cfg: ExperimentConfig, dyn: StrongDynamics, depth: int, *, sleep: bool = False
) -> list[float]:
    """The feedback-rule scales ``s_i = (1 + tau_v/tau_eps)^(L-i) / max(sigma_i, floor)^2``.

    Args:
        cfg: the config (``feedback_learning.scale_floor``, ``strong.layer_scaling``,
            ``strong.layer_scaling_tau``, ``strong.tau_noise``).
        dyn: the simulation that produced the update (its ``sigma``, ``sigma_output`` and
            ``tau_ratio``).
        depth: number of layers L.
        sleep: whether ``dyn`` is a feedback-only (sleep / pre-training) phase; there
            ``strong.layer_scaling_tau = "forward"`` takes ``tau_v`` from
            ``controller.tau_ratio`` (the successor's single-phase pre-training) instead of
            ``dyn.tau_ratio``.

    Returns:
        ``s_i`` per layer, 0-based (the exponent is ``L-1-i``; the layer factor only with
        ``strong.layer_scaling``).
    """
    floor = cfg.feedback_learning.scale_floor
    forward_tau = sleep and cfg.strong.layer_scaling_tau == "forward"
    tau_v = cfg.controller.tau_ratio if forward_tau else dyn.tau_ratio
    out = []
    for i in range(depth):
        sigma_i = dyn.sigma_output if i == depth - 1 else dyn.sigma
        s = 1.0 / max(sigma_i, floor) ** 2
        if cfg.strong.layer_scaling:
            s *= (1.0 + tau_v / cfg.strong.tau_noise) ** (depth - 1 - i)
        out.append(s)
    return out


def feedback_from_run(run: StrongRun, scales: list[float], batch: int) -> list[torch.Tensor]:
    """``grad Q_i = s_i / ((T-1) B) acc_Q_i`` from the feedback sums of ``run``, with the
    ``scales`` ``s_i`` of :func:`feedback_scales` and the ``batch`` size B."""
    return [(s / (run.count_Q * batch)) * a for s, a in zip(scales, run.acc_Q, strict=True)]


def forward_from_run(
    net: DFCNetwork, run: StrongRun, batch: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``grad W_i = -2/(B T) acc_W_i``, ``grad b_i = -2/(B T) acc_b_i`` from the forward sums
    of ``run`` (``batch`` = B; ``grad b_i`` zero when ``net`` has no biases)."""
    scale = -2.0 / (batch * run.count_W)
    gW = [scale * a for a in run.acc_W]
    gb = [scale * a if net.has_bias else torch.zeros_like(a) for a in run.acc_b]
    return gW, gb


def _info(net: DFCNetwork, run: StrongRun) -> dict[str, float]:
    """Cheap diagnostics: mean final ``|e|`` and mean final ``H = 1/2 |Q u|^2``."""
    Qu = run.u @ net.full_Q().detach().T
    return {
        "e_final": float(torch.linalg.vector_norm(run.e, dim=1).mean()),
        "H_final": float(0.5 * (Qu * Qu).sum(1).mean()),
    }


# --------------------------------------------------------------------------- methods
class StrongDFC(Method):
    """Two-phase Strong-DFC: strong target, forward rule over the trajectory or at the last
    step (``strong.update``); the feedback weights learn in a separate sleep phase."""

    name = "strong_dfc"
    capabilities = Capabilities(simulates=True, own_sleep_phase=True)

    @property
    def single_phase(self) -> bool:
        """Whether :meth:`update` also returns ``grad_Q`` (``capabilities.single_phase``)."""
        return self.capabilities.single_phase

    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> StrongUpdate:
        """Forward gradients of ``system``'s weights for ``x`` [B, n_0], ``y`` from one
        simulation towards the strong target (its noise drawn from ``generator``), plus
        ``grad_Q`` in the single-phase method; see :meth:`Method.update`."""
        net, cfg = system.network, system.cfg
        sc, lc = cfg.strong, cfg.loss
        B = x.shape[0]
        with torch.no_grad():
            out = net(x)
            rt = strong_target(system, out, y)
            dyn = forward_dynamics(cfg, single_phase=self.single_phase)
            traj = sc.update == "trajectory"
            run = simulate_strong(
                net,
                x,
                rt,
                dyn,
                forward_rule=cfg.method.rule if traj else None,
                accumulate_feedback=self.single_phase,
                tau_f=sc.tau_f if (self.single_phase and sc.high_pass) else None,
                generator=generator,
            )
            if traj:
                gW, gb = forward_from_run(net, run, B)
            else:
                v_ff, _ = net.feedforward(x)
                dv = [v - vb for v, vb in zip(run.v, run.vb, strict=True)]
                gW, gb = steady_state_gradients(net, dv, [x, *run.r[:-1]], cfg.method.rule, v_ff)
                if not net.has_bias:
                    gb = [torch.zeros_like(g) for g in gb]
            grad_Q = (
                feedback_from_run(run, feedback_scales(cfg, dyn, net.depth), B)
                if self.single_phase
                else []
            )
            loss = loss_value(out, y, lc.loss, lc.reduction)
        return StrongUpdate(
            grad_W=gW, grad_b=gb, loss=loss, output=out, info=_info(net, run), grad_Q=grad_Q
        )

    def feedback_gradients(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """``grad Q_i`` [n_i, n_L] of every layer from one feedback-only (sleep) simulation.

        The ``[feedback_learning]`` dynamics, target ``strong.sleep_target``, the feedback rule
        with the high-pass of ``strong.high_pass`` (single phase) or raw ``u`` (two-phase).

        Args:
            system: the DFC system; never modified.
            x: inputs [B, n_0].
            y: labels [B] or regression targets [B, n_L] (for a label sleep target).
            generator: random generator of the noise.
        """
        net, cfg = system.network, system.cfg
        with torch.no_grad():
            out = net(x)
            rt = strong_target(system, out, y) if cfg.strong.sleep_target == "label" else out
            dyn = sleep_dynamics(cfg, single_phase=self.single_phase)
            hp = self.single_phase and cfg.strong.high_pass
            run = simulate_strong(
                net,
                x,
                rt,
                dyn,
                accumulate_feedback=True,
                tau_f=cfg.strong.tau_f if hp else None,
                generator=generator,
            )
            scales = feedback_scales(cfg, dyn, net.depth, sleep=True)
            return feedback_from_run(run, scales, x.shape[0])


class StrongDFCSingle(StrongDFC):
    """Single-phase Strong-DFC: one noisy simulation (OU noise, instantaneous apical
    compartment) gives the forward update and ``grad_Q`` (high-pass filtered ``u``, layer
    scaling); :meth:`feedback_gradients` is the feedback-only pre-training phase."""

    name = "strong_dfc_single"
    capabilities = Capabilities(
        simulates=True, own_sleep_phase=True, feedback_in_update=True, single_phase=True
    )
