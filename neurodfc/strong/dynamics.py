"""The noisy closed loop of Strong-DFC, on the shared core.

Strong-DFC's components (the softmax error, Ornstein-Uhlenbeck noise, the high-pass filtered
control of the feedback rule, its noise realisation) plug into the reference scheme of
:mod:`neurodfc.fastpath` / :meth:`neurodfc.core.loop.ClosedLoop.euler_step`: one forward-Euler
scheme (the reference discretisation of :mod:`neurodfc.solve`: layers swept bottom-up with
``inst_transmission``, the apical input taking ``u[t+1]`` when ``proactive``) with the
successor code's additions (Meulemans, Tristany Farinha, Cervera, Sacramento, Grewe, ICML
2022; github mariacer/strong_dfc). Step ``t -> t+1`` (t = 0..T-2), time in units of ``tau_u``::

    e[t]      = r_L* - r_L[t]                 (difference)
              = r_L* - softmax(r_L[t])        (softmax: -dL/dr_L of the cross-entropy)
    u_int[t+1] = u_int[t] + dt (e[t] - alpha u[t])          (reference leak; paper: alpha u_int[t])
    u[t+1]    = u_int[t+1] + k_p e[t]
    c_i       = Q_i u[t+1]  (proactive)  or  Q_i u[t]
    a_i[t+1]  = c_i                                  (instantaneous apical compartment)
              = a_i[t] + dt/tau_A (c_i - a_i[t])     (apical time constant tau_A)
    noise     white: a_i[t+1] += sigma_i sqrt(dt)/tau_A' xi_i[t]       (tau_A' = tau_A or dt)
              ou:    eps_i[t+1] = (1 - dt/tau_eps) eps_i[t] + (dt/tau_eps)/sqrt(dt) xi_i[t]
                     a_i[t+1] += sigma_i eps_i[t+1]
    vb_i[t+1] = W_i r_{i-1}[t+1 if inst_transmission else t] + b_i
    v_i[t+1]  = v_i[t] + dt/tau_v (a_i[t+1] + vb_i[t+1] - v_i[t]),   r_i = phi_i(v_i)

``xi ~ N(0, I)`` i.i.d.; ``sigma_i`` is ``sigma`` for hidden layers and ``sigma_output`` for the
output layer. The OU recursion is the Euler scheme of ``tau_eps d eps = -eps dt + dW``: its
stationary variance is ``1/(2 tau_eps)`` and at frequencies well below ``1/tau_eps`` it has the
intensity of unit white noise, so ``sigma`` means the same in both noise kinds.

Learning signals, summed on the fly (nothing of the trajectory is stored unless recorded):

* forward rule ``d_i[t]`` (nonlinear difference ``phi(v) - phi(vb)``, voltage difference
  ``v - vb`` or ``phi'(v^-) (v - vb)``) paired with ``r_{i-1}[t]``, summed over t = 0..T-1
  (``d_i[0] = 0``), the successor's continuous update ``-2/(B T) sum_t d_i r_{i-1}^T``;
* feedback rule ``sum_{t=0}^{T-2} a_i[t] u_f[t+1]^T`` with ``u_f = u`` or the high-pass filtered
  ``u_f = u - LP_tau_f(u)``, the low-pass started at ``u[1]`` (:class:`LowPass`), as in the
  successor's single-phase code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from neurodfc.core.filters import LowPass
from neurodfc.core.noise import BlockGaussianNoise
from neurodfc.core.solution import record_steps
from neurodfc.core.teaching import ForwardRule
from neurodfc.fastpath import euler_reference_fast
from neurodfc.network import DFCNetwork

__all__ = [
    "LowPass",
    "StrongDynamics",
    "StrongRun",
    "high_pass",
    "low_pass",
    "output_error",
    "simulate_strong",
]

ErrorKind = Literal["difference", "softmax"]
NoiseKind = Literal["none", "white", "ou"]

NOISE_BLOCK = 16
"""Steps of standard normals drawn at once (float32, cast; the realisation depends on it)."""
CHUNK = 8
"""Steps per accumulation product of the forward rule."""


def low_pass(seq: torch.Tensor, dt: float, tau: float) -> torch.Tensor:
    """:class:`LowPass` with step ``dt`` and time constant ``tau`` applied along the first
    (time) axis of ``seq`` [T, ...]; returns [T, ...].

    Examples:
        >>> import torch
        >>> low_pass(torch.tensor([0.0, 1.0, 1.0]), dt=0.5, tau=1.0)
        tensor([0.0000, 0.5000, 0.7500])
    """
    lp = LowPass(dt, tau)
    return torch.stack([lp.step(s).clone() for s in seq])


def high_pass(seq: torch.Tensor, dt: float, tau: float) -> torch.Tensor:
    """``x - LP_tau(x)`` along the first axis of ``seq`` [T, ...] (:func:`low_pass` with step
    ``dt`` and time constant ``tau``): removes a constant input exactly (the low-pass starts
    at the first sample) and passes fast changes.

    Examples:
        >>> import torch
        >>> high_pass(torch.full((4,), 3.0), dt=0.1, tau=1.0)
        tensor([0., 0., 0., 0.])
    """
    return seq - low_pass(seq, dt, tau)


@dataclass(frozen=True)
class StrongDynamics:
    """Settings of one simulation (see the module docstring for the scheme).

    ``n_steps`` time points (the initial state included); ``tau_ratio = tau_v / tau_u``;
    ``apical_tau = None``: instantaneous apical compartment.
    """

    dt: float
    n_steps: int
    alpha: float
    k_p: float
    tau_ratio: float
    leak: str = "reference"
    inst_transmission: bool = True
    proactive: bool = True
    apical_tau: float | None = None
    noise: NoiseKind = "none"
    sigma: float = 0.0
    sigma_output: float = 0.0
    tau_noise: float = 0.07
    error: ErrorKind = "difference"

    def check(self) -> None:
        """Raise ``ValueError`` for settings forward Euler cannot integrate."""
        if self.n_steps < 2:
            raise ValueError(f"n_steps must be >= 2, got {self.n_steps}")
        if not 0 < self.dt <= self.tau_ratio:
            raise ValueError(
                f"dt = {self.dt} must lie in (0, tau_ratio = {self.tau_ratio}] (forward Euler)"
            )
        if self.apical_tau is not None and self.dt > self.apical_tau:
            raise ValueError(f"dt = {self.dt} must be <= apical_tau = {self.apical_tau}")
        if self.noise == "ou" and self.dt > self.tau_noise:
            raise ValueError(f"dt = {self.dt} must be <= tau_noise = {self.tau_noise}")
        if self.sigma < 0 or self.sigma_output < 0:
            raise ValueError("noise standard deviations must be >= 0")

    @property
    def noisy(self) -> bool:
        """Whether any noise is injected."""
        return self.noise != "none" and (self.sigma > 0 or self.sigma_output > 0)


@dataclass
class StrongRun:
    """Result of :func:`simulate_strong`.

    Final state (step T-1): ``v``, ``r``, ``vb`` (basal ``W_i r_{i-1} + b_i``) per layer [B, n_i],
    ``u``, ``u_int``, ``e`` [B, n_L]. Sums: ``acc_W[i]`` = ``sum_t d_i[t]^T r_{i-1}[t]``
    [n_i, n_{i-1}], ``acc_b[i]`` = ``sum_t sum_b d_i[t]`` [n_i] over ``count_W = T`` points;
    ``acc_Q[i]`` = ``sum_t a_i[t]^T u_f[t+1]`` [n_i, n_L] over ``count_Q = T - 1`` pairs.
    Recorded (every ``record_every`` steps and the last): ``t`` [K], ``r_out``, ``u``, ``e_rec``
    [K, B, n_L].
    """

    v: list[torch.Tensor]
    r: list[torch.Tensor]
    vb: list[torch.Tensor]
    u: torch.Tensor
    u_int: torch.Tensor
    e: torch.Tensor
    n_steps: int
    acc_W: list[torch.Tensor] = field(default_factory=list)
    acc_b: list[torch.Tensor] = field(default_factory=list)
    acc_Q: list[torch.Tensor] = field(default_factory=list)
    t: torch.Tensor | None = None
    r_out: torch.Tensor | None = None
    u_rec: torch.Tensor | None = None
    e_rec: torch.Tensor | None = None

    @property
    def count_W(self) -> int:
        """Time points summed in ``acc_W`` / ``acc_b``."""
        return self.n_steps

    @property
    def count_Q(self) -> int:
        """Pairs summed in ``acc_Q``."""
        return self.n_steps - 1


def output_error(r_target: torch.Tensor, r_out: torch.Tensor, kind: str) -> torch.Tensor:
    """The controller's error from the target ``r_target`` [B, n_L] and the output ``r_out``
    [B, n_L]: ``e = r_L* - r_L`` for ``kind = "difference"``, ``r_L* - softmax(r_L)`` for
    ``"softmax"``."""
    if kind == "softmax":
        return r_target - torch.softmax(r_out, dim=-1)
    return r_target - r_out


@torch.no_grad()
def simulate_strong(
    net: DFCNetwork,
    x: torch.Tensor,
    r_target: torch.Tensor,
    dyn: StrongDynamics,
    *,
    forward_rule: ForwardRule | None = None,
    accumulate_feedback: bool = False,
    tau_f: float | None = None,
    generator: torch.Generator | None = None,
    record_every: int | None = None,
    chunk: int = CHUNK,
) -> StrongRun:
    """Simulate ``dyn`` for inputs ``x`` [B, n_0] and output target ``r_target`` [B, n_L] on
    the shared core: the fused reference scheme (:func:`neurodfc.fastpath.euler_reference_fast`)
    with Strong-DFC's components -- the softmax error, Ornstein-Uhlenbeck noise, the high-pass
    filtered control of the feedback sums and its block noise source.

    Args:
        net: weights ``W_i``, ``b_i`` and feedback ``Q_i`` (read only).
        x: inputs [B, n_0].
        r_target: output target ``r_L*`` [B, n_L].
        dyn: the settings of the simulation (scheme, controller, noise, error).
        forward_rule: sum this forward rule over the trajectory (``acc_W``, ``acc_b``).
        accumulate_feedback: sum ``a_i[t] u_f[t+1]^T`` (``acc_Q``).
        tau_f: high-pass the control in the feedback sum with this low-pass time constant
            (None: raw ``u``).
        generator: random generator of the noise.
        record_every: record ``r_L``, ``u``, ``e`` every k steps (and the last one).
        chunk: steps per accumulation product (a speed knob; the result does not depend on it
            beyond rounding).
    """
    dyn.check()
    T, B = dyn.n_steps, x.shape[0]
    N = sum(net.sizes[1:])
    noisy = dyn.noisy
    source = (
        BlockGaussianNoise((B, N), x.dtype, x.device, generator, NOISE_BLOCK) if noisy else None
    )
    rec = record_steps(T, record_every) if record_every is not None else [0, T - 1]
    run = euler_reference_fast(
        net,
        x,
        r_target,
        dt=dyn.dt,
        n_steps=T,
        alpha=dyn.alpha,
        k_p=dyn.k_p,
        tau_ratio=dyn.tau_ratio,
        leak=dyn.leak,
        inst_transmission=dyn.inst_transmission,
        proactive_controller=dyn.proactive,
        inst_system_dynamics=False,
        record_steps=rec,
        accumulate=forward_rule,
        noise=(dyn.sigma, dyn.sigma_output) if noisy else (0.0, 0.0),
        apical_tau=dyn.apical_tau,
        accumulate_feedback=accumulate_feedback,
        chunk=max(chunk, 1),
        noise_source=source,
        error=dyn.error,
        tau_noise=dyn.tau_noise if dyn.noise == "ou" else None,
        feedback_filter=LowPass(dyn.dt, tau_f) if accumulate_feedback and tau_f else None,
    )
    recorded = record_every is not None
    return StrongRun(
        v=run.v,
        r=run.r,
        vb=run.vb,
        u=run.u.clone(),
        u_int=run.u_int.clone(),
        e=output_error(r_target, run.r[-1], dyn.error),
        n_steps=T,
        acc_W=run.acc_W,
        acc_b=run.acc_b,
        acc_Q=run.acc_Q,
        t=(torch.tensor(rec, dtype=x.dtype) * dyn.dt) if recorded else None,
        r_out=run.r_rec if recorded else None,
        u_rec=run.u_rec if recorded else None,
        e_rec=run.e_rec if recorded else None,
    )
