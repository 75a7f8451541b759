"""The settings of one fused reference-Euler run, and its raw result."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch

from neurodfc.fastpath.ops import Scalar, any_positive

DEFAULT_CHUNK = 16
"""Steps per accumulation product (measured on CPU: 4 to 32 within 10 %, 16 best)."""
EARLY_STOP_RATE = 1e-6
"""Early stop also needs the rule signals to change by less than this (relative) per step."""

ConvergedTest = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``converged(r_L, u, u_int)`` -> bool [B]: the convergence test of early termination."""


@dataclass(frozen=True)
class FusedSettings:
    """What one run of the fused reference scheme computes: the scheme, the controller, the
    noise, the sums and the recording (the tensors and the stateful hooks -- generator, noise
    source, feedback filter, convergence test -- are passed to
    :func:`neurodfc.fastpath.run.run_fused` separately).

    The scheme (step t -> t+1, t = 0..n_steps-2)::

        e = r* - r_L[t];  u_int[t+1] = u_int[t] + dt (e - alpha u[t]);  u[t+1] = u_int[t+1] + k_p e
        a_i[t+1] = a_i[t] + dt/tau_A (-a_i[t] + Q_i u[t+1 if proactive else t]) (+ noise)
        vb_i[t+1] = W_i r_{i-1}[t+1 if inst_transmission else t] + b_i
        v_i[t+1] = v_i[t] + dt/tau_ratio (a_i + vb_i - v_i[t])   (or a_i + vb_i if inst_system)

    (``leak = 'paper'``: ``e - alpha u_int[t]``.) ``accumulate`` sums the forward rule's
    ``d_i[t] r_{i-1}[t]^T`` and ``d_i[t]`` over t = 1..n_steps-1 (``d_i[0] = 0``);
    ``accumulate_feedback`` sums ``a_i[t]^T u[t+1]``.

    In an ensemble (a leading member dimension M on the tensors) ``alpha``, ``k_p``,
    ``tau_ratio`` and the noise levels may be tensors ``[M, 1, 1]``, one value per member
    (:mod:`neurodfc.fastpath.ops`); everything else is shared.
    """

    dt: float
    """Euler step (units of tau_u)."""
    n_steps: int
    """Number of time points (initial state included)."""
    alpha: Scalar
    """Controller leak."""
    k_p: Scalar
    """Proportional gain."""
    tau_ratio: Scalar
    """``tau_v / tau_u``."""
    leak: str
    """Leak convention (``reference``: ``alpha u``, or ``paper``: ``alpha u_int``)."""
    inst_transmission: bool
    """Layer i reads layer i-1 of the same step."""
    proactive_controller: bool
    """The apical input uses ``u[t+1]``."""
    inst_system_dynamics: bool
    """``v = v^b + a`` without v-dynamics."""
    record_steps: tuple[int, ...]
    """Time points whose ``r_L``, ``u``, ``e`` (and ``v``, ``a``) are recorded."""
    record_v: bool = False
    """Also record every layer's voltage."""
    accumulate: str | None = None
    """Forward rule whose signal is summed (None: no sums)."""
    noise: tuple[Scalar, Scalar] = (0.0, 0.0)
    """Apical noise std ``(sigma, sigma_output)``."""
    apical_tau: float | None = None
    """Apical time constant (None: instantaneous, ``tau_A = dt``)."""
    accumulate_feedback: bool = False
    """Sum ``a_i^T u`` (the sleep-phase rule)."""
    chunk: int = DEFAULT_CHUNK
    """Steps per accumulation product."""
    early_stop: bool = False
    """Stop once every sample has converged (closed-form completion)."""
    record_apical: bool = False
    """Also record every layer's apical voltage."""
    error: str = "difference"
    """``difference`` (``e = r* - r_L``) or ``softmax`` (``e = r* - softmax(r_L)``)."""
    tau_noise: float | None = None
    """Ornstein-Uhlenbeck noise of this time constant instead of white noise (None: white)."""
    cuda_graphs: bool = True
    """On a CUDA device, replay whole periods of steps as CUDA graphs where the run allows
    (:mod:`neurodfc.fastpath.graphs`)."""

    @cached_property
    def tau_a(self) -> float:
        """The apical time constant (``dt`` when instantaneous)."""
        return self.apical_tau if self.apical_tau is not None else self.dt

    @cached_property
    def instantaneous(self) -> bool:
        """Whether the apical input follows the feedback at once (``tau_A = dt``)."""
        return self.tau_a == self.dt

    @cached_property
    def inst_tx(self) -> bool:
        """Whether layer i reads layer i-1 of the new step."""
        return self.inst_transmission or self.inst_system_dynamics

    @cached_property
    def noisy(self) -> bool:
        """Whether apical noise is injected."""
        return any_positive(self.noise[0]) or any_positive(self.noise[1])

    @cached_property
    def slots(self) -> int:
        """Time slots of the rate buffers (``chunk + 1`` with sums, else 1)."""
        return self.chunk + 1 if self.accumulate is not None else 1

    @cached_property
    def c_v(self) -> Scalar:
        """``dt / tau_ratio``."""
        return self.dt / self.tau_ratio

    @cached_property
    def c_a(self) -> float:
        """``dt / tau_A``."""
        return self.dt / self.tau_a

    @cached_property
    def noise_scale(self) -> float:
        """White noise's factor ``sqrt(dt) / tau_A``."""
        return math.sqrt(self.dt) / self.tau_a


@dataclass
class EulerRun:
    """Raw result of :func:`neurodfc.fastpath.euler_reference_fast` (wrapped into a Solution by
    ``simulate``)."""

    v: list[torch.Tensor]
    """Final voltages per layer."""
    r: list[torch.Tensor]
    """Final rates per layer."""
    vb: list[torch.Tensor]
    """Final basal voltages per layer."""
    u: torch.Tensor
    """Final control."""
    u_int: torch.Tensor
    """Final integral state of the controller."""
    rec_steps: list[int]
    """The recorded time points."""
    r_rec: torch.Tensor
    """Recorded output rates [n_rec, B, n_L]."""
    u_rec: torch.Tensor
    """Recorded control [n_rec, B, n_L]."""
    e_rec: torch.Tensor
    """Recorded output error [n_rec, B, n_L]."""
    v_rec: list[torch.Tensor]
    """Recorded voltages per layer [n_rec, B, n_i] (empty unless asked for)."""
    steps_run: int
    """Steps simulated (fewer than ``n_steps - 1`` after an early stop)."""
    a_rec: list[torch.Tensor] = field(default_factory=list)
    """Recorded apical voltages per layer (empty unless asked for)."""
    acc_W: list[torch.Tensor] = field(default_factory=list)
    """Sums ``sum_t d_i^T r_{i-1}`` per layer (empty without ``accumulate``)."""
    acc_b: list[torch.Tensor] = field(default_factory=list)
    """Sums ``sum_t sum_b d_i`` per layer (empty without ``accumulate``)."""
    acc_Q: list[torch.Tensor] = field(default_factory=list)
    """Sleep-phase sums ``sum_t a_i^T u`` per layer (empty without ``accumulate_feedback``)."""
