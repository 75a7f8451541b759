"""The noisy closed loop of Strong-DFC, with its own simulation loop.

One forward-Euler scheme (the reference discretisation of :mod:`neurodfc.solve`: layers swept
bottom-up with ``inst_transmission``, the apical input taking ``u[t+1]`` when ``proactive``) with
the successor code's additions (Meulemans, Tristany Farinha, Cervera, Sacramento, Grewe, ICML
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

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from neurodfc.network import DFCNetwork

ErrorKind = Literal["difference", "softmax"]
NoiseKind = Literal["none", "white", "ou"]
ForwardRule = Literal["nonlinear_difference", "voltage_difference", "derivative_matrix"]

NOISE_BLOCK = 16
"""Steps of standard normals drawn at once (float32, cast; the realisation depends on it)."""
CHUNK = 8
"""Steps per accumulation product of the forward rule."""


class LowPass:
    """Exponential low-pass ``y[0] = x[0]``, ``y[k] = a x[k] + (1 - a) y[k-1]``, ``a = dt/tau``
    (the successor's filter of ``u`` with time constant ``tau_f``). Streaming: :meth:`step`
    takes one sample and returns the filtered value (a tensor updated in place).

    Args:
        dt: time step (units of tau_u).
        tau: time constant, ``tau >= dt > 0``.
    """

    def __init__(self, dt: float, tau: float) -> None:
        if not 0 < dt <= tau:
            raise ValueError(f"the low-pass needs 0 < dt <= tau, got dt = {dt}, tau = {tau}")
        self.a = dt / tau
        self.y: torch.Tensor | None = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Filter one sample ``x`` (any shape); returns ``y[k]``."""
        if self.y is None:
            self.y = x.clone()
        else:
            # y += a (x - y): the same recursion, and exactly stationary for a constant input
            self.y.add_(x - self.y, alpha=self.a)
        return self.y


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


class _Normals:
    """Standard normals [B, N] per step, drawn as float32 blocks of ``NOISE_BLOCK`` steps into
    preallocated buffers (float64 sampling and fresh allocations are several times slower)."""

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
    ) -> None:
        self.gen = generator
        if device.type != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            self.gen = torch.Generator(device=device).manual_seed(seed)
        self.raw = torch.empty((NOISE_BLOCK, *shape), dtype=torch.float32, device=device)
        self.block = self.raw if dtype == torch.float32 else torch.empty_like(self.raw, dtype=dtype)
        self.k = NOISE_BLOCK

    def next(self) -> torch.Tensor:
        if self.k == NOISE_BLOCK:
            torch.randn(self.raw.shape, generator=self.gen, out=self.raw)
            if self.block is not self.raw:
                self.block.copy_(self.raw)
            self.k = 0
        self.k += 1
        return self.block[self.k - 1]


def _tanh_into(v: torch.Tensor, out: torch.Tensor) -> None:
    """``out = tanh(v) = 2 sigmoid(2 v) - 1`` (torch's float64 tanh is slow on CPU)."""
    torch.mul(v, 2.0, out=out)
    torch.sigmoid(out, out=out)
    out.mul_(2.0).sub_(1.0)


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
    """Simulate ``dyn`` for inputs ``x`` [B, n_0] and output target ``r_target`` [B, n_L].

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
    L, T, B = net.depth, dyn.n_steps, x.shape[0]
    dtype, device = x.dtype, x.device
    sizes = net.sizes[1:]
    N, nL = sum(sizes), net.n_out
    offs = [0]
    for n in sizes:
        offs.append(offs[-1] + n)
    acts = list(net.act_names)
    W = [w.detach() for w in net.W]
    Wt = [w.t() for w in W]
    bias = [b.detach() for b in net.b] if net.has_bias else [None] * L
    QT = torch.cat([q.detach() for q in net.Q], dim=0).t().contiguous()  # [n_L, N]
    c_v = dyn.dt / dyn.tau_ratio

    v_ff, r_ff = net.feedforward(x)
    v_ff = [t.detach() for t in v_ff]
    r_ff = [t.detach() for t in r_ff]
    drive0 = v_ff[0]
    # ring of K state slots: slot k holds r_i at one step; accumulation flushes full rings
    K = max(chunk, 2) + 1 if forward_rule is not None else 2
    R = [torch.empty((K, B, n), dtype=dtype, device=device) for n in sizes]
    for i in range(L):
        R[i][0].copy_(r_ff[i])
    v = [t.clone() for t in v_ff]
    vb = [t.clone() for t in v_ff]
    tmp = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
    VA = torch.zeros((B, N), dtype=dtype, device=device)
    va = [VA[:, offs[i] : offs[i + 1]] for i in range(L)]
    FB = torch.zeros((B, N), dtype=dtype, device=device)
    u = torch.zeros_like(r_target)
    u_int = torch.zeros_like(r_target)
    e = output_error(r_target, R[L - 1][0], dyn.error)

    # noise
    normals = _Normals((B, N), dtype, device, generator) if dyn.noisy else None
    sig = torch.full((N,), dyn.sigma, dtype=dtype, device=device)
    sig[offs[L - 1] :] = dyn.sigma_output
    eps = torch.zeros((B, N), dtype=dtype, device=device) if dyn.noise == "ou" else None
    a_n = dyn.dt / dyn.tau_noise
    ou_gain = a_n / math.sqrt(dyn.dt)
    if dyn.noise == "white":  # Euler-Maruyama increment into the apical state
        sig = sig * (math.sqrt(dyn.dt) / (dyn.apical_tau or dyn.dt))

    # forward-rule sums
    D = [torch.empty((K, B, n), dtype=dtype, device=device) for n in sizes] if forward_rule else []
    acc_W = [torch.zeros_like(w) for w in W] if forward_rule else []
    acc_b = [torch.zeros(n, dtype=dtype, device=device) for n in sizes] if forward_rule else []
    acc_d1 = torch.zeros((B, sizes[0]), dtype=dtype, device=device)
    phi_b0 = net.act(0, drive0) if forward_rule == "nonlinear_difference" else None
    dprime = (
        [net.act_prime(i, v_ff[i]) for i in range(L)] if forward_rule == "derivative_matrix" else []
    )

    def flush(hi: int) -> None:
        """Add ring slots 1..hi-1 to the sums."""
        for i in range(L):
            Di = D[i][1:hi]
            acc_b[i] += Di.sum((0, 1))
            if i == 0:
                acc_d1.add_(Di.sum(0))
            else:
                acc_W[i].addmm_(
                    Di.reshape(-1, sizes[i]).t(), R[i - 1][1:hi].reshape(-1, sizes[i - 1])
                )

    # feedback sums
    acc_Q = torch.zeros((N, nL), dtype=dtype, device=device) if accumulate_feedback else None
    lp = LowPass(dyn.dt, tau_f) if (accumulate_feedback and tau_f is not None) else None

    # recording
    rec_steps: list[int] = []
    if record_every is not None:
        rec_steps = list(range(0, T, record_every))
        if rec_steps[-1] != T - 1:
            rec_steps.append(T - 1)
    rec_index = {s: k for k, s in enumerate(rec_steps)}
    r_rec = torch.empty((len(rec_steps), B, nL), dtype=dtype, device=device)
    u_rec = torch.empty_like(r_rec)
    e_rec = torch.empty_like(r_rec)
    if 0 in rec_index:
        r_rec[0], u_rec[0], e_rec[0] = R[L - 1][0], u, e

    inst = dyn.inst_transmission
    order = list(range(L)) if inst else list(range(L - 1, -1, -1))
    s = 0
    for t in range(T - 1):
        if s == K - 1:  # ring full
            if forward_rule is not None:
                flush(K)
            for i in range(L):
                R[i][0].copy_(R[i][K - 1])
            s = 0
        n = s + 1
        # controller
        e = output_error(r_target, R[L - 1][s], dyn.error)
        if dyn.leak == "paper":
            u_int.add_(e - dyn.alpha * u_int, alpha=dyn.dt)
        else:
            u_int.add_(e - dyn.alpha * u, alpha=dyn.dt)
        u_new = u_int + dyn.k_p * e if dyn.k_p != 0.0 else u_int.clone()
        if acc_Q is not None:
            u_f = u_new if lp is None else u_new - lp.step(u_new)
            acc_Q.addmm_(VA.t(), u_f)
        # apical compartment
        torch.mm(u_new if dyn.proactive else u, QT, out=FB)
        if dyn.apical_tau is None:
            VA.copy_(FB)
        else:
            VA.lerp_(FB, dyn.dt / dyn.apical_tau)
        if normals is not None:
            xi = normals.next()
            if eps is not None:
                eps.mul_(1.0 - a_n).add_(xi, alpha=ou_gain)
                VA.addcmul_(eps, sig)
            else:
                VA.addcmul_(xi, sig)
        # layers
        for i in order:
            if i > 0:
                r_prev = R[i - 1][n if inst else s]
                if bias[i] is not None:
                    torch.addmm(bias[i], r_prev, Wt[i], out=vb[i])  # type: ignore[arg-type]
                else:
                    torch.mm(r_prev, Wt[i], out=vb[i])
            torch.add(va[i], vb[i] if i > 0 else drive0, out=tmp[i])
            v[i].lerp_(tmp[i], c_v)
            if acts[i] == "tanh":
                _tanh_into(v[i], R[i][n])
            elif acts[i] == "linear":
                R[i][n].copy_(v[i])
            else:
                R[i][n].copy_(net.act(i, v[i]))
            if forward_rule is not None:
                out = D[i][n]
                basal = vb[i] if i > 0 else drive0
                if forward_rule == "nonlinear_difference":
                    if i == 0:
                        assert phi_b0 is not None
                        torch.sub(R[0][n], phi_b0, out=out)
                    elif acts[i] == "tanh":
                        _tanh_into(basal, out)
                        torch.sub(R[i][n], out, out=out)
                    else:
                        torch.sub(R[i][n], net.act(i, basal), out=out)
                elif forward_rule == "voltage_difference":
                    torch.sub(v[i], basal, out=out)
                else:
                    torch.sub(v[i], basal, out=out)
                    out.mul_(dprime[i])
        u = u_new
        s = n
        k = rec_index.get(t + 1)
        if k is not None:
            r_rec[k], u_rec[k] = R[L - 1][s], u
            e_rec[k] = output_error(r_target, R[L - 1][s], dyn.error)

    if forward_rule is not None:
        flush(s + 1)
        acc_W[0] = acc_d1.t() @ x
    e = output_error(r_target, R[L - 1][s], dyn.error)
    vb_out = [drive0.clone(), *[t.clone() for t in vb[1:]]]
    return StrongRun(
        v=[t.clone() for t in v],
        r=[R[i][s].clone() for i in range(L)],
        vb=vb_out,
        u=u.clone(),
        u_int=u_int.clone(),
        e=e,
        n_steps=T,
        acc_W=acc_W,
        acc_b=acc_b,
        acc_Q=list(acc_Q.split(sizes, dim=0)) if acc_Q is not None else [],
        t=(torch.tensor(rec_steps, dtype=dtype) * dyn.dt) if rec_steps else None,
        r_out=r_rec if rec_steps else None,
        u_rec=u_rec if rec_steps else None,
        e_rec=e_rec if rec_steps else None,
    )
