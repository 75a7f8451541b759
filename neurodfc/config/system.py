"""Config sections of the DFC system: network, controller, feedback weights, apical
compartment and noise (``[network]``, ``[controller]``, ``[feedback]``, ``[apical]``,
``[noise]``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from neurodfc.config.base import Activation, _Section


class NetworkConfig(_Section):
    """Feedforward architecture ``r_i = phi(W_i r_{i-1} + b_i)``, i = 1..L."""

    sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [15, 10, 10, 1], min_length=2
    )
    """Layer sizes ``[n_0, n_1, ..., n_L]`` including the input ``n_0``; each >= 1."""
    hidden_activation: str | list[str] = "tanh"
    """Nonlinearity ``phi`` of the hidden layers 1..L-1 (tanh | linear | relu | sigmoid): one
    name, or one per hidden layer."""
    output_activation: Activation = "linear"
    """Nonlinearity of the output layer L (linear for softmax cross-entropy)."""
    bias: bool = True
    """Whether each layer has a bias ``b_i``."""
    init: Literal["xavier_normal", "xavier_uniform", "orthogonal", "normal"] = "xavier_normal"
    """Initialisation of the forward weights ``W_i``."""
    init_gain: float = Field(default=1.0, gt=0)
    """Gain of the forward-weight initialisation (> 0)."""

    @field_validator("hidden_activation")
    @classmethod
    def _known_activations(cls, v: str | list[str]) -> str | list[str]:
        allowed = ("tanh", "linear", "relu", "sigmoid")
        for name in [v] if isinstance(v, str) else v:
            if name not in allowed:
                raise ValueError(
                    f"unknown activation {json.dumps(name)}; allowed: "
                    + ", ".join(json.dumps(a) for a in allowed)
                )
        return v

    @model_validator(mode="after")
    def _hidden_list_length(self) -> NetworkConfig:
        if isinstance(self.hidden_activation, list):
            n_hidden = len(self.sizes) - 2
            if len(self.hidden_activation) != n_hidden:
                raise ValueError(
                    f"hidden_activation lists {len(self.hidden_activation)} names but the "
                    f"network has {n_hidden} hidden layers (sizes={self.sizes})"
                )
        return self

    @property
    def depth(self) -> int:
        """Number of layers L (input excluded)."""
        return len(self.sizes) - 1

    def activations(self) -> list[str]:
        """Per-layer nonlinearity names, layers 1..L."""
        n_hidden = self.depth - 1
        hidden = (
            list(self.hidden_activation)
            if isinstance(self.hidden_activation, list)
            else [self.hidden_activation] * n_hidden
        )
        return [*hidden, self.output_activation]


class ControllerConfig(_Section):
    """PI controller ``u = u_int + k_p e`` with leaky integral part (paper eq. 3-4)."""

    k_p: float = Field(default=2.0, ge=0)
    """Proportional gain ``k_p`` (>= 0, dimensionless)."""
    alpha: float = Field(default=1.39e-3, ge=0)
    """Leak ``alpha`` of the integral controller (>= 0, dimensionless)."""
    tau_ratio: float = Field(default=0.2, gt=0)
    """Time-constant ratio ``tau_v / tau_u`` (> 0); the reference code's time_constant_ratio."""
    leak: Literal["reference", "paper"] = "reference"
    """Where the leak acts: ``reference`` = ``tau_u du_int/dt = e - alpha u`` (the official code,
    alpha_eff = alpha); ``paper`` = ``tau_u du_int/dt = e - alpha u_int``
    (alpha_eff = alpha / (1 + alpha k_p))."""

    @property
    def alpha_eff(self) -> float:
        """Effective leak ``alpha_eff`` entering Lemma 1."""
        if self.leak == "paper":
            return self.alpha / (1.0 + self.alpha * self.k_p)
        return self.alpha


class FeedbackConfig(_Section):
    """Feedback weights ``Q_i`` (n_i x n_L) carrying the control signal to every layer."""

    init: Literal["xavier_normal", "xavier_uniform", "weight_product", "jacobian_transpose"] = (
        "xavier_normal"
    )
    """Initialisation of ``Q_1..Q_{L-1}``: random, the weight product ``prod_{k>i} W_k^T``
    (the paper's "fixed" rows), or ``J^T`` at a zero input (exact for linear networks)."""
    output_identity: bool = True
    """``Q_L = I`` (the output layer is controlled directly); else initialised like the rest."""
    init_noise: float = Field(default=0.0, ge=0)
    """Std of Gaussian noise added to a ``weight_product`` initialisation (reference: noise_K)."""
    learned: bool = False
    """Whether Q is trained (noise-driven sleep phase, see [feedback_learning]); else frozen."""
    train_output: bool = False
    """Whether ``Q_L`` is trained as well (reference: not freeze_fb_weights_output)."""


class ApicalConfig(_Section):
    """Apical (feedback) compartment ``tau_fb dv^fb/dt = -v^fb + Q u (+ noise)``."""

    tau: float | None = Field(default=None, gt=0)
    """Apical time constant ``tau_fb`` in units of tau_u; ``None`` = instantaneous
    (``v^fb = Q u``; the reference code's apical_time_constant = -1)."""


class NoiseConfig(_Section):
    """Gaussian white noise in the apical compartment (Euler-Maruyama)."""

    sigma: float = Field(default=0.0, ge=0)
    """Noise std ``sigma`` in hidden layers (>= 0)."""
    sigma_output: float | None = Field(default=None, ge=0)
    """Noise std in the output layer; ``None`` = same as ``sigma``."""
