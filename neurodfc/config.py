"""Typed configuration of a DFC experiment (pydantic v2, frozen, ``extra="forbid"``).

Every field documents its paper symbol and unit. Time is measured in units of the controller
time constant ``tau_u`` (``tau_u = 1``). A TOML file in ``models/`` maps one-to-one onto
:class:`ExperimentConfig`: one table per section (``[network]``, ``[controller]``, ...).

Validation is strict: TOML types are enforced (no bool for a number, no string for a bool, an
integer field takes no float; an integer for a float field is fine), every float is finite, and
each field declares its range. Cross-field rules (checked before any compute starts) live in
:meth:`ExperimentConfig._check_consistency` and :meth:`ExperimentConfig._check_strong`. A bad
config raises :class:`ConfigError` with one line naming the file, each bad field, its value and
what it allows (``neurodfc.config_errors``); what a config needs from the machine (device,
memory, data, output paths) is checked by ``neurodfc.preflight``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from neurodfc.config_errors import one_line, validation_problems

Activation = Literal["tanh", "linear", "relu", "sigmoid"]
Solver = Literal[
    "euler_reference",
    "euler",
    "midpoint",
    "rk4",
    "dopri5",
    "bosh3",
    "adaptive_heun",
    "etdrk4",
    "linear_response",
]
IntegratingSolver = Literal[
    "euler_reference", "euler", "midpoint", "rk4", "dopri5", "bosh3", "adaptive_heun", "etdrk4"
]
FIXED_STEP_SOLVERS = ("euler_reference", "euler", "midpoint", "rk4")
ETDRK4_TOLERANCES = (2e-4, 1e-12)
"""Default ``(rtol, atol)`` of the ``etdrk4`` solver (deviation-relative error norm)."""
ODEINT_TOLERANCES = (1e-7, 1e-9)
"""Default ``(rtol, atol)`` of torchdiffeq's adaptive solvers."""
MethodName = Literal[
    "bp", "dfa", "dfc", "dfc_ss", "dfc_ssa", "mn", "gn", "strong_dfc", "strong_dfc_single"
]


MAX_STEPS = 10_000_000
"""Most time points of one simulation (``simulation.steps``, ``t_max / dt``, sleep steps)."""
MAX_TIME = 1e6
"""Longest simulated time ``t_max`` (units of tau_u)."""
MAX_EPOCHS = 1_000_000
"""Most epochs of a training or its feedback pre-training."""
MAX_SEED = 2**63 - 1
"""Largest seed (torch and numpy take seeds in ``[0, 2**63 - 1]``)."""


class ConfigError(ValueError):
    """A configuration is invalid; the one-line message names the source, the field, its value
    and what is allowed; ``problems`` lists the bad fields one text each."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


UnitFloat = Annotated[float, Field(ge=0, lt=1)]
"""A finite number in [0, 1) (Adam's betas, momentum)."""
Betas = Annotated[tuple[UnitFloat, UnitFloat], BeforeValidator(_as_tuple)]
"""Adam's ``(beta1, beta2)``, each in [0, 1); TOML writes it as a list of two numbers."""
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A seed: an integer in [0, 2**63 - 1]."""


def _plain(v: Any) -> Any:
    """numpy scalars and paths given from Python as plain int/float/bool/str (TOML and JSON
    never produce them; strict mode would refuse them)."""
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


class _Section(BaseModel):
    # strict: TOML types are enforced (no bool for a number, no string for a bool, an integer
    # field takes no float; an integer for a float field is fine); every float is finite
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        strict=True,
        allow_inf_nan=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _plain(v) for k, v in data.items()}
        return data


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


class SimulationConfig(_Section):
    """How the closed-loop dynamics are integrated."""

    solver: Solver = "etdrk4"
    """``etdrk4`` (default): adaptive exponential Runge-Kutta on the continuous-time dynamics
    (``neurodfc.integrators``), with the DFC update integrated alongside; at the default
    tolerances its DFC update lies within about 1e-4 of the dt -> 0 limit and it is faster than
    the reference scheme (docs/performance.md). ``euler_reference``: the fused forward-Euler
    scheme of the official code (honours inst_transmission / proactive_controller /
    inst_system_dynamics; needed for noise; the paper-reproduction configs in ``models/`` pin
    it because their hyperparameters were tuned with it); others: torchdiffeq's ``odeint``
    methods on the continuous-time vector field (``dopri5``, ``bosh3``, ``adaptive_heun`` are
    adaptive; ``euler``, ``midpoint``, ``rk4`` fixed-step)."""
    dt: float = Field(default=0.02, gt=0)
    """Step size ``dt`` (units of tau_u); for adaptive solvers, the first step."""
    steps: int | None = Field(default=None, ge=2, le=MAX_STEPS)
    """Number of time points simulated (the reference code's tmax_di); t_max = (steps - 1) dt.
    Default: 1000 unless ``t_max`` is given (use :attr:`n_steps` for the resolved value)."""
    t_max: float | None = Field(default=None, gt=0, le=MAX_TIME)
    """Simulated time (units of tau_u, at most 1e6); overrides ``steps`` when given."""
    inst_transmission: bool = True
    """Reference scheme: layer i at step t+1 reads layer i-1 at t+1 (layers swept bottom-up)."""
    proactive_controller: bool = True
    """Reference scheme: the apical input at step t+1 uses u[t+1] instead of u[t]."""
    inst_system_dynamics: bool = False
    """Reference scheme: ``v_i = v_i^ff + v_i^fb`` instantaneously (no v-dynamics)."""
    record_every: int = Field(default=10, ge=1)
    """Record the trajectory every k steps (and always the last step)."""
    rtol: float | None = Field(default=None, gt=0, le=1)
    """Relative tolerance of adaptive solvers; ``None`` = the solver's default (``etdrk4``: 2e-4,
    relative to the deviation from the feedforward state, about 1e-4 on the MNIST DFC update;
    torchdiffeq: 1e-7). See :attr:`tolerances`."""
    atol: float | None = Field(default=None, gt=0)
    """Absolute tolerance of adaptive solvers; ``None`` = the solver's default (``etdrk4``:
    1e-12; torchdiffeq: 1e-9)."""
    convergence_threshold: float = Field(default=1e-5, gt=0)
    """Converged if ``|r_L - (r_L* - alpha u)| / |r_L^-|`` is below this (reference: 1e-5)."""
    divergence_threshold: float = Field(default=1.0, gt=0)
    """Diverged if the same ratio exceeds this (reference: 1)."""
    epsilon: float = Field(default=0.5, gt=0, le=1)
    """Converged also needs ``|e(T)| < epsilon^2 |e(0)|`` (reference epsilon_di = 0.5)."""
    early_stop: bool = False
    """Reference scheme: stop once every sample has converged and complete the trajectory sums
    for the remaining steps in closed form (the state taken as constant; not bit-exact, see
    docs/performance.md)."""
    max_step: float | None = Field(default=None, gt=0)
    """``etdrk4``: largest step (units of tau_u; None = unbounded). DFC-SS needs only the final
    state: rtol 1e-2 with max_step 0.5 gives about 8e-5 on MNIST with 201 evaluations (DFC at the
    default tolerances: 486)."""
    order: int = Field(default=1, ge=1, le=1)
    """``linear_response``: order of the expansion in the voltage deviations (only 1, the
    linearised closed loop, is implemented; docs/linear_response.md)."""
    discretisation: Literal["continuous", "reference_euler"] = "continuous"
    """``linear_response``: the time discretisation it reproduces: ``continuous`` (the
    continuous-time dynamics, the dt -> 0 limit that ``etdrk4`` approximates) or
    ``reference_euler`` (the reference scheme's steps, ``dt``, ``steps``, its
    ``proactive_controller`` flag; needs ``inst_transmission = true``)."""
    linear_response_tol: float = Field(default=1e-6, gt=0, le=1)
    """``linear_response``: samples whose a-posteriori estimate of the relative error (the
    size of the first neglected term) exceeds this, or whose linearised loop is unstable, are
    simulated by :attr:`fallback_solver` instead."""
    fallback_solver: IntegratingSolver | None = None
    """``linear_response``: the integrating solver of the samples outside the series' range
    (with this section's other settings); None: ``etdrk4`` for the continuous discretisation,
    ``euler_reference`` for ``reference_euler``."""

    @model_validator(mode="after")
    def _bounded_horizon(self) -> SimulationConfig:
        if self.t_max is not None and self.t_max / self.dt + 1 > MAX_STEPS:
            raise ValueError(
                f"simulation.t_max / simulation.dt = {self.t_max} / {self.dt} gives more than "
                f"{MAX_STEPS} time points; raise dt or lower t_max"
            )
        if self.t_max is None and (self.n_steps - 1) * self.dt > MAX_TIME:
            raise ValueError(
                f"simulation.steps x simulation.dt = {self.n_steps - 1} x {self.dt} simulates "
                f"more than t_max = {MAX_TIME:g} (units of tau_u); lower dt or steps"
            )
        return self

    @property
    def n_steps(self) -> int:
        """Number of simulated time points (initial state included)."""
        if self.t_max is not None:
            return max(2, round(self.t_max / self.dt) + 1)
        return self.steps if self.steps is not None else 1000

    @property
    def tolerances(self) -> tuple[float, float]:
        """``(rtol, atol)`` with ``None`` resolved to the solver's default."""
        default = ETDRK4_TOLERANCES if self.solver == "etdrk4" else ODEINT_TOLERANCES
        return (
            self.rtol if self.rtol is not None else default[0],
            self.atol if self.atol is not None else default[1],
        )

    @property
    def horizon(self) -> float:
        """Simulated time ``T`` in units of tau_u."""
        return self.t_max if self.t_max is not None else (self.n_steps - 1) * self.dt


class LossConfig(_Section):
    """Output target ``r_L* = r_L^- - lam dL/dr_L`` (paper eq. 2)."""

    loss: Literal["mse", "cross_entropy"] = "mse"
    """Loss L: mean squared error, or softmax cross-entropy on a linear output."""
    lam: float = Field(default=0.05, gt=0)
    """Target step size ``lambda`` (the reference code's target_stepsize)."""
    reduction: Literal["mean", "sum", "sum_of_sample_means"] = "mean"
    """Which loss is differentiated for the target: ``mean`` = PyTorch's batch mean (the
    reference code; per-sample step lam/B, and lam/(B n_L) for MSE); ``sum`` = the sum over
    batch and (MSE) output units (per-sample step lam; MSE gradient ``2 (r - y)``);
    ``sum_of_sample_means`` = B times PyTorch's mean, i.e. each sample's loss (MSE: its mean
    over the n_L units) summed over the batch: the Strong-DFC code's ``B * nn.MSELoss()``
    (MSE gradient ``2 (r - y) / n_L``; cross-entropy: the same as ``sum``)."""


class DataConfig(_Section):
    """The data a simulation or training reads."""

    dataset: Literal["teacher_student", "mnist", "fashion_mnist", "mnist_autoencoder", "random"] = (
        "teacher_student"
    )
    """Dataset name; ``random`` draws inputs U[-1, 1] and random regression targets."""
    data_dir: str | None = None
    """Folder with the IDX files; else NEURODFC_DATA, Debian's folder, the user cache."""
    n_train: int = Field(default=5000, ge=1)
    """Teacher-student / random: number of training samples."""
    n_val: int = Field(default=1000, ge=0)
    """Teacher-student / random: number of validation samples (image data: see val_size)."""
    n_test: int = Field(default=1000, ge=1)
    """Teacher-student / random: number of test samples."""
    val_size: int = Field(default=5000, ge=0)
    """Image data: validation samples drawn from the 60k training set with the run's seed."""
    max_train_samples: int | None = Field(default=None, ge=1)
    """Use only the first N training samples (quick runs)."""
    max_test_samples: int | None = Field(default=None, ge=1)
    """Use only the first N validation and test samples (quick runs)."""
    teacher_seed: Seed = 0
    """Seed of the teacher network and its inputs (teacher-student task)."""


class MethodConfig(_Section):
    """The learning method that turns a batch into forward-weight updates."""

    name: MethodName = "dfc"
    """``bp``, ``dfa``, ``dfc`` (rule averaged over the simulated trajectory), ``dfc_ss`` (rule at
    the last simulated step), ``dfc_ssa`` (Lemma-1 steady state, no simulation), ``mn`` (damped
    minimum-norm target), ``gn`` (damped Gauss-Newton over all weights and biases),
    ``strong_dfc`` / ``strong_dfc_single`` (Strong-DFC, two-phase / single-phase; see
    ``[strong]``)."""
    rule: Literal["nonlinear_difference", "voltage_difference", "derivative_matrix"] = (
        "nonlinear_difference"
    )
    """Forward plasticity rule: ``phi(v) - phi(v^ff)`` (paper eq. 5), ``v - v^ff`` (eq. 9), or
    ``phi'(v^-) (v - v^ff)`` (the reference code's derivative matrix)."""
    include_non_converged: bool = False
    """Whether samples whose simulation did not converge contribute to the update
    (reference: include_non_converged_samples; excluded samples count in the batch mean)."""
    gamma: float = Field(default=0.0, ge=0)
    """Damping ``gamma`` of the MN / GN updates ``J^T (J J^T + gamma I)^-1 delta`` (>= 0)."""


class TrainingConfig(_Section):
    """Optimisation of the forward weights."""

    epochs: int = Field(default=100, ge=1, le=MAX_EPOCHS)
    """Number of training epochs."""
    batch_size: int = Field(default=128, ge=1)
    """Minibatch size B."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Optimiser of the forward weights."""
    lr: float = Field(default=1e-3, gt=0)
    """Learning rate (divided by ``loss.lam`` when ``normalize_lr``)."""
    normalize_lr: bool = False
    """Use ``lr / lam`` as the learning rate (reference: normalize_lr)."""
    betas: Betas = (0.99, 0.99)
    """Adam's ``(beta1, beta2)``, each in [0, 1)."""
    eps: float = Field(default=1e-8, gt=0)
    """Adam's epsilon."""
    momentum: float = Field(default=0.0, ge=0, lt=1)
    """SGD momentum."""
    weight_decay: float = Field(default=0.0, ge=0)
    """L2 weight decay of the forward weights (reference: forward_wd)."""
    clip_grad_norm: float = Field(default=1.0, ge=0)
    """Clip gradient norms to this value (0: no clipping)."""
    clip_mode: Literal["per_parameter", "global"] = "per_parameter"
    """``per_parameter``: each W_i and b_i clipped on its own (the reference code's DFC layers);
    ``global``: the norm of all forward gradients together."""
    shuffle: bool = True
    """Reshuffle the training set every epoch (seeded)."""
    max_bad_fraction: float = Field(default=0.5, ge=0, lt=1)
    """Stop the run (exit status 1) when more than this share of an epoch's simulated samples
    were non-finite or diverged; 0 stops at the first bad sample. The epoch is not saved."""


class FeedbackLearningConfig(_Section):
    """The noise-driven sleep phase that learns Q (paper eq. 12; reference fb phase)."""

    alpha: float = Field(default=0.613, ge=0)
    """Controller leak during the sleep phase (alpha_fb)."""
    k_p: float = Field(default=0.157, ge=0)
    """Proportional gain during the sleep phase (k_p_fb)."""
    tau_ratio: float = Field(default=0.0063, gt=0)
    """``tau_v/tau_u`` during the sleep phase (time_constant_ratio_fb)."""
    apical_tau: float | None = Field(default=None, gt=0)
    """Apical time constant during the sleep phase (apical_time_constant_fb); omitted/None =
    instantaneous (the Table-1 configs set 0.325 for MNIST)."""
    dt: float = Field(default=0.00203, gt=0)
    """Euler-Maruyama step (dt_di_fb)."""
    steps: int = Field(default=48, ge=3, le=MAX_STEPS)
    """Simulated time points per sleep batch (tmax_di_fb)."""
    sigma: float = Field(default=0.00152, gt=0)
    """Apical noise std in hidden layers (sigma_fb)."""
    sigma_output: float | None = Field(default=None, ge=0)
    """Apical noise std in the output layer (None: same as sigma)."""
    inst_transmission: bool = True
    """inst_transmission_fb of the reference scheme."""
    scale_floor: float = Field(default=0.01, gt=0)
    """The update is scaled by 1/max(sigma, floor)^2 (reference: floor 0.01)."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Optimiser of Q."""
    lr: float = Field(default=5.27e-4, gt=0)
    """Learning rate of Q during training (lr_fb)."""
    lr_init: float = Field(default=3.17e-4, gt=0)
    """Learning rate of Q during pre-training (lr_fb_init)."""
    betas: Betas = (0.99, 0.99)
    """Adam's betas for Q (beta1_fb, beta2_fb), each in [0, 1)."""
    eps: float = Field(default=1.56e-6, gt=0)
    """Adam's epsilon for Q (epsilon_fb)."""
    weight_decay: float = Field(default=0.001, ge=0)
    """Coupled L2 decay of Q (feedback_wd): the beta Q term of eq. 12."""
    clip_grad_norm: float = Field(default=1.0, ge=0)
    """Clip the norm of all Q gradients together (0: no clipping)."""
    pretrain_epochs: int = Field(default=10, ge=0, le=MAX_EPOCHS)
    """Sleep-only epochs before training (epochs_fb)."""
    extra_epochs: int = Field(default=2, ge=0, le=MAX_EPOCHS)
    """Further sleep-only passes after each training epoch (extra_fb_epochs)."""


# --- analysis logging (issue 4: analysis layer) -------------------------------------------
AnalysisMetric = Literal["alignment", "conditions", "stability", "convergence", "nullspace"]
AlignmentReference = Literal["bp", "gn", "mn", "ssa"]


def _default_metrics() -> list[AnalysisMetric]:
    return ["alignment", "conditions", "stability"]


def _default_references() -> list[AlignmentReference]:
    return ["bp", "gn", "mn", "ssa"]


class AnalysisConfig(_Section):
    """Metrics logged during training (see ``neurodfc.analysis``); off unless ``log_interval``
    is > 0. Logged values go into ``metrics.nc`` with dim ``step``."""

    log_interval: int = Field(default=0, ge=0)
    """Log the metrics of every k-th minibatch of each epoch (batch index within the epoch
    ``% k == 0``, as the reference code's log_interval); 0 = off."""
    metrics: list[AnalysisMetric] = Field(default_factory=_default_metrics)
    """Which metric groups to log: ``alignment`` (angles of the update against BP, GN, MN,
    DFC-SSA), ``conditions`` (Conditions 1-3, feedback alignment), ``stability`` (max real
    eigenvalues of the A matrices), ``convergence`` (status, settling time, decay rate),
    ``nullspace`` (per layer, the relative norm of the weight update's component in the null
    space of ``d r_L / d W_i``; reference: save_nullspace_norm_ratio)."""
    against: list[AlignmentReference] = Field(default_factory=_default_references)
    """References of the alignment angles."""
    mn_rule: Literal["auto", "nonlinear_difference", "voltage_difference"] = "auto"
    """How the MN reference turns ``dv = J^T (J J^T + gamma I)^-1 dL/dr_L`` into a weight
    update: ``nonlinear_difference`` = ``mean_b [phi(v^- + dv) - phi(v^-)] r^-T``,
    ``voltage_difference`` = ``mean_b dv r^-T``; ``auto`` = as the reference code, which uses
    the nonlinear one exactly when ``method.rule = "nonlinear_difference"`` (every paper
    config) and the voltage difference otherwise."""
    ssa_rates: Literal["simulated", "analytic"] = "simulated"
    """Presynaptic rates of the SSA reference (Lemma-1 ``dv``): ``simulated`` = the simulated
    end state's rates (the reference code's NDI angle; excluded samples keep the feedforward
    rates), ``analytic`` = the Lemma-1 rates (the DFC-SSA update itself)."""
    gamma: float = Field(default=0.1, ge=0)
    """Damping ``gamma`` of the GN and MN reference updates (reference: gn_damping)."""
    gammas: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [0.0, 0.1, 1.0])
    """Dampings of the feedback-alignment angle ``angle(Q, J^T (J J^T + gamma I)^-1)``."""
    stability_at: Literal["auto", "simulated", "analytic", "feedforward"] = "auto"
    """State at which the A matrices are linearised; ``auto``: the simulated final state for
    simulating methods (reference: eigenvalues_bcn), the Lemma-1 state otherwise."""
    max_samples: int | None = Field(default=None, ge=1)
    """Use only the first N samples of a logged minibatch (None: the whole batch)."""


# --- Strong-DFC (issue 6: Meulemans et al., ICML 2022; neurodfc.strong) -------------------
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


class ExperimentConfig(_Section):
    """A whole experiment: the DFC system, how it is simulated and the data it sees."""

    name: str = "experiment"
    """Free-form name used in reports."""
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    apical: ApicalConfig = Field(default_factory=ApicalConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    feedback_learning: FeedbackLearningConfig = Field(default_factory=FeedbackLearningConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    strong: StrongConfig = Field(default_factory=StrongConfig)
    dtype: Literal["float32", "float64"] = "float64"
    """Floating-point precision of every tensor."""
    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``cuda:1`` ...)."""
    seed: Seed = 0
    """Seed of weight initialisation, data splits and noise (0 .. 2**63 - 1)."""

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|mps|cuda(:[0-9]{1,3})?", v):
            raise ValueError(
                f'device = {json.dumps(v)}: must be "cpu", "cuda", "cuda:N" (N = 0, 1, ...) or '
                '"mps"'
            )
        return v

    @model_validator(mode="after")
    def _check_consistency(self) -> ExperimentConfig:
        sim, ctrl = self.simulation, self.controller
        if (
            sim.solver in FIXED_STEP_SOLVERS
            and not sim.inst_system_dynamics
            and sim.dt > ctrl.tau_ratio
        ):
            raise ValueError(
                f"simulation.dt = {sim.dt} must lie in (0, controller.tau_ratio = "
                f"{ctrl.tau_ratio}] for the fixed-step solver {sim.solver!r}: forward Euler is "
                "unstable for dt > tau_v/tau_u"
            )
        strong = self.method.name in ("strong_dfc", "strong_dfc_single")
        if sim.solver != "euler_reference" and not strong:
            if self.noise.sigma > 0 or (self.noise.sigma_output or 0.0) > 0:
                raise ValueError(
                    f"noise.sigma > 0 needs simulation.solver = 'euler_reference' (Euler-Maruyama"
                    f"); {sim.solver!r} integrates the noiseless ODE"
                )
            if sim.inst_system_dynamics:
                raise ValueError(
                    "simulation.inst_system_dynamics = true is a flag of the reference scheme: it "
                    f"needs simulation.solver = 'euler_reference', got {sim.solver!r}"
                )
        if self.apical.tau is not None and sim.solver in FIXED_STEP_SOLVERS:
            if sim.dt > self.apical.tau:
                raise ValueError(
                    f"simulation.dt = {sim.dt} must lie in (0, apical.tau = {self.apical.tau}]"
                )
        fl = self.feedback_learning
        if self.feedback.learned and fl.dt > fl.tau_ratio:
            raise ValueError(
                f"feedback_learning.dt = {fl.dt} must lie in (0, feedback_learning.tau_ratio = "
                f"{fl.tau_ratio}] (forward Euler of the sleep phase)"
            )
        if self.feedback.learned and self.method.name in ("bp", "mn", "gn"):
            raise ValueError(
                f"feedback.learned = true has no effect with method.name = "
                f"{self.method.name!r}; set it to false"
            )
        if self.loss.loss == "cross_entropy" and self.network.sizes[-1] < 2:
            raise ValueError(
                'loss.loss = "cross_entropy" needs network.sizes[-1] >= 2 classes, got '
                f"network.sizes = {self.network.sizes}"
            )
        fl_tau = fl.apical_tau
        if self.feedback.learned and fl_tau is not None and fl.dt > fl_tau:
            raise ValueError(
                f"feedback_learning.dt = {fl.dt} must lie in (0, feedback_learning.apical_tau = "
                f"{fl_tau}] (forward Euler of the sleep phase)"
            )
        return self

    @model_validator(mode="after")
    def _check_strong(self) -> ExperimentConfig:
        """The Strong-DFC methods integrate both phases with forward Euler at
        ``simulation.dt`` / ``feedback_learning.dt`` whatever ``simulation.solver`` says."""
        if self.method.name not in ("strong_dfc", "strong_dfc_single"):
            return self
        sim, single = self.simulation, self.method.name == "strong_dfc_single"
        if sim.inst_system_dynamics:
            raise ValueError(
                f"simulation.inst_system_dynamics = true is not supported by method.name = "
                f"{self.method.name!r}; set it to false"
            )
        fl, ou = self.feedback_learning, self.strong.noise == "ou"
        phases = [("simulation", sim.dt, self.controller.tau_ratio, "controller.tau_ratio")]
        if not single and self.apical.tau is not None:
            phases.append(("simulation", sim.dt, self.apical.tau, "apical.tau"))
        if ou and (self.noise.sigma > 0 or (self.noise.sigma_output or 0.0) > 0):
            phases.append(("simulation", sim.dt, self.strong.tau_noise, "strong.tau_noise"))
        if self.feedback.learned and not single and fl.apical_tau is not None:
            phases.append(
                ("feedback_learning", fl.dt, fl.apical_tau, "feedback_learning.apical_tau")
            )
        if self.feedback.learned and ou and (fl.sigma > 0 or (fl.sigma_output or 0.0) > 0):
            phases.append(("feedback_learning", fl.dt, self.strong.tau_noise, "strong.tau_noise"))
        for section, dt, bound, name in phases:
            if dt > bound:
                raise ValueError(
                    f"{section}.dt = {dt} must lie in (0, {name} = {bound}] for method.name = "
                    f"{self.method.name!r} (forward Euler)"
                )
        return self


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TOML_START = tuple("[{\"'+-.0123456789")


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {p!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``section.field=value``; the value is read as a TOML literal (``1e-3``, ``true``,
    ``[1, 2]``, ``"text"``); a bare word that is no TOML literal is taken as a string
    (``data.dataset=mnist``), anything else that fails to parse is an error.

    Args:
        item: one ``--set`` argument.

    Returns:
        ``(dotted key, value)``.

    Raises:
        ConfigError: no ``=``, a malformed key, an empty or malformed value.

    Examples:
        >>> parse_override("controller.k_p=1.5")
        ('controller.k_p', 1.5)
        >>> parse_override('network.hidden_activation=["tanh", "relu"]')
        ('network.hidden_activation', ['tanh', 'relu'])
        >>> parse_override("data.dataset=mnist")
        ('data.dataset', 'mnist')
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. controller.k_p=0.5")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not _KEY.fullmatch(key):
        raise ConfigError(
            f"--set {item!r}: {key!r} is not a key; expected section.field=value with names of "
            "letters, digits and _ (e.g. controller.k_p=0.5)"
        )
    if not raw:
        raise ConfigError(
            f'--set {key}= has no value; give a TOML value (1.5, true, "text", [1, 2])'
        )
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as err:
        if raw.startswith(_TOML_START) or raw in ("true", "false", "inf", "nan"):
            raise ConfigError(f"--set {key}={raw}: not a valid TOML value ({err})") from None
        return key, raw
    if list(parsed) != ["v"]:
        raise ConfigError(f"--set {key}={raw!r}: one value expected")
    return key, parsed["v"]


def config_from_dict(
    tree: dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    source: str = "<dict>",
    model: type[ExperimentConfig] = ExperimentConfig,
) -> ExperimentConfig:
    """Validate a nested dict (as read from TOML) with optional ``section.field=value``
    overrides; raises :class:`ConfigError` with one line naming every bad field, its value
    and what it allows.

    Args:
        tree: the config as nested dicts (sections as sub-dicts); not modified.
        overrides: ``section.field=value`` strings applied on top (see :func:`parse_override`).
        source: where the tree came from, for error messages.
        model: the config class (:class:`ExperimentConfig` or a subclass).

    Examples:
        >>> cfg = config_from_dict({"network": {"sizes": [4, 3, 2]}}, ["controller.k_p=0.5"])
        >>> cfg.network.sizes, cfg.controller.k_p, cfg.simulation.solver
        ([4, 3, 2], 0.5, 'etdrk4')
        >>> config_from_dict({"controller": {"alpha": -1}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        neurodfc.config.ConfigError: <dict>: controller.alpha = -1: must be a finite number >= 0
    """
    tree = _copy_tree(tree)
    marks = []
    for item in overrides:
        key, value = parse_override(item)
        _set_path(tree, key, value)
        marks.append(key)
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        problems = validation_problems(err, model, marks)
        raise ConfigError(one_line(source, problems), problems) from None


def _copy_tree(tree: Any) -> Any:
    """A deep copy of nested dicts and lists (values shared: they are immutable scalars)."""
    if isinstance(tree, dict):
        return {k: _copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_copy_tree(v) for v in tree]
    return tree


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; a missing, unreadable, binary, malformed or empty file raises
    :class:`ConfigError` naming it.

    Args:
        path: the TOML file.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a TOML config file")
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{p}: not a UTF-8 TOML file (byte {err.start} is 0x{raw[err.start]:02x})"
        ) from None
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML ({err})") from None
    if not tree:
        raise ConfigError(
            f"{p}: holds no settings (the file is empty or only comments); start from a config "
            "in models/"
        )
    return tree


def load_config(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    model: type[ExperimentConfig] = ExperimentConfig,
) -> ExperimentConfig:
    """Load a TOML config (e.g. from ``models/``) into a validated, frozen config.

    Args:
        path: the TOML file.
        overrides: ``section.field=value`` strings applied on top (the CLI's ``--set``).
        model: the config class (:class:`ExperimentConfig` or a subclass).
    """
    return config_from_dict(load_toml(path), overrides, source=str(path), model=model)


def to_toml(cfg: BaseModel) -> str:
    """Serialise a config as TOML with tomli-w (sections as tables, ``None`` fields omitted);
    the result loads back into an equal config.

    Args:
        cfg: the config (any pydantic model of this module).

    Examples:
        >>> text = to_toml(config_from_dict({"simulation": {"atol": 1e-12}}))
        >>> config_from_dict(tomllib.loads(text)).simulation.atol
        1e-12
    """
    _check_representable(cfg)
    return tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True))


def _check_representable(cfg: BaseModel, prefix: str = "") -> None:
    """TOML has no null: a ``None`` is written by omission, which only round-trips when the
    field's default is ``None`` too."""
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            _check_representable(value, f"{prefix}{name}.")
        elif value is None and field.default is not None:
            raise ConfigError(
                f"{prefix}{name} = None cannot be written to TOML (its default is "
                f"{field.default!r}); set a value"
            )
