"""Config sections of learning: loss and target, data, method, training of the forward
weights and the sleep phase that learns the feedback weights (``[loss]``, ``[data]``,
``[method]``, ``[training]``, ``[feedback_learning]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurodfc.config.base import MAX_EPOCHS, MAX_STEPS, Betas, MethodName, Seed, _Section


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
