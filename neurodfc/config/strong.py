"""Config section ``[strong]``: Strong-DFC (Meulemans et al., ICML 2022;
``neurodfc.strong``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurodfc.config.base import _Section


class StrongConfig(_Section):
    """Strong feedback and single-phase feedback learning (the successor code base,
    github mariacer/strong_dfc); read by the ``strong_dfc`` (two-phase) and
    ``strong_dfc_single`` (single-phase) methods, ignored by every other method.

    Loss convention: for a nudged target the successor differentiates ``B`` times PyTorch's
    batch-mean loss, i.e. ``loss.reduction = "sum_of_sample_means"`` here (for the
    cross-entropy the same as ``"sum"``; for MSE ``"sum"`` would be n_L times larger); its
    ``target_stepsize`` values are therefore not comparable with the original DFC code's ``lam``
    (batch mean). With ``target = "label"`` ``loss.lam`` and the reduction are unused."""

    target: Literal["label", "nudged"] = "label"
    """Output target ``r_L*``: ``label`` = strong feedback, the label itself (soft one-hot for
    classification, the regression target otherwise); ``nudged`` = ``r_L^- - lam dL/dr_L``."""
    target_class_value: float = Field(default=0.99, gt=0, le=1)
    """Soft one-hot: the correct class gets this value, every other class
    ``(1 - value) / (n_L - 1)`` (successor: target_class_value; 1 = hard one-hot)."""
    error: Literal["difference", "loss_gradient"] = "loss_gradient"
    """Controller error ``e(t)``: ``difference`` = ``r_L* - r_L(t)``; ``loss_gradient`` =
    ``-dL/dr_L`` at ``r_L(t)`` (cross-entropy: ``r_L* - softmax(r_L(t))``, MSE: the difference);
    successor: error_as_loss_grad."""
    update: Literal["trajectory", "steady_state"] = "trajectory"
    """Forward rule averaged over the simulated trajectory (successor's continuous updates, always
    used by its single-phase code) or at the last step (successor ``--ss``)."""
    noise: Literal["white", "ou"] = "ou"
    """Apical noise: ``white`` = Euler-Maruyama white noise ``sigma sqrt(dt)/tau_A xi``;
    ``ou`` = Ornstein-Uhlenbeck noise ``sigma eps``, ``tau_noise d eps = -eps dt + dW``
    (successor's low-pass filtered noise, always on in its single-phase code)."""
    tau_noise: float = Field(default=0.07, gt=0)
    """Time constant ``tau_eps`` of the OU noise (units of tau_u); also enters the layer scaling."""
    high_pass: bool = True
    """Feedback rule pairs ``v^fb`` with the high-pass filtered control ``u - LP_tau_f(u)``
    (single-phase learning: removes the task-driven part of ``u``); false = raw ``u``."""
    tau_f: float = Field(default=0.5, gt=0)
    """Time constant ``tau_f`` of the low-pass filter behind the high-pass (units of tau_u)."""
    layer_scaling: bool = True
    """Scale the feedback update of layer i by ``(1 + tau_v/tau_eps)^(L-i)`` (successor:
    scaling_fb_updates)."""
    layer_scaling_tau: Literal["phase", "forward"] = "phase"
    """``tau_v`` of the layer factor in a feedback-only (sleep / pre-training) phase: ``phase``
    = that phase's own ``feedback_learning.tau_ratio``; ``forward`` = ``controller.tau_ratio``
    (the successor's single-phase pre-training, through its ``getattr`` default; its two-phase
    sleep uses the phase's own). Updates from the forward simulation always use the forward
    ``tau_ratio``."""
    sleep_target: Literal["label", "feedforward"] = "label"
    """Target of the feedback-only (sleep / pre-training) phase: ``label`` = the forward phase's
    target (the label under strong feedback, as the successor) or ``feedforward`` = the
    feedforward output ``r_L^-`` (successor: pretrain_without_controller)."""
    feedback_clip: Literal["per_parameter", "global"] = "per_parameter"
    """Clip each ``Q_i`` gradient on its own (successor) or all together, at
    ``feedback_learning.clip_grad_norm``."""

    @model_validator(mode="after")
    def _nudged_needs_difference(self) -> StrongConfig:
        if self.target == "nudged" and self.error == "loss_gradient":
            raise ValueError(
                "strong.error = 'loss_gradient' needs strong.target = 'label' (the successor code "
                "implements it for strong feedback only); use error = 'difference'"
            )
        return self
