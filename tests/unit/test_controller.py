"""The controller extension point of the continuous-time closed loop
(:class:`neurodfc.components.controller.Controller` in :class:`neurodfc.system.VectorField`)."""

from __future__ import annotations

import pytest
import torch
from torchdiffeq import odeint

from neurodfc.components.controller import Controller, PIController
from neurodfc.solve import simulate
from neurodfc.system import VectorField
from tests.helpers import PID as _PID
from tests.helpers import make_system, random_batch


def _solve(f: VectorField, t_max: float, n: int = 41) -> tuple[torch.Tensor, ...]:
    times = torch.linspace(0.0, t_max, n, dtype=torch.float64)
    with torch.no_grad():
        return odeint(f, f.initial_state(), times, method="dopri5", rtol=1e-10, atol=1e-12)


def test_pi_and_pid_satisfy_the_protocol() -> None:
    assert isinstance(PIController(k_p=1.0, alpha=0.1), Controller)
    assert isinstance(_PID(k_p=1.0, k_d=0.1, alpha=0.1), Controller)


@pytest.mark.parametrize("leak", ["reference", "paper"])
def test_explicit_pi_controller_equals_the_default(leak: str) -> None:
    system = make_system([4, 5, 3], k_p=1.5, alpha=0.05, leak=leak, seed=3)
    x, y = random_batch(system, 3)
    rt = system.target(x, y)
    default = VectorField(system, x, rt)
    explicit = VectorField(system, x, rt, PIController.from_config(system.cfg.controller))
    state = tuple(s + 0.1 for s in default.initial_state())
    t = torch.tensor(0.0)
    for a, b in zip(default(t, state), explicit(t, state), strict=True):
        assert torch.equal(a, b)
    e, u = default.control(state[1], state[-1])
    e2, u2 = default.control_of(state)
    assert torch.equal(e, e2) and torch.equal(u, u2)


def test_assigning_ctrl_changes_the_default_controller() -> None:
    """solve._odeint overrides the gains by assigning ``f.ctrl``."""
    system = make_system([4, 5, 3], k_p=1.5, alpha=0.05, seed=3)
    x, y = random_batch(system, 2)
    f = VectorField(system, x, system.target(x, y))
    f.ctrl = f.ctrl.model_copy(update={"k_p": 0.0})
    state = tuple(s + 0.1 for s in f.initial_state())
    e, u = f.control_of(state)
    assert torch.equal(u, state[-1])


def test_a_controller_with_extra_state_runs_and_settles_on_the_pi_fixed_point() -> None:
    """A PID (extra filter state) with k_d = 0 reproduces the PI trajectory; with k_d > 0 it
    reaches the same fixed point (the derivative term vanishes at rest), which for a converged
    run equals the reference simulation's."""
    system = make_system([4, 5, 3], k_p=1.0, alpha=0.05, tau_ratio=0.2, seed=5)
    x, y = random_batch(system, 4, seed=2)
    rt = system.target(x, y)
    pi = VectorField(system, x, rt)
    traj_pi = _solve(pi, 60.0)
    pid0 = VectorField(system, x, rt, _PID(k_p=1.0, k_d=0.0, alpha=0.05))
    traj0 = _solve(pid0, 60.0)
    assert len(traj0) == len(traj_pi) + 1  # the filter state sits before u_int
    torch.testing.assert_close(traj0[-1], traj_pi[-1], rtol=1e-7, atol=1e-9)
    pid = VectorField(system, x, rt, _PID(k_p=1.0, k_d=0.3, alpha=0.05))
    traj = _solve(pid, 60.0)
    _, u_pid = pid.control_of(tuple(s[-1] for s in traj))
    _, u_pi = pi.control_of(tuple(s[-1] for s in traj_pi))
    torch.testing.assert_close(u_pid, u_pi, rtol=1e-6, atol=1e-8)
    sim = system.cfg.simulation.model_copy(
        update={"solver": "dopri5", "t_max": 60.0, "steps": None, "rtol": 1e-10, "atol": 1e-12}
    )
    ref = simulate(system, x, rt, sim=sim, record=False)
    torch.testing.assert_close(u_pi, ref.u_final, rtol=1e-6, atol=1e-8)


def test_simulate_accepts_a_custom_controller() -> None:
    """``simulate(controller=...)``: the explicit PI controller reproduces the default run; a
    PID with k_d = 0 (one more state entry) reproduces it too, and with k_d > 0 it ends on the
    same fixed point, on every solver (the reference scheme and ETDRK4 run the generic
    assembly)."""
    system = make_system([4, 5, 3], k_p=1.0, alpha=0.05, tau_ratio=0.2, seed=5)
    x, y = random_batch(system, 4, seed=2)
    rt = system.target(x, y)
    sim = system.cfg.simulation.model_copy(
        update={"solver": "dopri5", "t_max": 60.0, "steps": None, "rtol": 1e-10, "atol": 1e-12}
    )
    ref = simulate(system, x, rt, sim=sim)
    pi = simulate(
        system, x, rt, sim=sim, controller=PIController.from_config(system.cfg.controller)
    )
    torch.testing.assert_close(pi.u, ref.u, rtol=1e-12, atol=1e-14)
    pid0 = simulate(system, x, rt, sim=sim, controller=_PID(k_p=1.0, k_d=0.0, alpha=0.05))
    torch.testing.assert_close(pid0.u, ref.u, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(pid0.r_out, ref.r_out, rtol=1e-7, atol=1e-9)
    pid = simulate(system, x, rt, sim=sim, controller=_PID(k_p=1.0, k_d=0.3, alpha=0.05))
    torch.testing.assert_close(pid.u_final, ref.u_final, rtol=1e-6, atol=1e-8)
    assert pid.status_names() == ref.status_names()
    for solver in ("euler_reference", "etdrk4"):
        other = sim.model_copy(update={"solver": solver, "dt": 0.01, "rtol": 1e-8, "atol": 1e-12})
        run = simulate(system, x, rt, sim=other, controller=_PID(k_p=1.0, k_d=0.3, alpha=0.05))
        # the fixed point of the reference scheme is the ODE's (e = alpha u, v = v^b + Q u)
        torch.testing.assert_close(run.u_final, ref.u_final, rtol=1e-6, atol=1e-8)
        assert run.status_names() == ref.status_names()
