"""Closed forms of the linearised closed loop (the ``linear_response`` solver's algebra).

Linearised about the feedforward state (``z_i = v_i - v_i^-``, ``D_i = diag(phi_i'(v_i^-))``,
``M_i = W_i D_{i-1}``, every layer with the time constant ``tau``), layer ``i`` is a
first-order lag driven by ``M_i z_{i-1} + Q_i u``. With ``x_k`` the ``k``-th cascaded lag of
the control (``tau dx_1/dt = -x_1 + u``, ``tau dx_k/dt = -x_k + x_{k-1}``), every deviation is
a fixed combination of them::

    z_i = sum_{k=0}^{i} P_i[k] x_k,     P_i[0] = Q_i,   P_i[k] = W_i D_{i-1} P_{i-1}[k-1]

(0-based layers and lags). The controller sees the output through ``C = D_L P_L``
(``n_L x L n_L``; its blocks are the ``J_i Q_i`` of DFC-SSA): ``e = e_0 - C x``. The state
``y = (x, u_int)`` of dimension ``(L + 1) n_L`` obeys an affine LTI system ``dy/dt = A y + f``
(:func:`reduced_system`) whose moments over ``[0, T]`` (final state, ``int y``, ``int y y^T``)
come from one exponential and a Gauss-Legendre Gramian over a short interval and doubling
(:func:`moments`). Shapes: a leading batch dimension ``B`` everywhere (one system per
sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def span_matrices(
    W: list[torch.Tensor], D: list[torch.Tensor], Q: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The span ``P_i = [P_i[0], ..., P_i[L-1]]`` [B, n_i, L n_L] of each layer's deviation
    (blocks beyond lag ``i`` are zero).

    Args:
        W: forward weights ``W_i`` [n_i, n_{i-1}] (``W[0]`` unused).
        D: ``phi_i'(v_i^-)`` per layer [B, n_i].
        Q: feedback weights ``Q_i`` [n_i, n_L].
    """
    L = len(Q)
    B, nL = D[0].shape[0], Q[-1].shape[1]
    out: list[torch.Tensor] = []
    for i in range(L):
        P = torch.zeros((B, Q[i].shape[0], L * nL), dtype=D[0].dtype, device=D[0].device)
        P[:, :, :nL] = Q[i]
        if i > 0:
            prev = D[i - 1].unsqueeze(-1) * out[-1][:, :, : i * nL]
            P[:, :, nL : (i + 1) * nL] = torch.matmul(W[i], prev)
        out.append(P)
    return out


def output_projection(
    W: list[torch.Tensor], D: list[torch.Tensor], Q: list[torch.Tensor]
) -> torch.Tensor:
    """``C = D_L P_L`` [B, n_L, L n_L] without the spans: block ``k`` is
    ``J_k Q_{L-1-k}`` with the backward products ``J_0 = D_{L-1}``,
    ``J_k = J_{k-1} W_{L-k} D_{L-1-k}`` (``n_L`` rows each: about ``1 / i`` of the forward
    spans' FLOP for layer ``i``).

    Args:
        W: forward weights ``W_i`` [n_i, n_{i-1}] (``W[0]`` unused).
        D: ``phi_i'(v_i^-)`` per layer [B, n_i].
        Q: feedback weights ``Q_i`` [n_i, n_L].
    """
    L = len(Q)
    J = torch.diag_embed(D[-1])  # [B, n_L, n_L]
    blocks = []
    for k in range(L):
        i = L - 1 - k
        blocks.append(J @ Q[i])
        if i > 0:
            J = (J @ W[i]) * D[i - 1].unsqueeze(1)
    return torch.cat(blocks, -1)


def lag_deviations(
    W: list[torch.Tensor], D: list[torch.Tensor], Q: list[torch.Tensor], x: torch.Tensor
) -> list[torch.Tensor]:
    """``z_i = sum_k P_i[k] x_k`` per layer [..., B, n_i] for lag states ``x`` [..., B, L n_L]
    without the spans, by the recursion ``z_i^(j) = Q_i x_j + W_i D_{i-1} z_{i-1}^(j+1)``
    (``z_i^(j)``: layer ``i``'s deviation with the lags shifted by ``j``; ``z_i = z_i^(0)``).

    Args:
        W: forward weights ``W_i`` [n_i, n_{i-1}] (``W[0]`` unused).
        D: ``phi_i'(v_i^-)`` per layer [B, n_i].
        Q: feedback weights ``Q_i`` [n_i, n_L].
        x: lag states [..., B, L n_L].
    """
    L, nL = len(Q), Q[-1].shape[1]
    xs = [x[..., j * nL : (j + 1) * nL] for j in range(L)]
    shifted = [xj @ Q[0].T for xj in xs]  # z_0^(j), j = 0..L-1
    out = [shifted[0]]
    for i in range(1, L):
        shifted = [xs[j] @ Q[i].T + (D[i - 1] * shifted[j + 1]) @ W[i].T for j in range(L - i)]
        out.append(shifted[0])
    return out


def basal_span(P: torch.Tensor, n_out: int) -> torch.Tensor:
    """The span of the somatic-minus-basal voltage ``s_i = z_i - W_i D_{i-1} z_{i-1}``:
    block ``k`` is ``P_i[k] - P_i[k+1]`` (the basal input carries the lagged copy).

    Args:
        P: a layer's span [B, n_i, L n_L] (:func:`span_matrices`).
        n_out: ``n_L``.
    """
    S = P.clone()
    S[:, :, :-n_out] -= P[:, :, n_out:]
    return S


def reduced_system(
    C: torch.Tensor,
    e0: torch.Tensor,
    *,
    tau: float,
    k_p: float,
    alpha: float,
    leak: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, f)`` of ``dy/dt = A y + f``, ``y = (x_0..x_{L-1}, u_int)`` [B, m], ``m = (L+1) n_L``.

    ``u = u_int + k_p (e_0 - C x)``; ``tau dx_0/dt = -x_0 + u``; ``tau dx_k/dt = x_{k-1} - x_k``;
    ``du_int/dt = e - alpha u`` (``reference`` leak) or ``e - alpha u_int`` (``paper``).

    Args:
        C: output projection ``D_L P_L`` [B, n_L, L n_L].
        e0: initial error ``r_L* - r_L^-`` [B, n_L].
        tau: ``tau_v / tau_u`` of every layer.
        k_p: proportional gain.
        alpha: leak.
        leak: ``reference`` or ``paper``.
    """
    B, nL, Kn = C.shape
    m = Kn + nL
    a = 1.0 / tau
    eye = torch.eye(nL, dtype=C.dtype, device=C.device)
    A = torch.zeros((B, m, m), dtype=C.dtype, device=C.device)
    A[:, :nL, :Kn] = -a * k_p * C
    for k in range(Kn // nL):
        blk = slice(k * nL, (k + 1) * nL)
        A[:, blk, blk] -= a * eye
        if k > 0:
            A[:, blk, (k - 1) * nL : k * nL] += a * eye
    A[:, :nL, Kn:] = a * eye
    g = 1.0 - alpha * k_p if leak == "reference" else 1.0
    A[:, Kn:, :Kn] = -g * C
    A[:, Kn:, Kn:] = -alpha * eye
    f = torch.zeros((B, m), dtype=C.dtype, device=C.device)
    f[:, :nL] = a * k_p * e0
    f[:, Kn:] = g * e0
    return A, f


def augmented(A: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``[[A, f], [0, 0]]`` [B, m+1, m+1]: ``w = (y, 1)`` obeys ``dw/dt = A_w w``.

    Args:
        A: system matrices [B, m, m].
        f: forcing [B, m].
    """
    B, m, _ = A.shape
    Aw = torch.zeros((B, m + 1, m + 1), dtype=A.dtype, device=A.device)
    Aw[:, :m, :m] = A
    Aw[:, :m, m] = f
    return Aw


@dataclass
class Moments:
    """Moments of ``w = (y, 1)`` over ``[0, T]`` from ``y(0) = 0``: ``final`` = ``y(T)`` [B, m],
    ``integral`` = ``int y dt`` [B, m], ``gram`` = ``int y y^T dt`` [B, m, m]; and the
    propagators they were doubled from: ``powers[j]`` [B, m+1, m+1] advances ``w`` by ``2^j``
    units of ``unit`` (continuous: ``h = T / 2^n``; the scheme: one step, ``unit = 1``), the
    horizon spanning ``points`` unit points (``2^n + 1``; the scheme: its time points)."""

    final: torch.Tensor
    integral: torch.Tensor
    gram: torch.Tensor
    powers: list[torch.Tensor]
    unit: float
    points: int


GAUSS_POINTS = 10
"""Gauss-Legendre nodes of the first interval's Gramian (exact for polynomials of degree 19;
the integrand varies on the scale ``1 / (2 |A_w|) >= h``, so the rule's error is ~1 / 20!)."""

TAYLOR_TERMS = 24
"""Terms of the Taylor series of ``exp(A_w s) w0`` on the first interval (``|A_w s|_1 <= theta
= 0.5``: the remainder is below ``0.5^24 / 24!``)."""


def moments(Aw: torch.Tensor, T: float, theta: float = 0.5) -> Moments:
    """:class:`Moments` of the augmented system ``A_w`` over ``[0, T]``.

    Over a short ``h = T / 2^n`` (``h |A_w|_1 <= theta``) the Gramian of the single trajectory
    ``w(s) = exp(A_w s) w0`` (``w0 = e_m``: y = 0, constant 1) is ``int_0^h w w^T ds``: ``w`` at
    Gauss-Legendre nodes from its Taylor series (Krylov vectors ``A_w^k w0``), the nodes'
    weighted outer products; ``E(h) = exp(A_w h)`` of size ``m + 1``. (Van Loan's block
    exponential ``exp([[-A_w, w0 w0^T], [0, A_w^T]] h)`` gives the same at twice the size,
    8x the FLOP.) ``G(2h) = G(h) + E(h) G(h) E(h)^T``, ``E(2h) = E(h)^2`` double it up to ``T``
    without ever forming ``exp(-A_w T)``.

    Args:
        Aw: augmented matrices [B, m+1, m+1] (:func:`augmented`).
        T: the horizon (units of tau_u).
        theta: bound on ``h |A_w|_1`` of the first interval.
    """
    B, m1, _ = Aw.shape
    norm = float(torch.linalg.matrix_norm(Aw, ord=1).max()) if B > 0 else 0.0
    n = max(0, math.ceil(math.log2(max(T * norm / theta, 1.0))))
    h = T / 2**n
    E = torch.linalg.matrix_exp(Aw * h)
    # Krylov vectors (A_w h)^k w0 / k! [B, m+1, TAYLOR_TERMS]
    kry = [torch.zeros((B, m1), dtype=Aw.dtype, device=Aw.device)]
    kry[0][:, -1] = 1.0
    Ah = Aw * h
    for k in range(1, TAYLOR_TERMS):
        kry.append((Ah @ kry[-1].unsqueeze(-1)).squeeze(-1) / k)
    K = torch.stack(kry, -1)
    xi, wt = _gauss_legendre(GAUSS_POINTS, Aw.dtype, Aw.device)
    s = (xi + 1.0) / 2.0  # nodes as fractions of h
    s_pow = (
        s.unsqueeze(0) ** torch.arange(TAYLOR_TERMS, dtype=Aw.dtype, device=Aw.device)[:, None]
    )  # [TAYLOR_TERMS, nodes]
    Wn = K @ s_pow  # w at the nodes [B, m+1, nodes]
    G = (Wn * (wt * (h / 2.0))) @ Wn.transpose(1, 2)
    powers = [E]
    for _ in range(n):
        G = G + E @ G @ E.transpose(1, 2)
        E = E @ E
        powers.append(E)
    m = m1 - 1
    return Moments(
        final=E[:, :m, m], integral=G[:, :m, m], gram=G[:, :m, :m], powers=powers, unit=h,
        points=2**n + 1,
    )  # fmt: skip


def _gauss_legendre(
    p: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights [p] of the ``p``-point Gauss-Legendre rule on ``[-1, 1]`` (Golub-Welsch:
    the eigenvalues of the Jacobi matrix, the weights from the eigenvectors' first entries)."""
    k = torch.arange(1, p, dtype=torch.float64)
    off = k / torch.sqrt(4.0 * k * k - 1.0)
    J = torch.diag(off, 1) + torch.diag(off, -1)
    xi, V = torch.linalg.eigh(J)
    return xi.to(dtype=dtype, device=device), (2.0 * V[0] ** 2).to(dtype=dtype, device=device)


def trajectory(Aw: torch.Tensor, times: list[float]) -> torch.Tensor:
    """``y(t)`` [len(times), B, m] at increasing ``times`` (from ``y(0) = 0``), by exact
    propagation ``w(t') = exp(A_w (t' - t)) w(t)`` (one matrix exponential per distinct gap).

    Args:
        Aw: augmented matrices [B, m+1, m+1].
        times: increasing times >= 0.
    """
    B, m1, _ = Aw.shape
    w = torch.zeros((B, m1), dtype=Aw.dtype, device=Aw.device)
    w[:, -1] = 1.0
    out = []
    t_prev = 0.0
    cache: dict[float, torch.Tensor] = {}
    for t in times:
        gap = round(t - t_prev, 12)
        if gap > 0:
            if gap not in cache:
                cache[gap] = torch.linalg.matrix_exp(Aw * gap)
            w = (cache[gap] @ w.unsqueeze(-1)).squeeze(-1)
        out.append(w[:, :-1])
        t_prev = t
    return torch.stack(out) if out else w.new_zeros((0, B, m1 - 1))


def reference_system(
    C: torch.Tensor,
    e0: torch.Tensor,
    *,
    beta: float,
    dt: float,
    k_p: float,
    alpha: float,
    leak: str,
    proactive: bool,
) -> torch.Tensor:
    """The reference Euler scheme (``inst_transmission``) of the linearised loop as
    ``w[t+1] = A_w w[t]``, ``w = (x_0..x_{L-1}, u_int, u, 1)`` [B, m+1], ``m = (L+2) n_L``::

        e = e_0 - C x[t];  u_int[t+1] = u_int[t] + dt (e - alpha u[t])   (paper: alpha u_int[t])
        u[t+1] = u_int[t+1] + k_p e;  u_ap = u[t+1] if proactive else u[t]
        x_0[t+1] = (1 - beta) x_0[t] + beta u_ap;  x_k[t+1] = (1 - beta) x_k[t] + beta x_{k-1}[t+1]

    Args:
        C: output projection [B, n_L, L n_L].
        e0: initial error [B, n_L].
        beta: ``dt / tau``.
        dt: the step.
        k_p: proportional gain.
        alpha: leak.
        leak: ``reference`` or ``paper``.
        proactive: ``proactive_controller``.
    """
    B, nL, Kn = C.shape
    m = Kn + 2 * nL
    ui, uu, one = slice(Kn, Kn + nL), slice(Kn + nL, m), m
    eye = torch.eye(nL, dtype=C.dtype, device=C.device)
    Aw = torch.zeros((B, m + 1, m + 1), dtype=C.dtype, device=C.device)
    # rows of e (as a map of w[t]): -C x + e0
    E = torch.zeros((B, nL, m + 1), dtype=C.dtype, device=C.device)
    E[:, :, :Kn] = -C
    E[:, :, one] = e0
    Aw[:, ui] = dt * E
    Aw[:, ui, ui] += eye
    Aw[:, ui, uu if leak == "reference" else ui] -= dt * alpha * eye
    Aw[:, uu] = Aw[:, ui] + k_p * E
    Aw[:, one, one] = 1.0
    prev = Aw[:, uu].clone() if proactive else None
    for k in range(Kn // nL):
        blk = slice(k * nL, (k + 1) * nL)
        if prev is None:  # u_ap = u[t]
            prev = torch.zeros_like(Aw[:, blk])
            prev[:, :, uu] = eye
        row = beta * prev
        row[:, :, blk] += (1.0 - beta) * eye
        Aw[:, blk] = row
        prev = row
    return Aw


def power_moments(Aw: torch.Tensor, n: int) -> Moments:
    """:class:`Moments` of ``w[t] = A_w^t w0`` (``w0 = e_m``: the state 0, constant 1) as sums
    over ``t = 0..n-1`` (``final`` = ``y[n-1]``), by binary doubling
    ``S_{p+q} = S_p + A_w^p S_q A_w^{pT}``.

    Args:
        Aw: augmented step matrices [B, m+1, m+1].
        n: number of time points (>= 1).
    """
    B, m1, _ = Aw.shape
    w0 = torch.zeros((B, m1, m1), dtype=Aw.dtype, device=Aw.device)
    w0[:, -1, -1] = 1.0
    eye = torch.eye(m1, dtype=Aw.dtype, device=Aw.device).expand(B, m1, m1)
    S_blk, E_blk = w0, Aw  # sums over a block of 2^j points, and A_w^(2^j)
    S, E = torch.zeros_like(w0), eye.clone()  # prefix of p points
    powers = [Aw]
    k = n - 1
    while k > 0:
        if k & 1:
            S = S + E @ S_blk @ E.transpose(1, 2)
            E = E_blk @ E
        k >>= 1
        if k:
            S_blk = S_blk + E_blk @ S_blk @ E_blk.transpose(1, 2)
            E_blk = E_blk @ E_blk
            powers.append(E_blk)
    last = E[:, :, -1]
    S = S + last.unsqueeze(-1) * last.unsqueeze(-2)
    m = m1 - 1
    return Moments(
        final=last[:, :m], integral=S[:, :m, m], gram=S[:, :m, :m], powers=powers, unit=1.0,
        points=n,
    )  # fmt: skip


CONTRACTION = 0.9
"""Largest propagator norm taken as a proof of stability by :func:`contracts` (below 1 with room
for the rounding of the products)."""


def contracts(A: torch.Tensor, *, discrete: bool, horizon: float, n: int) -> torch.Tensor:
    """Per matrix [B] (bool): the propagator over the horizon is a contraction in the 1- or
    the inf-norm (at most :data:`CONTRACTION`), which proves stability without eigenvalues:
    every eigenvalue ``mu`` of a matrix ``E`` has ``|mu| <= |E|``, so ``|exp(A T)| < 1`` gives
    ``max Re eig A < 0`` and ``|A^(2^J)| < 1`` the scheme's spectral radius ``< 1``. False
    says nothing (a stable loop can grow before it decays, or decay slowly).

    Args:
        A: system matrices (continuous) or step matrices (the scheme) [B, m, m].
        discrete: ``A`` is the scheme's step matrix: ``A^(2^J)`` by ``J`` squarings,
            ``2^J <= n - 1``; else ``exp(A T)``.
        horizon: ``T`` (continuous).
        n: time points of the scheme (``>= 2``).
    """
    if discrete:
        E = A
        for _ in range(max(0, (n - 1).bit_length() - 1)):
            E = E @ E
    else:
        E = torch.linalg.matrix_exp(A * horizon)
    norm = torch.minimum(
        torch.linalg.matrix_norm(E, ord=1), torch.linalg.matrix_norm(E, ord=float("inf"))
    )
    return norm <= CONTRACTION


def power_trajectory(Aw: torch.Tensor, steps: list[int]) -> torch.Tensor:
    """``y[t]`` [len(steps), B, m] at increasing step indices (from ``y[0] = 0``).

    Args:
        Aw: augmented step matrices [B, m+1, m+1].
        steps: increasing step indices >= 0.
    """
    B, m1, _ = Aw.shape
    w = torch.zeros((B, m1), dtype=Aw.dtype, device=Aw.device)
    w[:, -1] = 1.0
    out, prev = [], 0
    cache: dict[int, torch.Tensor] = {}
    for s in steps:
        gap = s - prev
        if gap > 0:
            if gap not in cache:
                cache[gap] = torch.linalg.matrix_power(Aw, gap)
            w = (cache[gap] @ w.unsqueeze(-1)).squeeze(-1)
        out.append(w[:, :-1])
        prev = s
    return torch.stack(out) if out else w.new_zeros((0, B, m1 - 1))
