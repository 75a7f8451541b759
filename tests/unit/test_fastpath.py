"""The fast reference-Euler path against a plain step-by-step oracle (the pre-fast-path loop,
kept here verbatim in spirit: one op at a time, torch.tanh, per-step products)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from neurodfc.fastpath import NOISE_BLOCK, euler_reference_fast, fast_tanh
from neurodfc.methods import feedback_gradients, get_method
from neurodfc.methods.feedback_learning import sleep_simulation_config
from neurodfc.solve import simulate
from neurodfc.system import DFCSystem
from tests.helpers import make_system, random_batch


@dataclass
class Plain:
    v: list[torch.Tensor]
    r: list[torch.Tensor]
    u: torch.Tensor
    u_int: torch.Tensor
    acc_W: list[torch.Tensor]
    acc_b: list[torch.Tensor]
    acc_Q: list[torch.Tensor]
    r_rec: list[torch.Tensor]


def plain_noise(generator: torch.Generator, T: int, shape: tuple[int, int]) -> torch.Tensor:
    """The documented noise convention: float32 normals in blocks of NOISE_BLOCK steps (the
    last block only as long as needed)."""
    blocks, left = [], T - 1
    while left > 0:
        size = min(NOISE_BLOCK, left)
        blocks.append(torch.randn((size, *shape), generator=generator).double())
        left -= size
    return torch.cat(blocks)


@torch.no_grad()
def plain_euler(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    *,
    dt: float,
    T: int,
    alpha: float,
    k_p: float,
    tcr: float,
    leak: str = "reference",
    inst_tx: bool = True,
    proactive: bool = True,
    inst_sys: bool = False,
    tau_a: float | None = None,
    rule: str | None = None,
    noise: tuple[float, float] = (0.0, 0.0),
    xi: torch.Tensor | None = None,
    acc_fb: bool = False,
) -> Plain:
    """The reference code's loop, one operation at a time (the oracle)."""
    net = system.network
    L = net.depth
    sizes = net.sizes[1:]
    tau_a = tau_a if tau_a is not None else dt
    inst_tx = inst_tx or inst_sys
    W = [w.detach() for w in net.W]
    Q = [q.detach() for q in net.Q]
    bias = [b.detach() for b in net.b] if net.has_bias else [None] * L
    v_ff, r_ff = net.feedforward(x)
    v = [t.clone() for t in v_ff]
    r = [t.clone() for t in r_ff]
    vb = [t.clone() for t in v_ff]
    va = [torch.zeros_like(t) for t in v_ff]
    u = torch.zeros_like(r_target)
    u_int = torch.zeros_like(r_target)
    acc_W = [torch.zeros_like(w) for w in W]
    acc_b = [torch.zeros(w.shape[0], dtype=x.dtype) for w in W]
    acc_Q = [torch.zeros_like(q) for q in Q]
    r_rec = [r[-1].clone()]
    acts = net.act_names
    act = [
        torch.tanh if a == "tanh" else (lambda z, i=i: net.act(i, z)) for i, a in enumerate(acts)
    ]
    offs = [0]
    for n in sizes:
        offs.append(offs[-1] + n)
    order = range(L) if inst_tx else range(L - 1, -1, -1)
    for t in range(T - 1):
        e = r_target - r[-1]
        rate = e - alpha * (u_int if leak == "paper" else u)
        u_int_new = u_int + dt * rate
        u_new = u_int_new + k_p * e
        if acc_fb:
            for i in range(L):
                acc_Q[i] += va[i].T @ u_new
        u_ap = u_new if proactive else u
        for i in order:
            vb[i] = v_ff[0] if i == 0 else r[i - 1] @ W[i].T + (0 if bias[i] is None else bias[i])
            fb = u_ap @ Q[i].T
            va[i] = fb if tau_a == dt else va[i] + (dt / tau_a) * (fb - va[i])
            s = noise[1] if i == L - 1 else noise[0]
            if s > 0 and xi is not None:
                va[i] = va[i] + s * math.sqrt(dt) / tau_a * xi[t][:, offs[i] : offs[i + 1]]
            v[i] = va[i] + vb[i] if inst_sys else v[i] + (dt / tcr) * (va[i] + vb[i] - v[i])
            r[i] = act[i](v[i])
        u, u_int = u_new, u_int_new
        if rule is not None:
            prev = [x, *r[:-1]]
            for i in range(L):
                if rule == "nonlinear_difference":
                    d = r[i] - act[i](vb[i])
                elif rule == "voltage_difference":
                    d = v[i] - vb[i]
                else:
                    d = net.act_prime(i, v_ff[i]) * (v[i] - vb[i])
                acc_b[i] += d.sum(0)
                acc_W[i] += d.T @ prev[i]
        r_rec.append(r[-1].clone())
    return Plain(v, r, u, u_int, acc_W, acc_b, acc_Q, r_rec)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def _run_both(system: DFCSystem, x: torch.Tensor, rt: torch.Tensor, **kw: Any) -> tuple[Any, Any]:
    fast_kw = {
        "dt": kw["dt"],
        "n_steps": kw["T"],
        "alpha": kw["alpha"],
        "k_p": kw["k_p"],
        "tau_ratio": kw["tcr"],
        "leak": kw.get("leak", "reference"),
        "inst_transmission": kw.get("inst_tx", True),
        "proactive_controller": kw.get("proactive", True),
        "inst_system_dynamics": kw.get("inst_sys", False),
        "record_steps": list(range(kw["T"])),
        "accumulate": kw.get("rule"),
        "apical_tau": kw.get("tau_a"),
        "chunk": kw.pop("chunk", 8),
    }
    fast = euler_reference_fast(system.network, x, rt, **fast_kw)
    return fast, plain_euler(system, x, rt, **kw)


FLAGS = [
    {"inst_tx": True, "proactive": True},
    {"inst_tx": False, "proactive": False},
    {"inst_tx": True, "proactive": False},
    {"inst_tx": False, "proactive": True},
    {"inst_sys": True},
    {"tau_a": 0.05},
    {"leak": "paper"},
]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize(
    "rule", ["nonlinear_difference", "voltage_difference", "derivative_matrix"]
)
def test_fast_reference_path_equals_the_plain_loop(flags: dict[str, Any], rule: str) -> None:
    system = make_system([5, 7, 6, 4], k_p=1.0, alpha=0.02, seed=3)
    x, y = random_batch(system, 6, seed=2)
    rt = system.target(x, y)
    kw = {"dt": 0.01, "T": 157, "alpha": 0.02, "k_p": 1.0, "tcr": 0.2, "rule": rule, **flags}
    fast, plain = _run_both(system, x, rt, **kw)
    for i in range(3):
        assert _rel(fast.acc_W[i], plain.acc_W[i]) < 1e-10, (i, flags)
        assert _rel(fast.acc_b[i], plain.acc_b[i]) < 1e-10, (i, flags)
        assert _rel(fast.v[i], plain.v[i]) < 1e-12
        assert _rel(fast.r[i], plain.r[i]) < 1e-12
    assert _rel(fast.u, plain.u) < 1e-12 and _rel(fast.u_int, plain.u_int) < 1e-12
    assert _rel(fast.r_rec, torch.stack(plain.r_rec)) < 1e-12


@pytest.mark.parametrize("act", ["sigmoid", "relu", "linear"])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_other_activations_and_chunk_sizes(act: str, chunk: int) -> None:
    system = make_system(
        [4, 6, 5, 3], act=act, k_p=0.5, alpha=0.05, seed=1, network={"bias": False}
    )
    x, y = random_batch(system, 5)
    rt = system.target(x, y)
    kw = {"dt": 0.02, "T": 100, "alpha": 0.05, "k_p": 0.5, "tcr": 0.2}
    fast, plain = _run_both(system, x, rt, rule="nonlinear_difference", chunk=chunk, **kw)
    for i in range(3):
        assert _rel(fast.acc_W[i], plain.acc_W[i]) < 1e-10
        assert _rel(fast.acc_b[i], plain.acc_b[i]) < 1e-10


def test_fast_tanh_agrees_with_torch_tanh_to_a_few_ulp() -> None:
    z = torch.cat([torch.linspace(-30, 30, 10001, dtype=torch.float64), torch.tensor([0.0])])
    out = torch.empty_like(z)
    fast_tanh(z, out)
    assert float((out - torch.tanh(z)).abs().max()) < 4e-16
    assert torch.isnan(fast_tanh_nan()).all()


def fast_tanh_nan() -> torch.Tensor:
    z = torch.tensor([float("nan")], dtype=torch.float64)
    out = torch.empty_like(z)
    fast_tanh(z, out)
    return out


@pytest.mark.parametrize("tau_a", [None, 0.05])
@pytest.mark.parametrize("sigma_out", [None, 0.0])
def test_noisy_sleep_phase_sums_equal_the_plain_loop_with_the_same_noise(
    tau_a: float | None, sigma_out: float | None
) -> None:
    system = make_system([4, 6, 5, 3], seed=4, feedback={"learned": True})
    x, _ = random_batch(system, 7)
    rt = system.network(x)
    sigma = 0.05
    s_out = sigma if sigma_out is None else sigma_out
    T, dt = 70, 0.002  # crosses a noise block
    g = torch.Generator().manual_seed(5)
    fast = euler_reference_fast(
        system.network,
        x,
        rt,
        dt=dt,
        n_steps=T,
        alpha=0.5,
        k_p=0.2,
        tau_ratio=0.01,
        leak="reference",
        inst_transmission=True,
        proactive_controller=False,
        inst_system_dynamics=False,
        record_steps=[0, T - 1],
        noise=(sigma, s_out),
        generator=g,
        apical_tau=tau_a,
        accumulate_feedback=True,
    )
    xi = plain_noise(torch.Generator().manual_seed(5), T, (7, 14))
    plain = plain_euler(
        system,
        x,
        rt,
        dt=dt,
        T=T,
        alpha=0.5,
        k_p=0.2,
        tcr=0.01,
        proactive=False,
        tau_a=tau_a,
        noise=(sigma, s_out),
        xi=xi,
        acc_fb=True,
    )
    for i in range(3):
        assert _rel(fast.acc_Q[i], plain.acc_Q[i]) < 1e-10
        assert _rel(fast.v[i], plain.v[i]) < 1e-12


def test_sleep_phase_gradient_through_simulate_equals_the_plain_loop() -> None:
    system = make_system(
        [5, 6, 4],
        seed=9,
        feedback={"learned": True},
        feedback_learning={"steps": 20, "dt": 0.002, "tau_ratio": 0.01},
    )
    fl = system.cfg.feedback_learning
    x, _ = random_batch(system, 4)
    grads = feedback_gradients(system, x, torch.Generator().manual_seed(3))
    xi = plain_noise(torch.Generator().manual_seed(3), fl.steps, (4, 10))
    plain = plain_euler(
        system,
        x,
        system.network(x),
        dt=fl.dt,
        T=fl.steps,
        alpha=fl.alpha,
        k_p=fl.k_p,
        tcr=fl.tau_ratio,
        proactive=False,
        tau_a=fl.apical_tau,
        noise=(fl.sigma, fl.sigma),
        xi=xi,
        acc_fb=True,
    )
    s = 1.0 / max(fl.sigma, fl.scale_floor) ** 2 / ((fl.steps - 1) * 4)
    for g, a in zip(grads, plain.acc_Q, strict=True):
        assert _rel(g, s * a) < 1e-10
    assert sleep_simulation_config(fl).solver == "euler_reference"


def test_dfc_update_through_simulate_equals_the_plain_loop() -> None:
    system = make_system(
        [6, 8, 7, 3],
        k_p=2.0,
        alpha=0.01,
        seed=2,
        method={"name": "dfc", "include_non_converged": True},
        sim={"dt": 0.02, "steps": 211},
    )
    x, y = random_batch(system, 9)
    up = get_method("dfc").update(system, x, y)
    plain = plain_euler(
        system, x, system.target(x, y), dt=0.02, T=211, alpha=0.01, k_p=2.0, tcr=0.2,
        rule="nonlinear_difference",
    )  # fmt: skip
    scale = -2.0 / (9 * 211)
    for i in range(3):
        assert _rel(up.grad_W[i], scale * plain.acc_W[i]) < 1e-10
        assert _rel(up.grad_b[i], scale * plain.acc_b[i]) < 1e-10


def test_early_stop_completes_the_sums_in_closed_form() -> None:
    base = {
        "k_p": 1.0,
        "alpha": 0.05,
        "seed": 1,
        "method": {"name": "dfc", "include_non_converged": True},
    }
    full = make_system([4, 6, 3], sim={"dt": 0.02, "steps": 3000}, **base)
    early = make_system([4, 6, 3], sim={"dt": 0.02, "steps": 3000, "early_stop": True}, **base)
    x, y = random_batch(full, 8)
    rt = full.target(x, y)
    s_full = simulate(full, x, rt, record=False, accumulate="nonlinear_difference")
    s_early = simulate(early, x, rt, record=False, accumulate="nonlinear_difference")
    assert s_early.steps_run < 0.5 * s_full.steps_run
    assert (s_early.status == s_full.status).all()
    a_full, a_early = s_full.accumulator, s_early.accumulator
    assert a_full is not None and a_early is not None and a_early.count == a_full.count
    for w_f, w_e in zip(a_full.W, a_early.W, strict=True):
        assert _rel(w_e, w_f) < 1e-4  # of the order of the convergence threshold (1e-5)
    # the DFC-SS state is the state at the stop, close to the final one
    s_ss = simulate(early, x, rt, record=False)
    assert s_ss.steps_run < s_full.steps_run
    assert _rel(s_ss.u_final, s_full.u_final) < 1e-4
