"""The one closed loop (``neurodfc.core``) and the solver registry (``neurodfc.solvers``).

Oracles: the generic assembly (``ClosedLoop.euler_step``, plain operations) for the fused
reference path, step for step; ODE solvers of different families (ETDRK4, dopri5) for each
other; the first-order convergence of the reference scheme towards them; replayed noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from neurodfc.components.neurons import NeuronLayer, RateNeurons, default_layers
from neurodfc.core.noise import GaussianNoise, RecordingNoise, ReplayNoise
from neurodfc.solve import Solution, simulate
from neurodfc.solvers import SOLVERS, get_solver
from tests.helpers import PID, make_system, random_batch


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


FLAGS: list[dict[str, Any]] = [
    {},
    {"inst_transmission": False, "proactive_controller": False},
    {"inst_transmission": True, "proactive_controller": False},
    {"inst_system_dynamics": True},
]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("extra", [{}, {"apical": {"tau": 0.05}}, {"leak": "paper"}])
@pytest.mark.parametrize("rule", ["nonlinear_difference", "derivative_matrix"])
def test_fused_reference_path_equals_the_generic_assembly_step_for_step(
    flags: dict[str, Any], extra: dict[str, Any], rule: str
) -> None:
    """The fused in-place path (built-in neurons and PI controller) against the same assembly
    run through the generic ``ClosedLoop.euler_step``: every recorded step, float64, 1e-12."""
    sim = {"dt": 0.01, "steps": 120, "record_every": 1, **flags}
    system = make_system([5, 7, 6, 4], k_p=1.0, alpha=0.02, seed=3, sim=sim, **extra)
    x, y = random_batch(system, 6, seed=2)
    rt = system.target(x, y)
    kw: dict[str, Any] = {"record_v": True, "record_apical": True, "accumulate": rule}
    fused = simulate(system, x, rt, **kw)
    generic = simulate(system, x, rt, neurons=default_layers(system.network.act_names), **kw)
    _same(fused, generic, 1e-12)


def _same(a: Solution, b: Solution, tol: float) -> None:
    assert _rel(a.r_out, b.r_out) < tol and _rel(a.u, b.u) < tol
    for i in range(len(a.v)):
        assert _rel(a.v[i], b.v[i]) < tol
        assert _rel(a.apical[i], b.apical[i]) < tol or float(b.apical[i].norm()) == 0.0
    assert a.accumulator is not None and b.accumulator is not None
    for wa, wb in zip(
        a.accumulator.W + a.accumulator.b, b.accumulator.W + b.accumulator.b, strict=True
    ):
        assert _rel(wa, wb) < tol
    assert torch.equal(a.status, b.status)


@pytest.mark.parametrize("tau_a", [None, 0.05])
def test_noise_is_injectable_and_the_fused_noisy_path_equals_the_generic_one(
    tau_a: float | None,
) -> None:
    """Recorded noise replayed through the public ``noise_source`` reproduces the run, on the
    fused path and on the generic assembly (sleep-phase pairing included)."""
    system = make_system([4, 6, 5, 3], seed=4, sim={"dt": 0.002, "steps": 70, "record_every": 1})
    x, _ = random_batch(system, 7)
    rt = system.network(x).detach()
    kw: dict[str, Any] = {
        "alpha": 0.5, "k_p": 0.2, "tau_ratio": 0.01, "noise": (0.05, 0.02), "apical_tau": tau_a,
        "accumulate_feedback": True, "record_v": True, "record_apical": True,
        "accumulate": "voltage_difference",
    }  # fmt: skip
    rec = RecordingNoise(
        GaussianNoise((7, 14), x.dtype, x.device, torch.Generator().manual_seed(5), 69)
    )
    first = simulate(system, x, rt, noise_source=rec, **kw)
    xi = rec.recorded()
    assert xi.shape == (69, 7, 14)
    again = simulate(system, x, rt, noise_source=ReplayNoise(xi), **kw)
    assert torch.equal(first.u, again.u)
    seeded = simulate(system, x, rt, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(first.u, seeded.u)  # the default source draws the same normals
    layers = default_layers(["tanh", "tanh", "linear"])
    generic = simulate(system, x, rt, noise_source=ReplayNoise(xi), neurons=layers, **kw)
    _same(first, generic, 1e-12)
    fa, fb = first.feedback_accumulator, generic.feedback_accumulator
    assert fa is not None and fb is not None
    for qa, qb in zip(fa.W, fb.W, strict=True):
        assert _rel(qa, qb) < 1e-12


def test_recorded_apical_voltage_is_the_feedback_input() -> None:
    """Instantaneous apical compartment: ``v_i^fb = Q_i u`` at every recorded time, on every
    solver family."""
    system = make_system([4, 5, 3], k_p=1.0, alpha=0.05, seed=2, sim={"steps": 50})
    x, y = random_batch(system, 3)
    rt = system.target(x, y)
    for solver in ("euler_reference", "etdrk4", "rk4"):
        sim = system.cfg.simulation.model_copy(update={"solver": solver})
        sol = simulate(system, x, rt, sim=sim, record_apical=True)
        for i, q in enumerate(system.network.Q):
            want = sol.u @ q.detach().T
            if solver == "euler_reference":  # proactive: a[t] = Q u[t]
                assert _rel(sol.apical[i][1:], want[1:]) < 1e-13
            else:
                assert _rel(sol.apical[i], want) < 1e-13


def test_every_configured_solver_is_registered() -> None:
    from typing import get_args

    from neurodfc.config import SimulationConfig

    names = get_args(SimulationConfig.model_fields["solver"].annotation)
    assert set(names) <= set(SOLVERS)
    with pytest.raises(ValueError, match="unknown solver"):
        get_solver("nope")


# ------------------------------------------------------------------ user components
@dataclass(frozen=True)
class _Softplus:
    """A user-defined neuron layer: ``phi = softplus`` with its own time constant."""

    tau: float | None = 0.1

    def phi(self, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(v)

    def phi_prime(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v)

    def increment(self, a: torch.Tensor) -> Any:
        s = torch.sigmoid(a)

        def inc(z: torch.Tensor, out: torch.Tensor, work: torch.Tensor | None = None) -> Any:
            # softplus(a + z) - softplus(a) = log1p(sigmoid(a) expm1(z)): no cancellation
            return torch.log1p(s * torch.expm1(z), out=out)

        return inc


@dataclass(frozen=True)
class _PID(PID):
    """The helpers' PID plus what the exponential integrator can use: its stiff diagonal and
    its feedthrough ``du/de``."""

    def stiff_diagonal(self) -> tuple[float, ...]:
        return (-1.0 / self.tau_d, 0.0)

    def feedthrough(self) -> float:
        return self.k_p + self.k_d / self.tau_d


def _user_setup() -> tuple[Any, torch.Tensor, torch.Tensor, list[NeuronLayer], _PID]:
    system = make_system([5, 6, 4, 3], k_p=1.0, alpha=0.05, seed=7, fb_init="weight_product")
    neurons: list[NeuronLayer] = [_Softplus(0.1), _Softplus(0.15), RateNeurons("linear")]
    assert all(isinstance(n, NeuronLayer) for n in neurons)
    x, y = random_batch(system, 5, seed=3)
    from neurodfc.core.loop import ClosedLoop

    loop = ClosedLoop(system.network, x, y, _PID(1.0, 0.2, 0.05), 0.2, None, neurons)
    r_out = loop.r_ff[-1]
    rt = r_out + 0.05 * (y - r_out)  # a small step towards y from the softplus network's output
    return system, x, rt, neurons, _PID(k_p=1.0, k_d=0.2, alpha=0.05)


def _update(solver: str, dt: float = 0.01, **extra: Any) -> torch.Tensor:
    system, x, rt, neurons, pid = _user_setup()
    upd = {"solver": solver, "dt": dt, "t_max": 4.0, "steps": None, **extra}
    sim = system.cfg.simulation.model_copy(update=upd)
    sol = simulate(
        system, x, rt, sim=sim, controller=pid, neurons=neurons, record=False,
        accumulate="nonlinear_difference",
    )  # fmt: skip
    acc = sol.accumulator
    assert acc is not None
    return torch.cat([w.flatten() for w in acc.W + acc.b]) / acc.count


def test_user_components_run_on_every_solver_and_agree() -> None:
    """A PID controller and softplus layers with their own time constants (defined here, not
    in the package) through ``simulate``: ETDRK4 and dopri5 agree to 1e-6 on the DFC update;
    the reference scheme converges to it at first order in dt."""
    ode = _update("dopri5", rtol=1e-10, atol=1e-12)
    etd = _update("etdrk4", rtol=1e-8, atol=1e-14)
    assert _rel(etd, ode) < 1e-6
    errs = [_rel(_update("euler_reference", dt), ode) for dt in (0.004, 0.002, 0.001)]
    # the sum over points approximates the integral at first order: the error halves with dt
    for coarse, fine in zip(errs, errs[1:], strict=False):
        assert 1.7 < coarse / fine < 2.3, errs


def test_user_components_reach_the_steady_state_of_the_builtin_loop_at_k_d_zero() -> None:
    """The user softplus layer with ``tau = None`` and a PID with ``k_d = 0`` is the built-in
    loop of a network whose activation is softplus... checked against the torchdiffeq run of
    the same assembly with the PI controller: same final control."""
    system, x, rt, neurons, _ = _user_setup()
    sim = system.cfg.simulation.model_copy(
        update={"solver": "etdrk4", "t_max": 30.0, "steps": None, "rtol": 1e-9}
    )
    pid0 = simulate(system, x, rt, sim=sim, controller=_PID(1.0, 0.0, 0.05), neurons=neurons)
    pi = simulate(system, x, rt, sim=sim, neurons=neurons)
    assert _rel(pid0.u_final, pi.u_final) < 1e-6


# ------------------------------------------------------------------ divergence as a status
def test_etdrk4_reports_an_overflowing_gain_per_sample() -> None:
    system = make_system([4, 5, 3], k_p=1e300, alpha=0.05, seed=2, sim={"solver": "etdrk4"})
    x, y = random_batch(system, 3)
    sol = simulate(system, x, system.target(x, y), record=False)
    assert set(sol.status_names()) <= {"nonfinite", "diverged", "max_steps"}
    assert "converged" not in sol.status_names()


def test_dopri5_reports_a_nan_sample_instead_of_raising_for_the_batch() -> None:
    system = make_system(
        [4, 5, 3], k_p=1.0, alpha=0.05, seed=2, sim={"solver": "dopri5", "steps": 200}
    )
    x, y = random_batch(system, 3)
    rt = system.target(x, y)
    rt[1, 0] = math.nan
    sol = simulate(system, x, rt)
    names = sol.status_names()
    assert names[1] == "nonfinite"
    alone = simulate(system, x[[0, 2]], rt[[0, 2]])
    assert [names[0], names[2]] == alone.status_names()
    torch.testing.assert_close(sol.u_final[[0, 2]], alone.u_final, rtol=1e-6, atol=1e-12)


def test_dopri5_stops_at_its_step_limit_with_a_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import neurodfc.solvers.odeint as od

    monkeypatch.setattr(od, "MAX_STEPS", 300)
    system = make_system(
        [4, 5, 3], k_p=1e6, alpha=0.05, seed=2, sim={"solver": "dopri5", "steps": 200}
    )
    x, y = random_batch(system, 3)
    sol = simulate(system, x, system.target(x, y))
    assert "converged" not in sol.status_names()
    assert sol.nfe < 300 * 7


# ------------------------------------------------------------------ Strong-DFC components
@pytest.mark.parametrize("tau_noise", [None, 0.07])
@pytest.mark.parametrize("tau_a", [None, 0.05])
def test_strong_components_fused_equal_the_generic_step(
    tau_noise: float | None, tau_a: float | None
) -> None:
    """Strong-DFC's components (softmax error, white or Ornstein-Uhlenbeck noise, high-pass
    filtered control in the feedback sums) on the fused path equal the generic
    ``ClosedLoop.euler_step`` with the same normals, every step, float64, 1e-12."""
    from neurodfc.components.controller import PIController
    from neurodfc.core.filters import LowPass
    from neurodfc.core.loop import ClosedLoop, EulerScheme
    from neurodfc.core.noise import ApicalNoise
    from neurodfc.core.teaching import teaching_signal
    from neurodfc.fastpath import euler_reference_fast

    system = make_system([4, 6, 5, 3], seed=4)
    net = system.network
    x, y = random_batch(system, 5)
    rt = torch.softmax(3.0 * y, dim=-1)
    T, dt, B, N = 60, 0.01, 5, 14
    xi = torch.randn((T - 1, B, N), generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    fused = euler_reference_fast(
        net, x, rt, dt=dt, n_steps=T, alpha=0.05, k_p=1.0, tau_ratio=0.2, leak="reference",
        inst_transmission=True, proactive_controller=True, inst_system_dynamics=False,
        record_steps=list(range(T)), record_v=True, accumulate="nonlinear_difference",
        noise=(0.05, 0.02), apical_tau=tau_a, accumulate_feedback=True,
        noise_source=ReplayNoise(xi), error="softmax", tau_noise=tau_noise,
        feedback_filter=LowPass(dt, 0.5),
    )  # fmt: skip
    loop = ClosedLoop(net, x, rt, PIController(1.0, 0.05), 0.2, tau_a, error="softmax")
    noise, lp = ApicalNoise(0.05, 0.02, tau_noise), LowPass(dt, 0.5)
    st = loop.euler_state()
    acc_Q = torch.zeros((N, 3), dtype=x.dtype)
    acc_W = [torch.zeros_like(w) for w in loop.W]
    for t in range(T - 1):
        new = loop.euler_step(st, EulerScheme(dt), noise, xi[t])
        acc_Q += torch.cat(st.a, dim=1).T @ (new.u - lp.step(new.u))
        prev = [x, *new.r[:-1]]
        for i, lay in enumerate(loop.layers):
            d = teaching_signal(lay, new.vb[i], new.v[i] - new.vb[i], "nonlinear_difference")
            acc_W[i] += d.T @ prev[i]
        st = new
        assert _rel(fused.r_rec[t + 1], new.r[-1]) < 1e-12
        assert _rel(fused.e_rec[t + 1], loop.output_error(new.r[-1])) < 1e-12
        for i in range(3):
            assert _rel(fused.v_rec[i][t + 1], new.v[i]) < 1e-12
    assert _rel(torch.cat(fused.acc_Q), acc_Q) < 1e-12
    for i in range(3):
        assert _rel(fused.acc_W[i], acc_W[i]) < 1e-12


def test_strong_components_through_simulate_fused_equal_generic() -> None:
    """``simulate(error="softmax", noise_tau=...)``: Strong-DFC's components on the reference
    scheme, fused path against the generic assembly (same recorded noise), 1e-12."""
    system = make_system([4, 6, 5, 3], seed=4, sim={"dt": 0.005, "steps": 80, "record_every": 1})
    x, y = random_batch(system, 6)
    rt = torch.softmax(3.0 * y, dim=-1)
    kw: dict[str, Any] = {
        "error": "softmax", "noise_tau": 0.07, "noise": (0.05, 0.02), "k_p": 1.0,
        "record_v": True, "record_apical": True, "accumulate": "voltage_difference",
    }  # fmt: skip
    gen = torch.Generator().manual_seed(3)
    rec = RecordingNoise(GaussianNoise((6, 14), x.dtype, x.device, gen, 79))
    fused = simulate(system, x, rt, noise_source=rec, **kw)
    layers = default_layers(["tanh", "tanh", "linear"])
    generic = simulate(
        system, x, rt, noise_source=ReplayNoise(rec.recorded()), neurons=layers, **kw
    )
    _same(fused, generic, 1e-12)
    torch.testing.assert_close(fused.e, rt - torch.softmax(fused.r_out, -1), rtol=0, atol=1e-15)
