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

from neurodfc.increments import rate_increments
from neurodfc.network import DFCNetwork

FORWARD_RULES = ("nonlinear_difference", "voltage_difference", "derivative_matrix")


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
    t_rec: list[float] = field(default_factory=list)
    r_rec: torch.Tensor | None = None
    u_rec: torch.Tensor | None = None
    v_rec: list[torch.Tensor] = field(default_factory=list)
    acc_W: list[torch.Tensor] = field(default_factory=list)
    acc_b: list[torch.Tensor] = field(default_factory=list)


def phi_scalar(z: float) -> tuple[float, float, float, float]:
    """``(exp(z), phi_1(z), phi_2(z), phi_3(z))`` with ``phi_k(z) = sum_j z^j / (j + k)!``,
    by the closed forms for ``|z| >= 0.2`` and a Taylor series below (no cancellation)."""
    if abs(z) >= 0.2:
        ez = math.exp(z)
        p1 = (ez - 1) / z
        p2 = (ez - 1 - z) / z**2
        p3 = (ez - 1 - z - z * z / 2) / z**3
        return ez, p1, p2, p3
    p = [0.0, 0.0, 0.0]
    term = 1.0
    for j in range(16):
        for k in range(3):
            p[k] += term / math.factorial(j + k + 1)
        term *= z
    return math.exp(z), p[0], p[1], p[2]


class _Field:
    """The closed loop split as ``f(y) = D y + N(y)`` on a flat state ``y`` [B, S] (columns:
    voltage deviations ``z_i = v_i - v_i^ff`` of all layers, apical voltages if any,
    ``u_int``)."""

    def __init__(
        self,
        net: DFCNetwork,
        x: torch.Tensor,
        r_target: torch.Tensor,
        alpha: float,
        k_p: float,
        tau_ratio: float,
        leak: str,
        apical_tau: float | None,
    ) -> None:
        self.L = L = net.depth
        self.sizes = sizes = net.sizes[1:]
        self.N = N = sum(sizes)
        self.nL = nL = sizes[-1]
        self.offs = [0]
        for n in sizes:
            self.offs.append(self.offs[-1] + n)
        self.apical = apical_tau is not None
        self.tau_a = apical_tau
        self.S = S = N * (2 if self.apical else 1) + nL
        self.alpha, self.k_p, self.tcr, self.leak = alpha, k_p, tau_ratio, leak
        self.r_target = r_target
        self.acts = list(net.act_names)
        B = x.shape[0]
        dtype, device = x.dtype, x.device
        inv = 1.0 / tau_ratio
        self.W = [w.detach() for w in net.W]
        # 1/tau_ratio folded into the products: vbs = (W r + b)/tau_ratio
        self.Wt_s = [(w * inv).t().contiguous() for w in self.W]
        Q = [q.detach() for q in net.Q]
        fb_scale = 1.0 if self.apical else inv
        self.QT_s = (torch.cat(Q, dim=0) * fb_scale).t().contiguous()
        self.v_ff, self.r_ff = net.feedforward(x)
        self.inc = rate_increments(self.acts, self.v_ff)
        # output error at the feedforward state, r_L* - r_L^ff (e = delta - (r_L - r_L^ff))
        self.delta = r_target - self.r_ff[-1]
        # exact linear part D (per column; few distinct values)
        D = [-inv] * S
        self.out_shift: torch.Tensor | None = None
        if k_p != 0.0 and Q[-1].shape[0] == Q[-1].shape[1]:
            dphi = net.act_prime(L - 1, self.v_ff[-1]).mean(0)
            dL = (-(1.0 + k_p * torch.diagonal(Q[-1]) * dphi) * inv).tolist()
            D[self.offs[L - 1] : N] = dL
            # N_L = (vb + fb - v)/tcr - D_L v: the extra term -(1/tcr + D_L) v
            self.out_shift = -(torch.tensor(dL, dtype=dtype, device=device) + inv)
        if self.apical:
            assert apical_tau is not None
            D[N : 2 * N] = [-1.0 / apical_tau] * N
        D[S - nL :] = [-alpha if leak == "paper" else 0.0] * nL
        self.D = torch.tensor(D, dtype=dtype, device=device)
        uniq = sorted(set(D))
        self.D_unique = uniq
        self.D_index = torch.tensor([uniq.index(d) for d in D], device=device)
        self.nfe = 0
        # basal deviations W_i (r_{i-1} - r_{i-1}^ff) / tau_ratio (layer 1: none, r_0 is fixed)
        self.vbs = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
        self.vbs[0] = torch.zeros((B, sizes[0]), dtype=dtype, device=device)
        self.dr = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
        self.work = [torch.empty((B, n), dtype=dtype, device=device) for n in sizes]
        self.FB = torch.empty((B, N), dtype=dtype, device=device)
        self.e = torch.empty_like(r_target)
        self.u = torch.empty_like(r_target)

    def coefficients(self, h: float) -> dict[str, torch.Tensor]:
        """The per-column ETDRK4 coefficients for step ``h``."""
        full = [phi_scalar(h * d) for d in self.D_unique]
        half = [phi_scalar(0.5 * h * d) for d in self.D_unique]
        rows = {
            "E": [f[0] for f in full],
            "E2": [g[0] for g in half],
            "q1": [0.5 * h * g[1] for g in half],
            "f1": [h * (f[1] - 3 * f[2] + 4 * f[3]) for f in full],
            "f2": [h * (2 * f[2] - 4 * f[3]) for f in full],
            "f3": [h * (4 * f[3] - f[2]) for f in full],
            # ETD2RK minus ETDRK4: the error estimate
            "g1": [h * (f[1] - f[2]) - h * (f[1] - 3 * f[2] + 4 * f[3]) for f in full],
            "g2": [-h * (2 * f[2] - 4 * f[3]) for f in full],
            "g3": [h * f[2] - h * (4 * f[3] - f[2]) for f in full],
        }
        keys = list(rows)
        table = torch.tensor([rows[k] for k in keys], dtype=self.D.dtype, device=self.D.device)
        cols = table[:, self.D_index]
        return {k: cols[j] for j, k in enumerate(keys)}

    def initial_state(self) -> torch.Tensor:
        """The feedforward state: zero deviations, apical voltages and integral control."""
        return torch.zeros(
            (self.r_target.shape[0], self.S), dtype=self.r_target.dtype, device=self.D.device
        )

    def voltages(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer views ``z_i = v_i - v_i^ff`` of a state."""
        return [y[:, self.offs[i] : self.offs[i + 1]] for i in range(self.L)]

    def rates(self, y: torch.Tensor, r: list[torch.Tensor] | None) -> None:
        """``self.dr_i = phi(v_i) - phi(v_i^ff)`` and, when ``r`` is given, ``r_i = phi(v_i)``
        into ``r``."""
        z = self.voltages(y)
        for i in range(self.L):
            self.inc[i](z[i], self.dr[i], self.work[i])
            if r is not None:
                torch.add(self.r_ff[i], self.dr[i], out=r[i])

    def nonlinear(self, y: torch.Tensor, r: list[torch.Tensor] | None, out: torch.Tensor) -> None:
        """``out = N(y) = f(y) - D y``; fills ``r`` (rates) and ``self.vbs`` (basal inputs
        divided by tau_ratio)."""
        self.nfe += 1
        L, N, offs = self.L, self.N, self.offs
        self.rates(y, r)
        for i in range(1, L):
            torch.mm(self.dr[i - 1], self.Wt_s[i], out=self.vbs[i])
        e, u = self.e, self.u
        u_int = y[:, self.S - self.nL :]
        torch.sub(self.delta, self.dr[L - 1], out=e)
        torch.add(u_int, e, alpha=self.k_p, out=u)
        torch.mm(u, self.QT_s, out=self.FB)
        if self.apical:
            assert self.tau_a is not None
            torch.mul(self.FB, 1.0 / self.tau_a, out=out[:, N : 2 * N])
            fb_src, fb_alpha = y[:, N : 2 * N], 1.0 / self.tcr
        else:
            fb_src, fb_alpha = self.FB, 1.0
        for i in range(L):
            blk = out[:, offs[i] : offs[i + 1]]
            torch.add(self.vbs[i], fb_src[:, offs[i] : offs[i + 1]], alpha=fb_alpha, out=blk)
            if i == L - 1 and self.out_shift is not None:
                blk.addcmul_(y[:, offs[i] : offs[i + 1]], self.out_shift)
        du = out[:, self.S - self.nL :]
        if self.leak == "paper":
            du.copy_(e)  # e - alpha u_int: the leak is in D
        else:
            torch.sub(e, u, alpha=self.alpha, out=du)

    def control(self, y: torch.Tensor, dr_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, u_int)`` at a state whose output rate deviation is ``dr_out``."""
        u_int = y[:, self.S - self.nL :]
        return u_int + self.k_p * (self.delta - dr_out), u_int


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
        max_steps: accepted + rejected steps allowed before giving up (RuntimeError).
        max_step: largest step (number or function of t).
        trace: list collecting ``(t, h, error ratio)`` per attempted step.
        freeze_ratio: a sample whose divergence ratio ``|r_L - (r_L* - alpha u)| / |r_L^-|``
            exceeds this and ``freeze_growth`` times its initial value is frozen (see
            :attr:`ContinuousRun.dead`): a diverging sample would otherwise force ever smaller
            steps on the whole batch. Samples whose state overflows are always frozen.
        freeze_growth: see ``freeze_ratio``.

    Returns:
        A :class:`ContinuousRun`.
    """
    if accumulate is not None and accumulate not in FORWARD_RULES:
        raise ValueError(f"accumulate must be one of {FORWARD_RULES}, got {accumulate!r}")
    F = _Field(net, x, r_target, alpha, k_p, tau_ratio, leak, apical_tau)
    L, sizes, S, N = F.L, F.sizes, F.S, F.N
    B = x.shape[0]
    dtype, device = x.dtype, x.device
    tcr = tau_ratio

    def buf(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, device=device)

    acc = accumulate is not None
    per_step = 4  # quadrature points per step: y_n, a, b, c (classical RK4 weights)
    cap = max(chunk, 1) * per_step if acc else 1
    # rates at the quadrature points; presynaptic layers carry a column of ones so that the
    # accumulation product also yields the bias sums
    R_full = [buf(cap, B, n + int(acc and i < L - 1)) for i, n in enumerate(sizes)]
    for i in range(L - 1):
        if acc:
            R_full[i][..., -1] = 1.0
    slot_r = [[R_full[i][k, :, : sizes[i]] for k in range(cap)] for i in range(L)]
    Dch = [buf(cap, B, n) for n in sizes]  # weighted rule signals at the quadrature points
    slot_d = [[Dch[i][k] for k in range(cap)] for i in range(L)]
    tmp = [buf(B, n) for n in sizes]
    P_r, P_d = [buf(B, n) for n in sizes], [buf(B, n) for n in sizes]  # at y_n (FSAL)
    Pn_r, Pn_d = [buf(B, n) for n in sizes], [buf(B, n) for n in sizes]
    acc_aug = [torch.zeros((w.shape[0], w.shape[1] + 1), dtype=dtype, device=device) for w in F.W]
    acc_d1 = torch.zeros((B, sizes[0]), dtype=dtype, device=device)
    dprime_ff: list[torch.Tensor] = []
    if accumulate == "derivative_matrix":
        dprime_ff = [net.act_prime(i, F.v_ff[i]) for i in range(L)]
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
        if fill == 0:
            return
        if any_dead:  # their sums are dropped (the methods exclude such samples)
            for i in range(L):
                Dch[i][:fill, dead] = 0.0
                R_full[i][:fill, dead] = 0.0
        acc_d1.add_(Dch[0][:fill].sum(0))
        for i in range(1, L):
            Di = Dch[i][:fill].reshape(-1, sizes[i])
            Ri = R_full[i - 1][:fill].reshape(-1, R_full[i - 1].shape[-1])
            acc_aug[i].addmm_(Di.t(), Ri)
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
                torch.mul(F.vbs[i], tcr, out=tmp[i])
                F.inc[i](tmp[i], out[i], F.work[i])
                torch.sub(F.dr[i], out[i], out=out[i])
            else:
                torch.sub(z[i], F.vbs[i], alpha=tcr, out=out[i])
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
    # error-norm blocks: each layer's voltages, each layer's apical voltages, u_int
    bounds = [(F.offs[i], F.offs[i + 1]) for i in range(L)]
    if F.apical:
        bounds += [(N + F.offs[i], N + F.offs[i + 1]) for i in range(L)]
    bounds.append((S - F.nL, S))
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
    k_rec = 0

    def record_state(yy: torch.Tensor) -> None:
        nonlocal k_rec
        rr = [buf(B, n) for n in sizes]
        F.rates(yy, rr)
        r_rec[k_rec] = rr[-1]
        u_rec[k_rec] = F.control(yy, F.dr[-1])[0]
        for i, zz in enumerate(F.voltages(yy) if record_v else []):
            torch.add(F.v_ff[i], zz, out=v_rec[i][k_rec])
        k_rec += 1

    D = F.D
    t = 0.0
    h = min(first_step, t_max)
    steps = rejected = 0
    while t < t_max * (1 - 1e-12):
        if steps + rejected >= max_steps:
            raise RuntimeError(
                f"continuous solver: more than {max_steps} steps before t = {t_max:g} (reached "
                f"t = {t:.4g}, step {h:.3g}); the dynamics are too stiff for 'etdrk4' at these "
                "tolerances: loosen simulation.rtol or use simulation.solver = 'euler_reference'"
            )
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
                f0 = Nu + D * y
                g1 = Nn + D * y_new
                record_state(
                    (2 * th**3 - 3 * th**2 + 1) * y
                    + (th**3 - 2 * th**2 + th) * h * f0
                    + (-2 * th**3 + 3 * th**2) * y_new
                    + (th**3 - th**2) * h * g1
                )
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
        fac = 0.9 * max(en, 1e-10) ** (-1.0 / 3.0)
        h = h * min(4.0, max(0.2, fac))
    acc_W: list[torch.Tensor] = []
    acc_b: list[torch.Tensor] = []
    if acc:
        flush()
        acc_W = [acc_d1.t() @ x] + [a[:, :-1] for a in acc_aug[1:]]
        acc_b = [acc_d1.sum(0)] + [a[:, -1] for a in acc_aug[1:]]
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
        acc_W=acc_W,
        acc_b=acc_b,
        dead=dead if any_dead else None,
        overflowed=overflowed if bool(overflowed.any()) else None,
    )
