"""The fused reference-Euler loop: the step functions of :mod:`neurodfc.fastpath.step` in time,
the chunked sums, early termination and the recording; :func:`euler_reference_fast` is its
keyword form."""

from __future__ import annotations

import torch

from neurodfc.core.filters import LowPass
from neurodfc.core.noise import GaussianNoise
from neurodfc.core.noise import NoiseSource as AnyNoiseSource
from neurodfc.fastpath.buffers import FusedBuffers, Records
from neurodfc.fastpath.graphs import CudaGraphs, GraphRunner, graph_plan, run_with_graphs
from neurodfc.fastpath.settings import DEFAULT_CHUNK, ConvergedTest, EulerRun, FusedSettings
from neurodfc.fastpath.signals import TeachingSignals
from neurodfc.fastpath.stack import StackedNetwork
from neurodfc.fastpath.step import apical_step, controller_step, feedback_sum, layers_step
from neurodfc.network import DFCNetwork


@torch.no_grad()
def run_fused(
    net: DFCNetwork | StackedNetwork,
    x: torch.Tensor,
    r_target: torch.Tensor,
    cfg: FusedSettings,
    *,
    generator: torch.Generator | None = None,
    converged: ConvergedTest | None = None,
    noise_source: AnyNoiseSource | None = None,
    feedback_filter: LowPass | None = None,
    graphs: GraphRunner | None = None,
) -> EulerRun:
    """Simulate the reference scheme of ``cfg`` from the feedforward state of ``x``.

    Args:
        net: the network (weights ``W``, ``b``, feedback ``Q``), or the stacked networks of
            an ensemble's members (every tensor, result and sum then has a leading member
            dimension M).
        x: inputs ``r_0`` [B, n_0] (ensemble: [M, B, n_0]).
        r_target: output targets ``r_L*`` [B, n_L] (ensemble: [M, B, n_L]).
        cfg: the run's settings.
        generator: random generator of the noise.
        converged: the convergence test of ``cfg.early_stop``.
        noise_source: the standard normals of the noise (None: :class:`GaussianNoise` drawn
            from ``generator``).
        feedback_filter: pair the apical voltage with the high-pass ``u - LP(u)`` of this
            low-pass in the sleep-phase sums (Strong-DFC's single phase).
        graphs: how whole periods of steps are captured and replayed
            (:mod:`neurodfc.fastpath.graphs`; None: CUDA graphs on a CUDA device when
            ``cfg.cuda_graphs`` and the run allow it, else the plain loop).

    Returns:
        An :class:`EulerRun`.
    """
    b = FusedBuffers(net, x, r_target, cfg)
    rec = Records(b, cfg)
    sig = TeachingSignals(b, cfg.accumulate) if cfg.accumulate is not None else None
    src: AnyNoiseSource | None = None
    if cfg.noisy:
        if noise_source is None and b.lead:
            raise ValueError("an ensemble's noise comes from its members' sources (noise_source)")
        src = noise_source or GaussianNoise(
            (x.shape[0], b.N), x.dtype, x.device, generator, cfg.n_steps - 1
        )
    check = cfg.early_stop and converged is not None
    loop = _Loop(b, cfg, rec, sig, src, feedback_filter, converged if check else None)
    rec.store(0, 0, b)
    t = 0
    plan = graph_plan(
        cfg.n_steps,
        cfg.slots,
        cfg.record_steps,
        eligible=cfg.cuda_graphs and not check and src is None and feedback_filter is None,
    )
    if graphs is None and plan is not None and x.is_cuda:
        graphs = CudaGraphs(x.device)
    if graphs is not None and plan is not None:
        t = run_with_graphs(loop, plan, graphs)
    while t < cfg.n_steps - 1 and loop.step(t):
        t += 1
    return _finish(b, rec, sig, cfg, loop.s, loop.steps_done, loop.remaining)


class _Loop:
    """The fused loop between two steps: the buffers, the slot of the current state, the
    steps done, and what a step needs (records, sums, noise, filter, early-stop test)."""

    def __init__(
        self,
        b: FusedBuffers,
        cfg: FusedSettings,
        rec: Records,
        sig: TeachingSignals | None,
        src: AnyNoiseSource | None,
        feedback_filter: LowPass | None,
        converged: ConvergedTest | None,
    ) -> None:
        self.b, self.cfg, self.rec, self.sig, self.src = b, cfg, rec, sig, src
        self.feedback_filter, self.converged = feedback_filter, converged
        self.s = 0
        """Rate slot of the current state."""
        self.steps_done = 0
        self.remaining = 0
        """Steps left when an early stop ended the loop."""

    @property
    def u(self) -> torch.Tensor:
        """The current control ``u[t]`` (a step rebinds it)."""
        return self.b.u

    @u.setter
    def u(self, value: torch.Tensor) -> None:
        self.b.u = value

    def step(self, t: int) -> bool:
        """Step ``t -> t+1`` (at a chunk's end the slots roll first).

        Args:
            t: the current time index.

        Returns:
            False when the early-stop test ended the loop instead (nothing stepped).
        """
        b, cfg, sig, K = self.b, self.cfg, self.sig, self.cfg.slots
        boundary = K > 1 and self.s == K - 1
        if boundary:
            b.roll_chunk()
            self.s = 0
        if self.converged is not None and t > 0 and (boundary or (K == 1 and t % cfg.chunk == 0)):
            if _stop_now(b, sig, self.converged, self.s, cfg.chunk):
                self.remaining = cfg.n_steps - 1 - t
                return False
        s = self.s
        n = s + 1 if K > 1 else 0
        u_new = controller_step(b, cfg, s)
        if cfg.accumulate_feedback:
            feedback_sum(b, u_new, self.feedback_filter)
        apical_step(b, cfg, u_new, self.src.next() if self.src is not None else None)
        layers_step(b, cfg, s, n)
        b.u = u_new
        if sig is not None:
            for i in range(b.L):
                sig.into(b, i, n)
        self.s = n
        self.steps_done = t + 1
        k = self.rec.index.get(self.steps_done)
        if k is not None:
            self.rec.store(k, n, b)
        return True


def _stop_now(
    b: FusedBuffers, sig: TeachingSignals | None, converged: ConvergedTest, s: int, chunk: int
) -> bool:
    """Early termination: every sample has converged and (with sums) the rule signals have
    stopped moving (the closed-form completion assumes so)."""
    ok = bool(converged(b.slot_r[b.L - 1][s], b.u, b.u_int).all())
    if sig is not None:
        ok = sig.settled(b, chunk) and ok
    return ok


def _finish(
    b: FusedBuffers,
    rec: Records,
    sig: TeachingSignals | None,
    cfg: FusedSettings,
    s: int,
    steps_done: int,
    remaining: int,
) -> EulerRun:
    """Complete the sums (closed form after an early stop: the state stays at the last one)
    and the records, and return the run."""
    acc_W: list[torch.Tensor] = []
    acc_b: list[torch.Tensor] = []
    if sig is not None:
        if remaining > 0:
            b.sums.add_repeated(cfg.slots - 1, s, remaining)
        else:
            b.sums.flush(1, s + 1)
        acc_W, acc_b = b.sums.totals(b.x, sig.scale)
    for t_rec, k in rec.index.items():
        if t_rec > steps_done:  # early stop: the state stays at the last one
            rec.store(k, s, b)
    return EulerRun(
        v=[t.clone() for t in b.v],
        r=[b.slot_r[i][s].clone() for i in range(b.L)],
        vb=[t.clone() for t in b.vb],
        u=b.u,
        u_int=b.u_int,
        rec_steps=list(cfg.record_steps),
        r_rec=rec.r,
        u_rec=rec.u,
        e_rec=rec.e,
        v_rec=rec.v,
        a_rec=rec.a,
        steps_run=steps_done,
        acc_W=acc_W,
        acc_b=acc_b,
        acc_Q=list(b.acc_Q.split(b.sizes, dim=-2)) if cfg.accumulate_feedback else [],
    )


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
    converged: ConvergedTest | None = None,
    noise_source: AnyNoiseSource | None = None,
    record_apical: bool = False,
    error: str = "difference",
    tau_noise: float | None = None,
    feedback_filter: LowPass | None = None,
) -> EulerRun:
    """:func:`run_fused` with the settings as keywords (the fields of :class:`FusedSettings`).

    Args:
        net: the network (weights ``W``, ``b``, feedback ``Q``).
        x: inputs ``r_0`` [B, n_0].
        r_target: output targets ``r_L*`` [B, n_L].
        dt: Euler step (units of tau_u).
        n_steps: number of time points (initial state included).
        alpha: controller leak.
        k_p: proportional gain.
        tau_ratio: ``tau_v / tau_u``.
        leak: leak convention.
        inst_transmission: layer i reads layer i-1 of the same step.
        proactive_controller: the apical input uses ``u[t+1]``.
        inst_system_dynamics: ``v = v^b + a`` without v-dynamics.
        record_steps: recorded time points.
        record_v: also record every layer's voltage.
        accumulate: forward rule whose signal is summed (None: no sums).
        noise: apical noise std ``(sigma, sigma_output)``.
        generator: random generator of the noise.
        apical_tau: apical time constant (None: instantaneous).
        accumulate_feedback: sum ``a_i^T u`` (the sleep-phase rule).
        chunk: steps per accumulation product.
        early_stop: stop once every sample has converged (closed-form completion).
        converged: the convergence test of ``early_stop``.
        noise_source: the standard normals of the noise (None: drawn from ``generator``).
        record_apical: also record every layer's apical voltage.
        error: ``difference`` or ``softmax``.
        tau_noise: Ornstein-Uhlenbeck noise of this time constant (None: white noise).
        feedback_filter: high-pass the control in the sleep-phase sums with this low-pass.

    Returns:
        An :class:`EulerRun`.
    """
    cfg = FusedSettings(
        dt=dt,
        n_steps=n_steps,
        alpha=alpha,
        k_p=k_p,
        tau_ratio=tau_ratio,
        leak=leak,
        inst_transmission=inst_transmission,
        proactive_controller=proactive_controller,
        inst_system_dynamics=inst_system_dynamics,
        record_steps=tuple(record_steps),
        record_v=record_v,
        accumulate=accumulate,
        noise=noise,
        apical_tau=apical_tau,
        accumulate_feedback=accumulate_feedback,
        chunk=chunk,
        early_stop=early_stop,
        record_apical=record_apical,
        error=error,
        tau_noise=tau_noise,
    )
    return run_fused(
        net,
        x,
        r_target,
        cfg,
        generator=generator,
        converged=converged,
        noise_source=noise_source,
        feedback_filter=feedback_filter,
    )
