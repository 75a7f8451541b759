"""The reference-Euler scheme of the official code, on the fast path.

Same discretisation as the reference code (see :func:`neurodfc.solve.simulate`), computed
with as little work as the scheme allows:

* the input projection ``W_1 r_0 + b_1`` once per batch, the feedback of every layer in one
  matmul ``u @ Q^T`` (``Q = [Q_1; ...; Q_L]``), the apical low-pass and noise on all layers at
  once;
* in-place updates into preallocated buffers, no autograd, recording only what is asked for;
* ``tanh`` through ``2 sigmoid(2 v) - 1`` (torch's float64 ``tanh`` is not vectorised on CPU:
  about 4x slower than ``sigmoid``); the nonlinear-difference signal of a tanh layer is then
  ``tanh(v) - tanh(v_b) = 2 (sigmoid(2 v) - sigmoid(2 v_b))``, the factor 2 applied once at the
  end. Both agree with ``torch.tanh`` to a few ulp;
* the DFC running sums ``sum_t d_i^T r_{i-1}`` in chunks: ``chunk`` steps of ``d_i`` and
  ``r_{i-1}`` are stacked and summed by one ``[n_i, chunk B] @ [chunk B, n_{i-1}]`` product;
  the first layer sums ``d_1`` over time and multiplies by the constant ``r_0`` once;
* optional early termination (``early_stop``): once every sample meets the convergence
  criterion and (DFC sums) the rule signals change by less than ``EARLY_STOP_RATE`` (relative)
  per step, checked at chunk ends, the remaining steps are taken to stay at the last state: the
  trajectory sums get ``n_remaining`` times the last step's term (closed form). Not bit-exact:
  the error is the remaining motion of the state (see docs/performance.md for its size).

Noise (Euler-Maruyama apical noise of the sleep phase) is drawn as standard normals in float32
(torch's float64 normal sampler is about 8x slower on CPU), in blocks of
``min(NOISE_BLOCK, steps left)`` steps of shape ``[block, B, N]``, columns in layer order, and
added with type promotion. On CUDA the noise is drawn on the device by a generator seeded from
``generator``.

The results equal the plain step-by-step loop (kept as the oracle in
``tests/unit/test_fastpath.py``) to about 1e-13 relative in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from neurodfc.components.neurons import RateNeurons
from neurodfc.core.filters import LowPass
from neurodfc.core.noise import NOISE_BLOCK, ApicalNoise, GaussianNoise
from neurodfc.core.noise import NoiseSource as AnyNoiseSource
from neurodfc.core.sums import ChunkedSums
from neurodfc.core.teaching import teaching_signal_into
from neurodfc.increments import fast_tanh
from neurodfc.network import DFCNetwork

__all__ = ["NOISE_BLOCK", "EulerRun", "NoiseSource", "euler_reference_fast", "fast_tanh"]

DEFAULT_CHUNK = 16
"""Steps per accumulation product (measured on CPU: 4 to 32 within 10 %, 16 best)."""
EARLY_STOP_RATE = 1e-6
"""Early stop also needs the rule signals to change by less than this (relative) per step."""


@dataclass
class EulerRun:
    """Raw result of :func:`euler_reference_fast` (wrapped into a Solution by ``simulate``)."""

    v: list[torch.Tensor]
    r: list[torch.Tensor]
    vb: list[torch.Tensor]
    u: torch.Tensor
    u_int: torch.Tensor
    rec_steps: list[int]
    r_rec: torch.Tensor
    u_rec: torch.Tensor
    e_rec: torch.Tensor
    v_rec: list[torch.Tensor]
    steps_run: int
    a_rec: list[torch.Tensor] = field(default_factory=list)
    acc_W: list[torch.Tensor] = field(default_factory=list)
    acc_b: list[torch.Tensor] = field(default_factory=list)
    acc_Q: list[torch.Tensor] = field(default_factory=list)


NoiseSource = GaussianNoise
"""The standard normals of the noisy reference scheme (now public as
:class:`neurodfc.core.noise.GaussianNoise`; any :class:`neurodfc.core.noise.NoiseSource`
can be passed as ``noise_source``)."""


@torch.no_grad()
def euler_reference_fast(
    net: DFCNetwork,
    x: torch.Tensor,
    r_target: torch.Tensor,
    *,
    dt: float,
    n_steps: int,
    alpha: float,
    k_p: float,
    tau_ratio: float,
    leak: str,
    inst_transmission: bool,
    proactive_controller: bool,
    inst_system_dynamics: bool,
    record_steps: list[int],
    record_v: bool = False,
    accumulate: str | None = None,
    noise: tuple[float, float] = (0.0, 0.0),
    generator: torch.Generator | None = None,
    apical_tau: float | None = None,
    accumulate_feedback: bool = False,
    chunk: int = DEFAULT_CHUNK,
    early_stop: bool = False,
    converged: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    noise_source: AnyNoiseSource | None = None,
    record_apical: bool = False,
    error: str = "difference",
    tau_noise: float | None = None,
    feedback_filter: LowPass | None = None,
) -> EulerRun:
    """The reference scheme (step t -> t+1, t = 0..n_steps-2)::

        e = r* - r_L[t];  u_int[t+1] = u_int[t] + dt (e - alpha u[t]);  u[t+1] = u_int[t+1] + k_p e
        a_i[t+1] = a_i[t] + dt/tau_A (-a_i[t] + Q_i u[t+1 if proactive else t]) (+ noise)
        vb_i[t+1] = W_i r_{i-1}[t+1 if inst_transmission else t] + b_i
        v_i[t+1] = v_i[t] + dt/tau_ratio (a_i + vb_i - v_i[t])   (or a_i + vb_i if inst_system)

    (``leak = 'paper'``: ``e - alpha u_int[t]``.) ``accumulate`` sums the forward rule's
    ``d_i[t] r_{i-1}[t]^T`` and ``d_i[t]`` over t = 1..n_steps-1 (``d_i[0] = 0``);
    ``accumulate_feedback`` sums ``a_i[t]^T u[t+1]``. ``converged(r_L, u, u_int)`` -> bool [B]
    is the convergence test used by ``early_stop``.

    Args:
        net: the network (weights ``W``, ``b``, feedback ``Q``).
        x: inputs ``r_0`` [B, n_0].
        r_target: output targets ``r_L*`` [B, n_L].
        dt: Euler step (units of tau_u).
        n_steps: number of time points (initial state included).
        alpha: controller leak.
        k_p: proportional gain.
        tau_ratio: ``tau_v / tau_u``.
        leak: leak convention (``reference`` or ``paper``).
        inst_transmission: layer i reads layer i-1 of the same step.
        proactive_controller: the apical input uses ``u[t+1]``.
        inst_system_dynamics: ``v = v^b + a`` without v-dynamics.
        record_steps: time points whose ``r_L``, ``u``, ``e`` (and ``v``) are recorded.
        record_v: also record every layer's voltage.
        accumulate: forward rule whose signal is summed (None: no sums).
        noise: apical noise std ``(sigma, sigma_output)``.
        generator: random generator of the noise.
        apical_tau: apical time constant (None: instantaneous, ``tau_A = dt``).
        accumulate_feedback: sum ``a_i^T u`` (the sleep-phase rule).
        chunk: steps per accumulation product.
        early_stop: stop once every sample has converged (closed-form completion).
        converged: the convergence test of ``early_stop``.
        noise_source: the standard normals of the noise (None: :class:`GaussianNoise` drawn
            from ``generator``).
        record_apical: also record every layer's apical voltage.
        error: ``difference`` (``e = r* - r_L``) or ``softmax`` (``e = r* - softmax(r_L)``,
            Strong-DFC).
        tau_noise: Ornstein-Uhlenbeck noise of this time constant instead of white noise
            (Strong-DFC; :class:`neurodfc.core.noise.ApicalNoise`).
        feedback_filter: pair the apical voltage with the high-pass ``u - LP(u)`` of this
            low-pass in the sleep-phase sums (Strong-DFC's single phase).

    Returns:
        An :class:`EulerRun`.
    """
    L = net.depth
    T = n_steps
    B = x.shape[0]
    dtype, device = x.dtype, x.device
    sizes = net.sizes[1:]
    N = sum(sizes)
    offs = [0]
    for n in sizes:
        offs.append(offs[-1] + n)
    acts = list(net.act_names)
    layers = [RateNeurons(a) for a in acts]
    tau_a = apical_tau if apical_tau is not None else dt
    inst_tx = inst_transmission or inst_system_dynamics
    sigma, sigma_out = noise
    noisy = sigma > 0 or sigma_out > 0
    c_v = dt / tau_ratio
    c_a = dt / tau_a
    W = [w.detach() for w in net.W]
    Wt = [w.t() for w in W]
    bias = [b.detach() for b in net.b] if net.has_bias else [None] * L
    QT = torch.cat([q.detach() for q in net.Q], dim=0).t().contiguous()  # [n_L, N]

    v_ff, r_ff = net.feedforward(x)
    drive0 = v_ff[0]
    acc = accumulate is not None
    K = chunk + 1 if acc else 1
    # rates and rule signals, one chunk of time slots (the shared trajectory accumulator)
    sums = ChunkedSums(sizes, B, K, acc, x)
    slot_r = sums.rates
    for i in range(L):
        slot_r[i][0].copy_(r_ff[i])
    v = [t.clone() for t in v_ff]
    vb = [t.clone() for t in v_ff]
    FB = torch.zeros((B, N), dtype=dtype, device=device)
    instantaneous = tau_a == dt
    VA = FB if instantaneous and not noisy else torch.zeros((B, N), dtype=dtype, device=device)
    va = [VA[:, offs[i] : offs[i + 1]] for i in range(L)]
    tmp = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
    half = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
    u = torch.zeros_like(r_target)
    u_int = torch.zeros_like(r_target)
    e = torch.empty_like(r_target)
    rate = torch.empty_like(r_target)

    n_rec = len(record_steps)
    rec_index = {s: k for k, s in enumerate(record_steps)}
    r_rec = torch.empty((n_rec, *r_target.shape), dtype=dtype, device=device)
    u_rec = torch.empty_like(r_rec)
    e_rec = torch.empty_like(r_rec)
    v_rec = (
        [torch.empty((n_rec, B, n), dtype=dtype, device=device) for n in sizes] if record_v else []
    )
    a_rec = (
        [torch.empty((n_rec, B, n), dtype=dtype, device=device) for n in sizes]
        if record_apical
        else []
    )

    softmax = error == "softmax"

    def error_into(r_out: torch.Tensor, out: torch.Tensor) -> None:
        torch.sub(r_target, torch.softmax(r_out, dim=-1) if softmax else r_out, out=out)

    def store(k: int, slot: int) -> None:
        r_rec[k] = slot_r[L - 1][slot]
        u_rec[k] = u
        error_into(slot_r[L - 1][slot], e_rec[k])
        for i in range(len(v_rec)):
            v_rec[i][k] = v[i]
        for i in range(len(a_rec)):
            a_rec[i][k] = va[i]

    store(0, 0)

    # ---- accumulators
    slot_d = sums.signals
    d_scale = [1.0] * L
    dprime_ff: list[torch.Tensor] = []
    half_b0: torch.Tensor | None = None
    if acc:
        if accumulate == "nonlinear_difference":
            d_scale = [2.0 if a == "tanh" else 1.0 for a in acts]
            if acts[0] == "tanh":
                half_b0 = torch.sigmoid(2.0 * drive0)
            else:
                half_b0 = net.act(0, drive0)
        elif accumulate == "derivative_matrix":
            dprime_ff = [net.act_prime(i, v_ff[i]) for i in range(L)]
    d_prev = [torch.zeros((B, n), dtype=dtype, device=device) for n in sizes] if acc else []
    acc_Q = torch.zeros((N, r_target.shape[1]), dtype=dtype, device=device)
    noise_src: AnyNoiseSource | None = None
    if noisy:
        noise_src = noise_source or GaussianNoise((B, N), dtype, device, generator, T - 1)
    noise_scale = math.sqrt(dt) / tau_a
    same_sigma = sigma == sigma_out
    ou = torch.zeros((B, N), dtype=dtype, device=device) if tau_noise is not None else None
    tau_ou = tau_noise if tau_noise is not None else 1.0
    sig_units = ApicalNoise(sigma, sigma_out).sigmas(sizes, x)
    layer_order = list(range(L)) if inst_tx else list(range(L - 1, -1, -1))

    def signal(i: int, slot: int) -> None:
        """d_i of the new state (slot) into D[i][slot]."""
        out = slot_d[i][slot]
        if accumulate == "nonlinear_difference":
            if i == 0:
                assert half_b0 is not None
                hb: torch.Tensor = half_b0
            elif acts[i] == "tanh":
                hb = tmp[i]
                torch.mul(vb[i], 2.0, out=hb)
                torch.sigmoid(hb, out=hb)
            else:
                hb = net.act(i, vb[i])
            ha = half[i] if acts[i] == "tanh" else slot_r[i][slot]
            torch.sub(ha, hb, out=out)
        else:
            assert accumulate is not None
            dphi = dprime_ff[i] if dprime_ff else None
            teaching_signal_into(layers[i], accumulate, v[i], vb[i], slot_r[i][slot], out, dphi)

    s = 0  # slot of the current state
    steps_done = 0
    remaining_fill = 0
    check = early_stop and converged is not None
    for t in range(T - 1):
        boundary = K > 1 and s == K - 1
        if boundary:
            sums.flush(1, K)
            for i in range(L):
                slot_r[i][0].copy_(slot_r[i][K - 1])
            s = 0
        if check and t > 0 and (boundary or (K == 1 and t % chunk == 0)):
            ok = bool(converged(slot_r[L - 1][s], u, u_int).all())  # type: ignore[misc]
            if acc:
                # ... and the rule signals have stopped moving (the closed form assumes so)
                rate_ok = True
                for i in range(L):
                    d_now = slot_d[i][K - 1]
                    change = float(torch.linalg.vector_norm(d_now - d_prev[i]))
                    size = float(torch.linalg.vector_norm(d_now))
                    rate_ok &= change <= EARLY_STOP_RATE * chunk * size
                    d_prev[i].copy_(d_now)
                ok = ok and rate_ok
            if ok:
                remaining_fill = T - 1 - t
                break
        n = s + 1 if K > 1 else 0
        # controller
        error_into(slot_r[L - 1][s], e)
        torch.sub(e, u_int if leak == "paper" else u, alpha=alpha, out=rate)
        u_int.add_(rate, alpha=dt)
        u_new = torch.add(u_int, e, alpha=k_p) if k_p != 0.0 else u_int.clone()
        if accumulate_feedback:
            u_f = u_new if feedback_filter is None else u_new - feedback_filter.step(u_new)
            acc_Q.addmm_(VA.t(), u_f)
        torch.mm(u_new if proactive_controller else u, QT, out=FB)
        if noise_src is not None and ou is not None:
            VA.copy_(FB) if instantaneous else VA.lerp_(FB, c_a)
            ou.mul_(1.0 - dt / tau_ou).add_(noise_src.next(), alpha=(dt / tau_ou) / math.sqrt(dt))
            VA.addcmul_(ou, sig_units)
        elif noise_src is not None:
            xi = noise_src.next()
            if instantaneous and same_sigma:
                torch.add(FB, xi, alpha=sigma * noise_scale, out=VA)
            elif instantaneous:
                VA.copy_(FB)
            else:
                VA.lerp_(FB, c_a)
            if same_sigma and not instantaneous:
                VA.add_(xi, alpha=sigma * noise_scale)
            elif not same_sigma:
                h = offs[L - 1]
                if sigma > 0:
                    VA[:, :h].add_(xi[:, :h], alpha=sigma * noise_scale)
                if sigma_out > 0:
                    VA[:, h:].add_(xi[:, h:], alpha=sigma_out * noise_scale)
        elif not instantaneous:
            VA.lerp_(FB, c_a)
        for i in layer_order:
            if i > 0:
                r_prev = slot_r[i - 1][n if inst_tx else s]
                if bias[i] is not None:
                    torch.addmm(bias[i], r_prev, Wt[i], out=vb[i])  # type: ignore[arg-type]
                else:
                    torch.mm(r_prev, Wt[i], out=vb[i])
            else:
                vb[0] = drive0
            if inst_system_dynamics:
                torch.add(va[i], vb[i], out=v[i])
            else:
                torch.add(va[i], vb[i], out=tmp[i])
                v[i].lerp_(tmp[i], c_v)
            if acts[i] == "tanh":
                fast_tanh(v[i], slot_r[i][n], half[i])
            elif acts[i] == "linear":
                slot_r[i][n].copy_(v[i])
            else:
                slot_r[i][n].copy_(net.act(i, v[i]))
        u = u_new
        if acc:
            for i in range(L):
                signal(i, n)
        s = n
        steps_done = t + 1
        k = rec_index.get(t + 1)
        if k is not None:
            store(k, s)

    acc_W: list[torch.Tensor] = []
    acc_b: list[torch.Tensor] = []
    if acc:
        if remaining_fill > 0:
            # closed-form completion: the state stays at the last one for the remaining steps
            sums.add_repeated(K - 1, s, remaining_fill)
        else:
            sums.flush(1, s + 1)
        acc_W, acc_b = sums.totals(x, d_scale)
    for t_rec, k in rec_index.items():
        if t_rec > steps_done:  # early stop: the state stays at the last one
            store(k, s)
    v_out = [t.clone() for t in v]
    r_out = [slot_r[i][s].clone() for i in range(L)]
    vb_out = [drive0.clone(), *[t.clone() for t in vb[1:]]]
    return EulerRun(
        v=v_out,
        r=r_out,
        vb=vb_out,
        u=u,
        u_int=u_int,
        rec_steps=record_steps,
        r_rec=r_rec,
        u_rec=u_rec,
        e_rec=e_rec,
        v_rec=v_rec,
        a_rec=a_rec,
        steps_run=steps_done,
        acc_W=acc_W,
        acc_b=acc_b,
        acc_Q=list(acc_Q.split(sizes, dim=0)) if accumulate_feedback else [],
    )
