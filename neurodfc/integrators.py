"""Continuous-time DFC: the closed loop and the DFC update integrated together as one ODE.

The state ``y = [z_1..z_L, (a_1..a_L), u_int]`` follows the paper's dynamics (see
:class:`neurodfc.system.VectorField`) written for the deviations ``z_i = v_i - v_i^ff`` of the
voltages from their feedforward values (``neurodfc.increments``: the rates, the output error and
the basal inputs are then computed as small differences without cancellation, which makes
float32 usable at the paper's tiny target steps); the DFC update is the time integral of the
forward rule,

    acc_i = int_0^{t_max} d_i(t) r_{i-1}(t)^T dt,      d_i = phi(v_i) - phi(v_i^b)  (or v - v^b ...)

integrated alongside (``d acc_i / dt = d_i r_{i-1}^T``; for layer 1, ``d_1`` is integrated and
multiplied by the constant ``r_0`` once). The accumulator feeds nothing back: it is integrated
with the quadrature of the step (the Runge-Kutta weights at the stage states), kept out of the
error norm, and its stage terms are stacked and summed by one large matmul per chunk of steps.

Integrator: ETDRK4 (Cox & Matthews 2002), an exponential Runge-Kutta method that integrates the
stiff diagonal of the linear part exactly -- the leak ``-1/tau_ratio`` of every voltage, the
P-control of the output layer ``-(1 + k_p q_LL phi_L'(v_L^-))/tau_ratio``, the apical leak
``-1/tau_A`` and (paper leak) ``-alpha`` of ``u_int`` -- and the rest explicitly, with adaptive
steps: the ETD2RK solution from the same stages gives the error estimate (order 2, conservative;
the propagated solution is the fourth-order one). The error norm is normwise relative to the
state itself -- the deviation from the feedforward state -- per layer and for ``u_int`` (the
voltages move by ~1e-4 of their size: a norm relative to ``v`` would not see the signal).

As dt -> 0 the reference-Euler DFC update tends to ``acc / t_max``: :class:`ContinuousRun`
returns the integrals and the DFC method divides by ``t_max``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from neurodfc.components.controller import PIController
from neurodfc.core.etdrk4 import ErrorNorm, ETDRK4Step, Quadrature
from neurodfc.core.freeze import Freezer, freeze_limit
from neurodfc.core.loop import ClosedLoop
from neurodfc.core.split import SplitField, phi_scalar
from neurodfc.core.stepping import hermite, next_step
from neurodfc.core.teaching import FORWARD_RULES, check_rule
from neurodfc.network import DFCNetwork

__all__ = [
    "FORWARD_RULES",
    "ContinuousRun",
    "SplitField",
    "hermite",
    "integrate",
    "next_step",
    "phi_scalar",
]


@dataclass
class ContinuousRun:
    """Result of :func:`integrate`: final state per layer, control, integrated rule sums
    (``acc_W``, ``acc_b``: integrals over [0, t_max]), recorded outputs at ``t_rec``, counts."""

    v: list[torch.Tensor]
    r: list[torch.Tensor]
    vb: list[torch.Tensor]
    u: torch.Tensor
    u_int: torch.Tensor
    t_max: float
    nfe: int
    steps: int
    rejected: int
    acc_points: int
    dead: torch.Tensor | None = None
    """Samples [B] (bool) frozen during the run: their state became non-finite (``overflowed``)
    or their divergence ratio passed ``freeze_ratio``. A frozen sample keeps its last finite
    state, leaves the step-size control and contributes nothing to the integrals (None: none
    frozen)."""
    overflowed: torch.Tensor | None = None
    """The frozen samples [B] (bool) whose state became non-finite (None: none)."""
    limit_reached: bool = False
    """The step limit ``max_steps`` stopped the run before ``t_max`` (the state is the last
    accepted one; the samples are reported ``max_steps``)."""
    t_rec: list[float] = field(default_factory=list)
    r_rec: torch.Tensor | None = None
    u_rec: torch.Tensor | None = None
    v_rec: list[torch.Tensor] = field(default_factory=list)
    a_rec: list[torch.Tensor] = field(default_factory=list)
    acc_W: list[torch.Tensor] = field(default_factory=list)
    acc_b: list[torch.Tensor] = field(default_factory=list)


class Recorder:
    """The outputs at the requested times, filled by the dense output of each accepted step
    (cubic Hermite interpolation, third order).

    Args:
        F: the closed loop in deviation form.
        times: the recording times (sorted here).
        record_v: also record every layer's voltage.
        record_apical: also record every layer's apical voltage.
    """

    def __init__(
        self, F: SplitField, times: list[float], record_v: bool, record_apical: bool
    ) -> None:
        self.F = F
        self.t = sorted(times)
        self.n, self.k = len(self.t), 0
        like, B = F.r_target, F.r_target.shape[0]

        def buf(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=like.dtype, device=like.device)

        self.buf = buf
        self.r = buf(self.n, B, F.nL)
        self.u = buf(self.n, B, F.nL)
        self.v = [buf(self.n, B, n) for n in F.sizes] if record_v else []
        self.a = [buf(self.n, B, n) for n in F.sizes] if record_apical else []

    def record(self, y: torch.Tensor) -> None:
        """Record the state ``y`` at the next requested time.

        Args:
            y: the state there.
        """
        F, k = self.F, self.k
        rr = [self.buf(y.shape[0], n) for n in F.sizes]
        F.rates(y, rr)
        self.r[k] = rr[-1]
        self.u[k] = F.control(y, F.dr[-1])[0]
        for i, zz in enumerate(F.voltages(y) if self.v else []):
            torch.add(F.v_ff[i], zz, out=self.v[i][k])
        if self.a:
            ap = F.apical_voltages(y)
            for i in range(F.L):
                self.a[i][k] = ap[i] if ap is not None else self.u[k] @ F.loop.Q[i].T
        self.k += 1

    def step(self, t: float, h: float, step: ETDRK4Step) -> None:
        """Record the requested times within the accepted step ``[t, t + h]``.

        Args:
            t: the step's start.
            h: the step.
            step: the step, before :meth:`ETDRK4Step.advance` (``y``, ``Nu``, ``y_new``, ``Nn``).
        """
        D, y, y_new = self.F.D, step.y, step.y_new
        while self.k < self.n and self.t[self.k] <= t + h + 1e-12:
            th = min(max((self.t[self.k] - t) / h, 0.0), 1.0)
            self.record(hermite(y, step.Nu + D * y, y_new, step.Nn + D * y_new, h, th))

    def finish(self, y: torch.Tensor) -> None:
        """Stopped at the step limit: the later times hold the last state ``y``.

        Args:
            y: the last state.
        """
        while self.k < self.n:
            self.record(y)


@dataclass
class _Control:
    """Step-size control and stopping of one run (see :func:`integrate`)."""

    t_max: float
    first_step: float
    max_steps: int
    max_step: float | Callable[[float], float]
    trace: list[tuple[float, float, float]] | None
    freeze_check: bool
    alpha: float
    paper_leak: bool


def _advance(
    step: ETDRK4Step, norm: ErrorNorm, rec: Recorder, freeze: Freezer, c: _Control
) -> tuple[int, int, bool]:
    """The accept/reject loop from 0 to ``t_max``; returns ``(steps, rejected,
    limit_reached)``."""
    F, quad = step.F, step.quad
    t = 0.0
    h = min(c.first_step, c.t_max)
    steps = rejected = 0
    while t < c.t_max * (1 - 1e-12):
        if steps + rejected >= c.max_steps:
            return steps, rejected, True
        h = min(h, c.max_step(t) if callable(c.max_step) else c.max_step)
        if t + h >= c.t_max * (1 - 1e-12):
            h = c.t_max - t
        start = step.attempt(h, freeze.dead_or_none())
        en = norm.ratio(step, freeze)
        if not math.isfinite(en):
            en = 1e10
        if c.trace is not None:
            c.trace.append((t, h, en))
        if en <= 1.0:
            step.evaluate_new()
            if c.freeze_check:
                # |r_L - (r_L* - alpha u)| / |r_L^-| (the divergence criterion) per sample
                u_leak = step.y_new[:, F.S - F.nL :] if c.paper_leak else F.u
                freeze.divergence(F.e, u_leak, c.alpha)
            rec.step(t, h, step)
            t += h
            step.advance()
            norm.accept()
            steps += 1
        else:
            rejected += 1
            quad.fill = start
        h = next_step(h, en)
    return steps, rejected, False


def _result(
    step: ETDRK4Step, rec: Recorder, freeze: Freezer, t_max: float, counts: tuple[int, int, bool]
) -> ContinuousRun:
    """The :class:`ContinuousRun` at the end of the loop."""
    F, quad, y = step.F, step.quad, step.y
    x = F.loop.x
    acc_W: list[torch.Tensor] = []
    acc_b: list[torch.Tensor] = []
    if quad.on:
        quad.flush(freeze.dead_or_none())  # the frozen samples' sums are dropped
        acc_W, acc_b = quad.sums.totals(x)
    r_fin = [torch.empty_like(v) for v in F.v_ff]
    F.rates(y, r_fin)
    vb_fin = [F.v_ff[0].clone()]
    for i in range(1, F.L):
        vb_fin.append(torch.addmm(F.v_ff[i], F.dr[i - 1], F.W[i].t()))
    u, u_int = F.control(y, F.dr[-1])
    steps, rejected, limit_reached = counts
    return ContinuousRun(
        v=[F.v_ff[i] + zz for i, zz in enumerate(F.voltages(y))],
        r=r_fin,
        vb=vb_fin,
        u=u,
        u_int=u_int.clone(),
        t_max=t_max,
        nfe=F.nfe,
        steps=steps,
        rejected=rejected,
        acc_points=quad.points,
        t_rec=rec.t,
        r_rec=rec.r,
        u_rec=rec.u,
        v_rec=rec.v,
        a_rec=rec.a,
        acc_W=acc_W,
        acc_b=acc_b,
        dead=freeze.dead_or_none(),
        overflowed=freeze.overflowed_or_none(),
        limit_reached=limit_reached,
    )


@torch.no_grad()
def integrate(
    net: DFCNetwork,
    x: torch.Tensor,
    r_target: torch.Tensor,
    *,
    t_max: float,
    alpha: float,
    k_p: float,
    tau_ratio: float,
    leak: str = "reference",
    apical_tau: float | None = None,
    rtol: float = 2e-4,
    atol: float = 1e-12,
    first_step: float = 0.02,
    accumulate: str | None = None,
    record_times: list[float] | None = None,
    record_v: bool = False,
    chunk: int = 4,
    max_steps: int = 100_000,
    max_step: float | Callable[[float], float] = math.inf,
    trace: list[tuple[float, float, float]] | None = None,
    freeze_ratio: float = math.inf,
    freeze_growth: float = 100.0,
    split: SplitField | None = None,
    record_apical: bool = False,
) -> ContinuousRun:
    """Integrate the closed loop (and, with ``accumulate``, the rule's time integral) from the
    feedforward state to ``t_max`` with adaptive ETDRK4 (see the module docstring).

    Args:
        net: the network (weights ``W``, ``b``, feedback ``Q``).
        x: inputs ``r_0`` [B, n_0].
        r_target: output targets ``r_L*`` [B, n_L].
        t_max: simulated time (units of tau_u).
        alpha: controller leak.
        k_p: proportional gain.
        tau_ratio: ``tau_v / tau_u``.
        leak: leak convention (``reference`` or ``paper``).
        apical_tau: apical time constant (None: instantaneous).
        rtol: relative tolerance of the estimated local error, relative to the deviation from
            the feedforward state (:class:`~neurodfc.core.etdrk4.ErrorNorm`).
        atol: absolute tolerance.
        first_step: initial step size.
        accumulate: forward rule whose signal is integrated (None: no integrals).
        record_times: times within [0, t_max] whose ``r_L``, ``u`` (and ``v``) are recorded
            (cubic Hermite interpolation between steps, third order).
        record_v: also record every layer's voltage.
        chunk: steps per accumulation product.
        max_steps: accepted + rejected steps allowed; then the run stops where it is
            (:attr:`ContinuousRun.limit_reached`).
        max_step: largest step (number or function of t).
        trace: list collecting ``(t, h, error ratio)`` per attempted step.
        freeze_ratio: a sample whose divergence ratio ``|r_L - (r_L* - alpha u)| / |r_L^-|``
            exceeds this and ``freeze_growth`` times its initial value is frozen (see
            :attr:`ContinuousRun.dead`): a diverging sample would otherwise force ever smaller
            steps on the whole batch. Samples whose state overflows are always frozen.
        freeze_growth: see ``freeze_ratio``.
        split: the closed loop to integrate (:class:`neurodfc.core.split.SplitField`, any
            components); None: the network's neurons with the PI controller of ``alpha``,
            ``k_p``, ``leak``, ``tau_ratio`` and ``apical_tau``.
        record_apical: also record every layer's apical voltage (``Q_i u`` when
            instantaneous).

    Returns:
        A :class:`ContinuousRun`.
    """
    check_rule(accumulate)
    if split is None:
        pi = PIController(k_p=k_p, alpha=alpha, leak=leak)
        split = SplitField(ClosedLoop(net, x, r_target, pi, tau_ratio, apical_tau))
    F = split
    freeze = Freezer(freeze_limit(F.r_ff[-1], F.delta, freeze_ratio, freeze_growth))
    step = ETDRK4Step(F, Quadrature(F, accumulate, chunk, x))
    rec = Recorder(F, record_times or [], record_v, record_apical)
    c = _Control(
        t_max,
        first_step,
        max_steps,
        max_step,
        trace,
        math.isfinite(freeze_ratio),
        alpha,
        leak == "paper",
    )
    counts = _advance(step, ErrorNorm(F, rtol, atol), rec, freeze, c)
    rec.finish(step.y)
    return _result(step, rec, freeze, t_max, counts)
