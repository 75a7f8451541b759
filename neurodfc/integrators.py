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
from neurodfc.core.loop import ClosedLoop
from neurodfc.core.split import SplitField, phi_scalar
from neurodfc.core.stepping import hermite, next_step
from neurodfc.core.sums import ChunkedSums
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

    ``rtol``/``atol`` bound the estimated local error of each step relative to the deviation
    from the feedforward state (``max`` over the blocks of ``|err| / (atol + rtol |z|)``);
    ``max_step`` caps the step (a number or a function of t); ``trace`` collects
    ``(t, h, error ratio)`` of every attempted step. ``record_times`` (increasing, within
    [0, t_max]) are filled by cubic Hermite interpolation between steps (third order).

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
        rtol: relative tolerance (of the deviation from the feedforward state).
        atol: absolute tolerance.
        first_step: initial step size.
        accumulate: forward rule whose signal is integrated (None: no integrals).
        record_times: times whose ``r_L``, ``u`` (and ``v``) are recorded.
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
    L, sizes, S, N = F.L, F.sizes, F.S, F.N
    B = x.shape[0]
    dtype, device = x.dtype, x.device
    taus = F.taus

    def buf(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device=device)

    acc = accumulate is not None
    per_step = 4  # quadrature points per step: y_n, a, b, c (classical RK4 weights)
    cap = max(chunk, 1) * per_step if acc else 1
    # rates and weighted rule signals at the quadrature points (the shared accumulator)
    sums = ChunkedSums(sizes, B, cap, acc, x)
    slot_r, slot_d = sums.rates, sums.signals
    tmp = [buf(B, n) for n in sizes]
    P_r, P_d = [buf(B, n) for n in sizes], [buf(B, n) for n in sizes]  # at y_n (FSAL)
    Pn_r, Pn_d = [buf(B, n) for n in sizes], [buf(B, n) for n in sizes]
    dprime_ff: list[torch.Tensor] = []
    if accumulate == "derivative_matrix":
        dprime_ff = [lay.phi_prime(F.v_ff[i]) for i, lay in enumerate(F.loop.layers)]
    fill = 0
    acc_points = 0
    # samples whose state became non-finite (a diverging sample must not stall the batch)
    dead = torch.zeros(B, dtype=torch.bool, device=device)
    overflowed = torch.zeros(B, dtype=torch.bool, device=device)
    any_dead = False
    # freeze limit per sample: the ratio must pass freeze_ratio AND grow freeze_growth-fold
    # over its initial value |e(0)| / |r_L^-| (a far target alone starts with a large ratio)
    r_ff_norm = torch.linalg.vector_norm(F.r_ff[-1], dim=1)
    ratio0 = torch.linalg.vector_norm(F.delta, dim=1) / r_ff_norm
    freeze_at = torch.clamp(freeze_growth * ratio0, min=freeze_ratio) * r_ff_norm

    def flush() -> None:
        nonlocal fill
        # the frozen samples' sums are dropped (the methods exclude such samples)
        sums.flush(0, fill, dead if any_dead else None)
        fill = 0

    def signal(y: torch.Tensor, out: list[torch.Tensor]) -> None:
        """The rule's signal d_i at the state just evaluated (rate deviations F.dr, basal
        deviations F.vbs): ``phi(v_i) - phi(v_i^b) = dr_i - (phi(v^ff + z^b) - phi(v^ff))``,
        or ``z_i - z_i^b`` (times ``phi'(v_i^ff)``)."""
        z = F.voltages(y)
        for i in range(L):
            if accumulate == "nonlinear_difference":
                if i == 0:  # the basal input of layer 1 is the feedforward one
                    out[0].copy_(F.dr[0])
                    continue
                torch.mul(F.vbs[i], taus[i], out=tmp[i])
                F.inc[i](tmp[i], out[i], F.work[i])
                torch.sub(F.dr[i], out[i], out=out[i])
            else:
                torch.sub(z[i], F.vbs[i], alpha=taus[i], out=out[i])
                if dprime_ff:
                    out[i].mul_(dprime_ff[i])

    def eval_point(y: torch.Tensor, out_K: torch.Tensor, weight: float) -> None:
        """N(y) into out_K; with accumulation, the weighted signal into the next chunk slot."""
        nonlocal fill
        if not acc:
            F.nonlinear(y, None, out_K)
            return
        rates = [slot_r[k][fill] for k in range(L)]
        F.nonlinear(y, rates, out_K)
        outs = [slot_d[k][fill] for k in range(L)]
        signal(y, outs)
        for o in outs:
            o.mul_(weight)
        fill += 1

    y = F.initial_state()
    Nu, Na, Nb, Nc, Nn = (buf(B, S) for _ in range(5))  # N at y_n, a, b, c, y_n+1
    ya, yb, yc, y_new, y2 = (buf(B, S) for _ in range(5))
    F.nonlinear(y, P_r, Nu)
    if acc:
        signal(y, P_d)
    # error-norm blocks: each layer's voltages, each layer's apical voltages, controller states
    bounds = [(F.offs[i], F.offs[i + 1]) for i in range(L)]
    if F.apical:
        bounds += [(N + F.offs[i], N + F.offs[i + 1]) for i in range(L)]
    c0 = S - F.n_ctrl * F.nL  # each controller state entry (PI: u_int)
    bounds += [(c0 + k * F.nL, c0 + (k + 1) * F.nL) for k in range(F.n_ctrl)]
    block_of = torch.empty(S, dtype=torch.long, device=device)
    for k, (lo, hi) in enumerate(bounds):
        block_of[lo:hi] = k
    n_blocks = len(bounds)

    def block_norms(z: torch.Tensor) -> torch.Tensor:
        col = torch.linalg.vector_norm(z, dim=0)
        sq = torch.zeros(n_blocks, dtype=dtype, device=device)
        return sq.index_add_(0, block_of, col.square_()).sqrt_()

    z_n = torch.zeros(n_blocks, dtype=dtype, device=device)

    def step_error(
        y: torch.Tensor, y_new: torch.Tensor, y2: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        """Block norms of the deviation ``y_new`` and the step's error ratio (<= 1: accept);
        the frozen samples' rows are held at ``y`` and kept out of the error estimate ``y2``."""
        if any_dead:
            y_new[dead] = y[dead]
            y2[dead] = 0.0
        z_new = block_norms(y_new)
        ratio = block_norms(y2) / (atol + rtol * torch.maximum(z_n, z_new))
        return z_new, float(ratio.max())

    rec_t = sorted(record_times or [])
    n_rec = len(rec_t)
    r_rec = buf(n_rec, B, sizes[-1])
    u_rec = buf(n_rec, B, sizes[-1])
    v_rec = [buf(n_rec, B, n) for n in sizes] if record_v else []
    a_rec = [buf(n_rec, B, n) for n in sizes] if record_apical else []
    k_rec = 0

    def record_state(yy: torch.Tensor) -> None:
        nonlocal k_rec
        rr = [buf(B, n) for n in sizes]
        F.rates(yy, rr)
        r_rec[k_rec] = rr[-1]
        u_rec[k_rec] = F.control(yy, F.dr[-1])[0]
        for i, zz in enumerate(F.voltages(yy) if record_v else []):
            torch.add(F.v_ff[i], zz, out=v_rec[i][k_rec])
        if record_apical:
            ap = F.apical_voltages(yy)
            u_k = u_rec[k_rec]
            for i in range(L):
                a_rec[i][k_rec] = ap[i] if ap is not None else u_k @ F.loop.Q[i].T
        k_rec += 1

    D = F.D
    t = 0.0
    h = min(first_step, t_max)
    steps = rejected = 0
    limit_reached = False
    while t < t_max * (1 - 1e-12):
        if steps + rejected >= max_steps:
            limit_reached = True
            break
        h = min(h, max_step(t) if callable(max_step) else max_step)
        if t + h >= t_max * (1 - 1e-12):
            h = t_max - t
        co = F.coefficients(h)
        start = fill
        if acc:
            if fill + per_step > cap:
                flush()
                start = 0
            for i in range(L):
                slot_r[i][fill].copy_(P_r[i])
                torch.mul(P_d[i], h / 6, out=slot_d[i][fill])
            fill += 1
        # a = E2 y + q1 Nu ; b = E2 y + q1 Na ; c = E2 a + q1 (2 Nb - Nu)
        torch.mul(y, co["E2"], out=ya)
        torch.mul(y, co["E2"], out=yb)
        ya.addcmul_(Nu, co["q1"])
        eval_point(ya, Na, h / 3)
        yb.addcmul_(Na, co["q1"])
        eval_point(yb, Nb, h / 3)
        torch.mul(ya, co["E2"], out=yc)
        torch.sub(Nb, Nu, alpha=0.5, out=Nc)  # Nc as scratch: Nb - Nu/2
        yc.addcmul_(Nc, co["q1"], value=2.0)
        eval_point(yc, Nc, h / 6)
        # y_new = E y + f1 Nu + f2 (Na + Nb) + f3 Nc ; y2 = E y + h p1 Nu + h p2 (Nc - Nu)
        torch.mul(y, co["E"], out=y_new)
        y_new.addcmul_(Nu, co["f1"])
        torch.add(Na, Nb, out=ya)
        y_new.addcmul_(ya, co["f2"])
        y_new.addcmul_(Nc, co["f3"])
        torch.mul(Nu, co["g1"], out=y2)  # error estimate: ETD2RK - ETDRK4
        y2.addcmul_(ya, co["g2"])
        y2.addcmul_(Nc, co["g3"])
        z_new, en = step_error(y, y_new, y2)
        if not math.isfinite(en):
            # samples that overflowed: freeze them at their last (finite) state and go on
            # with the others (rows are independent), instead of shrinking h forever
            bad = ~(torch.isfinite(y_new).all(1) & torch.isfinite(y2).all(1)) & ~dead
            if bool(bad.any()):
                dead |= bad
                overflowed |= bad
                any_dead = True
                z_new, en = step_error(y, y_new, y2)
        if not math.isfinite(en):
            en = 1e10
        if trace is not None:
            trace.append((t, h, en))
        if en <= 1.0:
            F.nonlinear(y_new, Pn_r, Nn)
            if acc:
                signal(y_new, Pn_d)
            if math.isfinite(freeze_ratio):
                # |r_L - (r_L* - alpha u)| / |r_L^-| (the divergence criterion) per sample
                u_leak = y_new[:, S - F.nL :] if leak == "paper" else F.u
                far = torch.linalg.vector_norm(F.e - alpha * u_leak, dim=1) > freeze_at
                far &= ~dead
                if bool(far.any()):
                    dead |= far
                    any_dead = True
            while k_rec < n_rec and rec_t[k_rec] <= t + h + 1e-12:
                th = min(max((rec_t[k_rec] - t) / h, 0.0), 1.0)
                record_state(hermite(y, Nu + D * y, y_new, Nn + D * y_new, h, th))
            t += h
            y, y_new = y_new, y
            Nu, Nn = Nn, Nu
            P_r, Pn_r = Pn_r, P_r
            P_d, Pn_d = Pn_d, P_d
            z_n = z_new
            acc_points += per_step if acc else 0
            steps += 1
        else:
            rejected += 1
            fill = start
        h = next_step(h, en)
    while k_rec < n_rec:  # stopped at the step limit: the later times hold the last state
        record_state(y)
    acc_W: list[torch.Tensor] = []
    acc_b: list[torch.Tensor] = []
    if acc:
        flush()
        acc_W, acc_b = sums.totals(x)
    r_fin = [buf(B, n) for n in sizes]
    F.rates(y, r_fin)
    vb_fin = [F.v_ff[0].clone()]
    for i in range(1, L):
        vb_fin.append(torch.addmm(F.v_ff[i], F.dr[i - 1], F.W[i].t()))
    u, u_int = F.control(y, F.dr[-1])
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
        acc_points=acc_points,
        t_rec=rec_t,
        r_rec=r_rec,
        u_rec=u_rec,
        v_rec=v_rec,
        a_rec=a_rec,
        acc_W=acc_W,
        acc_b=acc_b,
        dead=dead if any_dead else None,
        overflowed=overflowed if bool(overflowed.any()) else None,
        limit_reached=limit_reached,
    )
