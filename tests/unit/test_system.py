"""The closed-loop system against independent oracles (autograd, finer solvers)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian as autograd_jacobian

from neurodfc.components.target import loss_gradient, loss_value, output_target
from neurodfc.solve import Status, simulate
from neurodfc.system import (
    VectorField,
    closed_loop_matrices,
    jacobian,
    lemma1,
)
from tests.helpers import make_system, random_batch


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "linear"])
def test_batched_jacobian_equals_autograd_per_sample(act: str) -> None:
    system = make_system([4, 5, 3, 2], act=act, seed=3)
    net = system.network
    x, _ = random_batch(system, 6)
    v, _ = net.feedforward(x)
    J = jacobian(net, v)
    for b in range(x.shape[0]):
        xb = x[b : b + 1]

        def out(dv_flat: torch.Tensor, xb: torch.Tensor = xb) -> torch.Tensor:
            dv = net.split_units(dv_flat.unsqueeze(0))
            return net.feedforward(xb, dv)[1][-1][0]

        zero = torch.zeros(sum(net.sizes[1:]), dtype=torch.float64)
        ref = autograd_jacobian(out, zero)
        torch.testing.assert_close(J[b], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_output_target_is_gradient_step_on_the_loss(loss: str, reduction: str) -> None:
    g = torch.Generator().manual_seed(0)
    r = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = (
        torch.randint(0, 4, (5,), generator=g)
        if loss == "cross_entropy"
        else torch.randn(5, 4, generator=g, dtype=torch.float64)
    )
    (grad,) = torch.autograd.grad(loss_value(r, y, loss, reduction), r)
    torch.testing.assert_close(loss_gradient(r.detach(), y, loss, reduction), grad)
    target = output_target(r.detach(), y, loss, 0.3, reduction)
    torch.testing.assert_close(target, r.detach() - 0.3 * grad)


def _reference_relative_error(solver_kw: dict[str, object], dt: float) -> float:
    system = make_system([5, 6, 4, 3], k_p=1.0, alpha=0.01, tau_ratio=0.2, seed=1)
    x, y = random_batch(system, 4)
    rt = system.target(x, y)
    base = system.cfg.simulation
    fine = simulate(
        system,
        x,
        rt,
        sim=base.model_copy(
            update={
                "solver": "dopri5",
                "dt": 0.01,
                "t_max": 3.0,
                "rtol": 1e-10,
                "atol": 1e-12,
                "record_every": 1,
            }
        ),
    )
    coarse = simulate(
        system,
        x,
        rt,
        sim=base.model_copy(update={**solver_kw, "dt": dt, "t_max": 3.0, "steps": None}),
    )
    return float((coarse.u_final - fine.u_final).norm() / fine.u_final.norm())


@pytest.mark.parametrize(
    "flags",
    [
        {"inst_transmission": True, "proactive_controller": True},
        {"inst_transmission": False, "proactive_controller": False},
        {"inst_transmission": True, "proactive_controller": False},
    ],
)
def test_reference_euler_converges_to_the_ode_solution_at_first_order(
    flags: dict[str, bool],
) -> None:
    kw = {"solver": "euler_reference", **flags}
    e1 = _reference_relative_error(kw, 0.004)
    e2 = _reference_relative_error(kw, 0.002)
    e3 = _reference_relative_error(kw, 0.001)
    # first-order scheme: halving dt roughly halves the error
    assert 1.6 < e1 / e2 < 2.4 and 1.6 < e2 / e3 < 2.4, (e1, e2, e3)
    assert e3 < 5e-3


@pytest.mark.parametrize("solver", ["rk4", "euler", "midpoint", "bosh3"])
def test_torchdiffeq_solvers_agree_with_dopri5(solver: str) -> None:
    err = _reference_relative_error({"solver": solver}, 0.0025)
    tol = {"euler": 2e-2, "midpoint": 1e-4, "rk4": 1e-7, "bosh3": 1e-4}[solver]
    assert err < tol, err


@pytest.mark.parametrize("leak", ["reference", "paper"])
@pytest.mark.parametrize("k_p", [0.0, 1.5])
def test_A_PI_is_the_vector_field_jacobian_at_equilibrium(leak: str, k_p: float) -> None:
    """eig(A_PI) at the steady state equals eig(df/dstate) of the ODE (a similarity transform
    of the same linearisation: (v, u_int) -> (dv, u))."""
    system = make_system([3, 4, 3, 2], k_p=k_p, alpha=0.05, tau_ratio=0.3, leak=leak, seed=2)
    x, y = random_batch(system, 1, seed=4)
    rt = system.target(x, y)
    sim = system.cfg.simulation.model_copy(
        update={"solver": "dopri5", "t_max": 400.0, "steps": None, "rtol": 1e-11, "atol": 1e-13}
    )
    sol = simulate(system, x, rt, sim=sim, record=False)
    assert sol.status[0] == Status.CONVERGED
    f = VectorField(system, x, rt)
    sizes = system.network.sizes[1:]
    state = torch.cat([*sol.v_final, sol.u_int_final], dim=1)[0]

    def field(z: torch.Tensor) -> torch.Tensor:
        parts = torch.split(z.unsqueeze(0), [*sizes, system.network.n_out], dim=1)
        return torch.cat(f(torch.tensor(0.0), tuple(parts)), dim=1)[0]

    assert field(state).abs().max() < 1e-8  # at equilibrium
    jac = autograd_jacobian(field, state)
    A = closed_loop_matrices(system, sol.v_final)["A_PI"][0]
    ev_ref = torch.sort(torch.linalg.eigvals(jac).real).values
    ev = torch.sort(torch.linalg.eigvals(A).real).values
    torch.testing.assert_close(ev, ev_ref, rtol=1e-6, atol=1e-7)


def test_A_I_inst_is_minus_JQ_plus_alpha() -> None:
    system = make_system([3, 4, 2], alpha=0.02)
    x, _ = random_batch(system, 3)
    v, _ = system.network.feedforward(x)
    A = closed_loop_matrices(system, v)
    J = jacobian(system.network, v)
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(A["A_I_inst"], -(J @ system.network.full_Q() + 0.02 * eye))
    # A_PI with k_p = 0 reduces to A_I
    torch.testing.assert_close(closed_loop_matrices(system, v, k_p=0.0)["A_PI"], A["A_I"])


def test_float32_matches_float64() -> None:
    s64 = make_system([5, 6, 3], k_p=1.0, seed=7)
    s32 = make_system([5, 6, 3], k_p=1.0, seed=7, dtype="float32")
    x, y = random_batch(s64, 4)
    u64 = simulate(s64, x, s64.target(x, y)).u_final
    u32 = simulate(s32, x.float(), s32.target(x.float(), y.float())).u_final
    assert u32.dtype == torch.float32
    torch.testing.assert_close(u32.double(), u64, rtol=1e-4, atol=1e-6)


def test_no_autograd_graph_is_built() -> None:
    system = make_system([4, 5, 2])
    x, y = random_batch(system, 3)
    sol = simulate(system, x, system.target(x, y), record_v=True)
    assert not sol.u.requires_grad and not sol.v_final[0].requires_grad


def test_recording_interval_and_status() -> None:
    system = make_system([4, 5, 2], sim={"steps": 101, "record_every": 25})
    x, y = random_batch(system, 3)
    sol = simulate(system, x, system.target(x, y), record_v=True)
    assert sol.t.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert sol.r_out.shape == (5, 3, 2) and sol.v[0].shape == (5, 3, 5)
    assert sol.steps_run == 100


def test_diverging_sample_gets_a_status_not_an_exception() -> None:
    # a feedback with the wrong sign makes J Q negative definite: the loop is unstable
    system = make_system([3, 4, 2], act="linear", alpha=0.0, sim={"steps": 3000, "dt": 0.01})
    with torch.no_grad():
        for q in system.network.Q:
            q.mul_(-1.0)
    x, y = random_batch(system, 4, scale=3.0)
    sol = simulate(system, x, system.target(x, y))
    assert set(sol.status.tolist()) <= {int(Status.DIVERGED), int(Status.NONFINITE)}


def test_lemma1_dv_is_Q_u() -> None:
    system = make_system([4, 5, 3], alpha=0.01)
    x, y = random_batch(system, 3)
    ss = lemma1(system, x, system.target(x, y))
    Q = system.network.full_Q()
    torch.testing.assert_close(torch.cat(ss.dv, dim=1), ss.u @ Q.T)
    # and the voltages are computed layer by layer from the perturbed rates
    v1 = ss.v_ff[0] + ss.dv[0]
    torch.testing.assert_close(ss.v[0], v1)
    w2, b2 = system.network.W[1].detach(), system.network.b[1].detach()
    torch.testing.assert_close(ss.v[1], torch.tanh(v1) @ w2.T + b2 + ss.dv[1])
