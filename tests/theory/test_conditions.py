"""Condition 2 and the steady-state update direction (paper section 3-4).

P3: under Condition 2 (Q = J^T M) the steady-state feedback map ``Q (J Q + alpha I)^-1`` tends
to the pseudo-inverse ``J^+`` with an O(alpha) error and equals it at alpha = 0.
P5: Proposition 4: with eta_i = eta / |r_{i-1}|^2 the steady-state update at alpha = 0 has inner
product (eta / lam) |delta|^2 with the negative loss gradient.
P9: the Condition-2 measure lies in [0, 1]; 1 when col(Q) lies in row(J), 0 when orthogonal.

Oracles: ``torch.linalg.pinv``, the explicit projector ``J^T (J J^T)^-1 J`` and autograd.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from neurodfc.system import condition2, feedback_map, jacobian, lemma1
from tests.helpers import make_system, random_batch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _sigma_min(A: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(A).min())


# ------------------------------------------------------------------------------------- P3
def _check_feedback_map_tends_to_pinv(J: torch.Tensor, M: torch.Tensor) -> None:
    """``J`` [1, n_L, N], ``Q = J^T M``: exact at alpha = 0 and first order in alpha."""
    Q = J[0].T @ M
    A = J[0] @ Q  # = J J^T M, invertible when J has full row rank and M is invertible
    s_min = _sigma_min(A)
    assume(s_min > 1e-2 and float(torch.linalg.cond(A)) < 1e4)
    pinv = torch.linalg.pinv(J)
    scale = float(torch.linalg.matrix_norm(pinv[0]))
    exact = feedback_map(J, Q, 0.0)
    assert float(torch.linalg.matrix_norm((exact - pinv)[0])) < 1e-10 * max(scale, 1.0)

    # (A + a I)^-1 = A^-1 - a A^-2 + O(a^2): with a = 1e-2 sigma_min(A) the second-order term is
    # ~1 % of the first, so err(a) / err(a / 2) = 2 (1 + O(1e-2)).
    a = 1e-2 * s_min
    err = [
        float(torch.linalg.matrix_norm((feedback_map(J, Q, alpha) - pinv)[0]))
        for alpha in (a, a / 2)
    ]
    assert 1.9 < err[0] / err[1] < 2.1, err
    # and it is bounded: Q (A + a I)^-1 - Q A^-1 = -a Q A^-1 (A + a I)^-1, whose Frobenius norm
    # is at most a |Q|_F / (s_min (s_min - a))
    assert err[0] <= a * float(torch.linalg.matrix_norm(Q)) / (s_min * (s_min - a)) * (1 + 1e-9)


@settings(max_examples=50)
@given(
    n_out=st.integers(1, 4),
    extra=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_p3_feedback_map_tends_to_pinv_random_jacobian(n_out: int, extra: int, seed: int) -> None:
    g = _gen(seed)
    N = n_out + extra  # n_L < N: J is wide
    J = _randn(g, 1, n_out, N)
    M = torch.eye(n_out, dtype=torch.float64) + 0.3 * _randn(g, n_out, n_out)
    _check_feedback_map_tends_to_pinv(J, M)


@settings(max_examples=20)
@given(
    sizes=st.lists(st.integers(2, 6), min_size=3, max_size=4),
    seed=st.integers(0, 10_000),
    act=st.sampled_from(["tanh", "linear", "sigmoid"]),
)
def test_p3_feedback_map_tends_to_pinv_network_jacobian(
    sizes: list[int], seed: int, act: str
) -> None:
    system = make_system(sizes, act=act, seed=seed)
    x, _ = random_batch(system, 1, seed=seed + 1)
    with torch.no_grad():
        v, _ = system.network.feedforward(x)
        J = jacobian(system.network, v)
    g = _gen(seed)
    n_out = sizes[-1]
    M = torch.eye(n_out, dtype=torch.float64) + 0.3 * _randn(g, n_out, n_out)
    _check_feedback_map_tends_to_pinv(J, M)


def test_p3_feedback_map_is_batched() -> None:
    """Each sample of a batch gets its own ``Q (J_b Q + alpha I)^-1`` (explicit inverse)."""
    g = _gen(5)
    J = _randn(g, 4, 3, 7)
    Q = _randn(g, 7, 3)
    out = feedback_map(J, Q, 0.1)
    eye = torch.eye(3, dtype=torch.float64)
    for b in range(4):
        ref = Q @ torch.linalg.inv(J[b] @ Q + 0.1 * eye)
        torch.testing.assert_close(out[b], ref, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------- P5
@settings(max_examples=40)
@given(
    sizes=st.lists(st.integers(2, 6), min_size=3, max_size=4),
    seed=st.integers(0, 10_000),
    act=st.sampled_from(["tanh", "linear"]),
    fb_init=st.sampled_from(["xavier_normal", "weight_product"]),
    lam=st.floats(0.01, 1.0),
    eta=st.floats(0.01, 10.0),
)
def test_p5_proposition4_update_alignment_with_gradient(
    sizes: list[int], seed: int, act: str, fb_init: str, lam: float, eta: float
) -> None:
    """sum_i <dW_i, -dL/dW_i> = (eta / lam) |delta|^2 at alpha = 0, dW_i = eta_i dv_i r_{i-1}^T.

    Only J dv = delta is used (dv = Q (J Q)^-1 delta), so it holds for any Q with J Q
    invertible and for nonlinear networks too (everything is evaluated at the feedforward
    state, the identity is a linearised one)."""
    system = make_system(sizes, act=act, fb_init=fb_init, lam=lam, reduction="sum", seed=seed)
    net = system.network
    x, y = random_batch(system, 1, seed=seed + 1)
    r_target = system.target(x, y)
    with torch.no_grad():
        v, _ = net.feedforward(x)
        JQ = jacobian(net, v)[0] @ net.full_Q()
    assume(float(torch.linalg.cond(JQ)) < 1e4)
    ss = lemma1(system, x, r_target, alpha=0.0)
    delta = r_target - ss.r_ff[-1]
    assume(float(torch.linalg.vector_norm(delta)) > 1e-6)

    # autograd gradient of the (sum) MSE loss at the feedforward state
    net.zero_grad()
    loss = torch.nn.functional.mse_loss(net(x), y, reduction="sum")
    grads = torch.autograd.grad(loss, list(net.W))

    r_prev = [x, *ss.r_ff[:-1]]
    inner = 0.0
    for i, (dv, rp, g) in enumerate(zip(ss.dv, r_prev, grads, strict=True)):
        eta_i = eta / float(torch.linalg.vector_norm(rp)) ** 2
        dW = eta_i * dv[0].unsqueeze(1) * rp[0].unsqueeze(0)  # eta_i dv_i r_{i-1}^T
        assert dW.shape == net.W[i].shape
        inner += float((dW * -g).sum())
    expected = eta / lam * float(torch.linalg.vector_norm(delta)) ** 2
    assert inner == pytest.approx(expected, rel=1e-8)


# ------------------------------------------------------------------------------------- P9
def _projector_measure(J: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``|P Q|_F / |Q|_F`` with the explicit ``P = J^T (J J^T)^-1 J`` (per sample)."""
    P = J.transpose(-1, -2) @ torch.linalg.solve(J @ J.transpose(-1, -2), J)
    return torch.linalg.matrix_norm(P @ Q) / torch.linalg.matrix_norm(Q)


dims_st = st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 4))


@settings(max_examples=40)
@given(dims=dims_st, seed=st.integers(0, 2**31 - 1), q_scale=st.floats(1e-3, 1e3))
def test_p9_condition2_measure_in_unit_interval(
    dims: tuple[int, int, int], seed: int, q_scale: float
) -> None:
    n_out, extra, batch = dims
    g = _gen(seed)
    J = _randn(g, batch, n_out, n_out + extra)
    Q = q_scale * _randn(g, n_out + extra, n_out)
    assume(min(_sigma_min(j) for j in J) > 1e-3)
    c2 = condition2(J, Q)
    assert c2.shape == (batch,)
    assert bool(((c2 >= 0) & (c2 <= 1 + 1e-12)).all()), c2
    torch.testing.assert_close(c2, _projector_measure(J, Q), rtol=1e-8, atol=1e-10)


@settings(max_examples=40)
@given(dims=dims_st, seed=st.integers(0, 2**31 - 1))
def test_p9_condition2_is_one_in_row_space_and_zero_orthogonal(
    dims: tuple[int, int, int], seed: int
) -> None:
    """A batch of Jacobians sharing one row space, ``J_b = C_b J_0`` (C_b invertible)."""
    n_out, extra, batch = dims
    N = n_out + extra
    g = _gen(seed)
    J0 = _randn(g, n_out, N)
    C = torch.eye(n_out, dtype=torch.float64) + 0.3 * _randn(g, batch, n_out, n_out)
    assume(_sigma_min(J0) > 1e-2 and min(_sigma_min(c) for c in C) > 1e-2)
    J = C @ J0
    M = _randn(g, n_out, n_out)
    inside = J0.T @ M  # col(Q) in row(J)
    torch.testing.assert_close(
        condition2(J, inside), torch.ones(batch, dtype=torch.float64), rtol=0, atol=1e-10
    )
    Z = _randn(g, N, n_out)
    P = torch.linalg.pinv(J0) @ J0
    orth = (torch.eye(N, dtype=torch.float64) - P) @ Z  # col(Q) orthogonal to row(J)
    assert float(condition2(J, orth).max()) < 1e-10
    # a mixture lies strictly between, at the known value |P Q| / |Q|
    mixed = inside / torch.linalg.matrix_norm(inside) + orth / torch.linalg.matrix_norm(orth)
    torch.testing.assert_close(
        condition2(J, mixed), torch.full((batch,), 2**-0.5, dtype=torch.float64), rtol=1e-9, atol=0
    )
