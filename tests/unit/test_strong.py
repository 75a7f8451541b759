"""Strong-DFC (neurodfc.strong): filters, the simulation loop against a plain loop, the strong
steady state against its closed form, the methods' updates and the training loop."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from neurodfc.config import ConfigError, load_config
from neurodfc.methods import get_method
from neurodfc.network import DFCNetwork
from neurodfc.strong import (
    LowPass,
    StrongDFC,
    StrongDynamics,
    feedback_scales,
    high_pass,
    label_target,
    low_pass,
    simulate_strong,
)
from neurodfc.strong.dynamics import NOISE_BLOCK
from neurodfc.strong.training import train_strong
from neurodfc.system import jacobian
from tests.helpers import make_config, make_system, random_batch

MODELS = Path(__file__).resolve().parents[2] / "models"


# --------------------------------------------------------------------------- filters
def test_high_pass_removes_a_constant_input_exactly() -> None:
    c = torch.randn(3, 4, dtype=torch.float64)
    seq = c.expand(200, 3, 4).clone()
    hp = high_pass(seq, dt=0.001, tau=0.5)
    assert torch.equal(hp, torch.zeros_like(hp))  # exactly, not approximately


def test_low_pass_is_the_exponential_recursion() -> None:
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(50, 2, generator=g, dtype=torch.float64)
    a = 0.01 / 0.2
    ref = [seq[0]]
    for k in range(1, 50):
        ref.append(a * seq[k] + (1 - a) * ref[-1])
    # the filter computes y += a (x - y) (exactly stationary for constant input); it equals the
    # textbook recursion up to rounding of the running value: a 1e-15 absolute floor covers
    # elements near zero, where a relative tolerance alone is meaningless
    torch.testing.assert_close(low_pass(seq, 0.01, 0.2), torch.stack(ref), rtol=1e-14, atol=1e-15)
    lp = LowPass(0.01, 0.2)
    last = torch.zeros(2, dtype=torch.float64)
    for s in seq:
        last = lp.step(s)
    torch.testing.assert_close(last, ref[-1], rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError):
        LowPass(0.3, 0.2)


def test_high_pass_passes_a_fast_input() -> None:
    """Closed-form response of the recursion ``y[k] = a x[k] + (1-a) y[k-1]``, ``y[0] = x[0]``
    to ``x[k] = Im e^{i theta k}``: ``y = Im(H e^{i theta k}) + C (1-a)^k`` with
    ``H = a / (1 - (1-a) e^{-i theta})`` and ``C`` from ``y[0] = x[0]``; the high-pass passes a
    fast input (period much shorter than ``tau_f / dt``) with gain ``|1 - H|`` close to 1."""
    dt, tau = 0.001, 0.5
    a = dt / tau
    k = torch.arange(1000, dtype=torch.float64)
    for period in (2, 20, 80):  # 2: the alternating sequence (-1)^k, shifted to a sine at pi/2
        theta = 2 * math.pi / period
        phase = math.pi / 2 if period == 2 else 0.0
        x = torch.sin(theta * k + phase)
        H = a / (1 - (1 - a) * complex(math.cos(theta), -math.sin(theta)))
        rot = complex(math.cos(phase), math.sin(phase))
        C = float(x[0]) - (H * rot).imag
        steady = torch.tensor(
            [
                (H * rot * complex(math.cos(theta * j), math.sin(theta * j))).imag
                for j in k.tolist()
            ],
            dtype=torch.float64,
        )
        expected = x - steady - C * (1 - a) ** k
        torch.testing.assert_close(high_pass(x, dt, tau), expected, rtol=0, atol=1e-12)
        assert abs(1 - H) > 0.98, (period, abs(1 - H))


def test_label_target_is_a_soft_one_hot() -> None:
    y = torch.tensor([2, 0, 1])
    t = label_target(y, 4, 0.9, torch.float64)
    torch.testing.assert_close(t.sum(1), torch.ones(3, dtype=torch.float64))
    assert t[0, 2] == 0.9 and t[1, 0] == 0.9 and t[0, 0] == pytest.approx(0.1 / 3)
    reg = torch.randn(3, 2, dtype=torch.float64)
    assert torch.equal(label_target(reg, 2, 0.9, torch.float64), reg)


# --------------------------------------------------------------------------- the loop
def _plain_loop(
    net: DFCNetwork,
    x: torch.Tensor,
    rt: torch.Tensor,
    dyn: StrongDynamics,
    rule: str,
    tau_f: float | None,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Step-by-step oracle of the scheme in the dynamics module docstring, full trajectories
    stored, sums computed afterwards; the normals are drawn in the same blocks."""
    L, T, B = net.depth, dyn.n_steps, x.shape[0]
    W = [w.detach() for w in net.W]
    b = [bb.detach() for bb in net.b]
    Q = [q.detach() for q in net.Q]
    sizes = net.sizes[1:]
    N = sum(sizes)
    n_blocks = math.ceil((T - 1) / NOISE_BLOCK)
    xi_all = torch.cat(
        [torch.randn((NOISE_BLOCK, B, N), generator=generator) for _ in range(n_blocks)]
    ).to(x.dtype)
    xi = list(torch.split(xi_all, sizes, dim=2))
    act = [net.act_names[i] for i in range(L)]

    def phi(i: int, v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(v) if act[i] == "tanh" else v

    def err(r: torch.Tensor) -> torch.Tensor:
        return rt - (torch.softmax(r, -1) if dyn.error == "softmax" else r)

    v_ff, r_ff = net.feedforward(x)
    v = [[t.detach()] for t in v_ff]
    vb = [[t.detach()] for t in v_ff]
    r = [[t.detach()] for t in r_ff]
    a = [[torch.zeros_like(t)] for t in v_ff]
    eps = [torch.zeros_like(t) for t in v_ff]
    u = [torch.zeros_like(rt)]
    u_int = torch.zeros_like(rt)
    sig = [dyn.sigma] * (L - 1) + [dyn.sigma_output]
    for t in range(T - 1):
        e = err(r[-1][t])
        leak = u_int if dyn.leak == "paper" else u[t]
        u_int = u_int + dyn.dt * (e - dyn.alpha * leak)
        u.append(u_int + dyn.k_p * e)
        order = range(L) if dyn.inst_transmission else range(L - 1, -1, -1)
        for i in order:
            c = (u[t + 1] if dyn.proactive else u[t]) @ Q[i].T
            if dyn.apical_tau is None:
                ai = c
            else:
                ai = a[i][t] + dyn.dt / dyn.apical_tau * (c - a[i][t])
            if dyn.noise == "white":
                ai = ai + sig[i] * math.sqrt(dyn.dt) / (dyn.apical_tau or dyn.dt) * xi[i][t]
            elif dyn.noise == "ou":
                an = dyn.dt / dyn.tau_noise
                eps[i] = (1 - an) * eps[i] + an / math.sqrt(dyn.dt) * xi[i][t]
                ai = ai + sig[i] * eps[i]
            a[i].append(ai)
            if i == 0:
                basal = x @ W[0].T + b[0]
            else:
                rp = r[i - 1][t + 1] if dyn.inst_transmission else r[i - 1][t]
                basal = rp @ W[i].T + b[i]
            vb[i].append(basal)
            v[i].append(v[i][t] + dyn.dt / dyn.tau_ratio * (ai + basal - v[i][t]))
            r[i].append(phi(i, v[i][t + 1]))
    acc_W, acc_b = [], []
    for i in range(L):
        V, VB = torch.stack(v[i]), torch.stack(vb[i])
        d = phi(i, V) - phi(i, VB) if rule == "nonlinear_difference" else V - VB
        prev = x.expand(T, *x.shape) if i == 0 else torch.stack(r[i - 1])
        acc_W.append(torch.einsum("tbi,tbj->ij", d, prev))
        acc_b.append(d.sum((0, 1)))
    U = torch.stack(u)[1:]
    if tau_f is not None:
        lp, al = [U[0]], dyn.dt / tau_f
        for k in range(1, T - 1):
            lp.append(al * U[k] + (1 - al) * lp[-1])
        U = U - torch.stack(lp)
    acc_Q = [torch.einsum("tbi,tbj->ij", torch.stack(a[i])[:-1], U) for i in range(L)]
    return {
        "v": [t[-1] for t in v],
        "r": [t[-1] for t in r],
        "u": u[-1],
        "acc_W": acc_W,
        "acc_b": acc_b,
        "acc_Q": acc_Q,
    }


CASES = [
    # noise, apical_tau, inst_transmission, proactive, error, rule, tau_f, leak
    ("ou", None, True, True, "softmax", "nonlinear_difference", 0.05, "reference"),
    ("white", 0.03, True, False, "difference", "voltage_difference", None, "reference"),
    ("ou", 0.02, False, True, "difference", "nonlinear_difference", 0.1, "paper"),
    ("none", None, True, True, "softmax", "voltage_difference", None, "reference"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[4]}-inst{c[2]}" for c in CASES])
def test_simulation_loop_equals_a_plain_loop(case: tuple[Any, ...]) -> None:
    noise, apical, inst, proactive, error, rule, tau_f, leak = case
    system = make_system([4, 6, 5, 3], fb_init="xavier_normal", seed=4)
    net = system.network
    x, _ = random_batch(system, 5)
    rt = torch.softmax(torch.randn(5, 3, dtype=torch.float64), -1)
    dyn = StrongDynamics(
        dt=0.005,
        n_steps=150,
        alpha=0.02,
        k_p=1.5,
        tau_ratio=0.02,
        leak=leak,
        inst_transmission=inst,
        proactive=proactive,
        apical_tau=apical,
        noise=noise,
        sigma=0.3,
        sigma_output=0.1,
        tau_noise=0.04,
        error=error,
    )
    run = simulate_strong(
        net,
        x,
        rt,
        dyn,
        forward_rule=rule,
        accumulate_feedback=True,
        tau_f=tau_f,
        generator=torch.Generator().manual_seed(3),
        chunk=7,
    )
    ref = _plain_loop(net, x, rt, dyn, rule, tau_f, torch.Generator().manual_seed(3))
    kw = {"rtol": 1e-10, "atol": 1e-12}
    for got, want in zip(run.v, ref["v"], strict=True):
        torch.testing.assert_close(got, want, **kw)
    torch.testing.assert_close(run.u, ref["u"], **kw)
    for key in ("acc_W", "acc_b", "acc_Q"):
        for got, want in zip(getattr(run, key), ref[key], strict=True):
            torch.testing.assert_close(got, want, **kw)
    assert run.count_W == 150 and run.count_Q == 149


@pytest.mark.parametrize("leak", ["reference", "paper"])
def test_strong_feedback_linear_network_output_equals_label_up_to_the_leak(leak: str) -> None:
    """Closed form (linear network, Lemma 1 is exact): ``u_ss = (J Q + alpha_eff I)^-1
    (y - r_L^-)`` and ``r_L,ss = y - alpha_eff u_ss``; the label is reached up to the leak."""
    alpha, k_p = 0.02, 1.0
    system = make_system([4, 6, 5, 3], act="linear", fb_init="weight_product", seed=2)
    net = system.network
    x, y = random_batch(system, 6)
    dyn = StrongDynamics(
        dt=0.02, n_steps=3000, alpha=alpha, k_p=k_p, tau_ratio=0.1, leak=leak, proactive=True
    )
    run = simulate_strong(net, x, y, dyn)
    a_eff = alpha / (1 + alpha * k_p) if leak == "paper" else alpha
    with torch.no_grad():
        v_ff, r_ff = net.feedforward(x)
        J, Q = jacobian(net, v_ff), net.full_Q()
        eye = torch.eye(3, dtype=torch.float64)
        u_ss = torch.linalg.solve(J @ Q + a_eff * eye, (y - r_ff[-1]).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(run.r[-1], y - a_eff * u_ss, rtol=1e-9, atol=1e-11)
    gap = torch.linalg.vector_norm(run.r[-1] - y, dim=1)
    torch.testing.assert_close(gap, a_eff * torch.linalg.vector_norm(u_ss, dim=1))
    assert float(gap.max()) < 0.05 * float(torch.linalg.vector_norm(y - r_ff[-1], dim=1).min())


def test_softmax_error_settles_on_the_soft_label_up_to_the_leak() -> None:
    """``e = y - softmax(r_L)``: at the steady state ``softmax(r_L) = y - alpha u`` (the sum of
    ``u`` decays at rate alpha only, since ``sum(e) = 0``: a long horizon, 20 / alpha)."""
    alpha = 0.1
    system = make_system([4, 6, 3], act="linear", fb_init="weight_product", seed=5)
    net = system.network
    x, _ = random_batch(system, 4)
    y = label_target(torch.tensor([0, 2, 1, 2]), 3, 0.9, torch.float64)
    dyn = StrongDynamics(
        dt=0.05, n_steps=4000, alpha=alpha, k_p=1.0, tau_ratio=0.05, error="softmax"
    )
    run = simulate_strong(net, x, y, dyn)
    p = torch.softmax(run.r[-1], -1)
    torch.testing.assert_close(p, y - alpha * run.u, rtol=1e-10, atol=1e-12)
    assert float(run.u.sum(1).abs().max()) < 1e-8  # the leak keeps sum(p) = sum(y) = 1


# --------------------------------------------------------------------------- methods
def _classification_system(name: str, **strong: Any) -> Any:
    return make_system(
        [5, 8, 6, 3],
        fb_init="weight_product",
        loss="cross_entropy",
        alpha=0.01,
        k_p=1.5,
        tau_ratio=0.05,
        seed=7,
        sim={"dt": 0.005, "steps": 400},
        method={"name": name},
        noise={"sigma": 0.01},
        strong=strong,
        feedback={"learned": True},
        feedback_learning={
            "dt": 0.002,
            "steps": 100,
            "tau_ratio": 0.01,
            "apical_tau": 0.05,
            "sigma": 0.05,
        },
    )


@pytest.mark.parametrize(
    "name,strong",
    [
        ("strong_dfc", {"update": "steady_state", "noise": "white", "high_pass": False}),
        ("strong_dfc", {"update": "trajectory", "error": "difference"}),
        ("strong_dfc_single", {}),
    ],
)
def test_strong_updates_are_finite_and_descend_the_loss(name: str, strong: dict[str, Any]) -> None:
    system = _classification_system(name, **strong)
    net = system.network
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 5, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.randint(0, 3, (16,), generator=g)
    method = get_method(name)
    up = method.update(system, x, y, generator=torch.Generator().manual_seed(2))
    assert up.is_finite()
    bp = get_method("bp").update(system, x, y)
    assert float(up.flat() @ bp.flat()) > 0  # positive inner product with the loss gradient
    loss0 = float(bp.loss)
    with torch.no_grad():
        for w, gw, b, gb in zip(net.W, up.grad_W, net.b, up.grad_b, strict=True):
            w -= 1e-3 * gw / up.flat().norm()
            b -= 1e-3 * gb / up.flat().norm()
    assert float(get_method("bp").update(system, x, y).loss) < loss0
    assert isinstance(method, StrongDFC)
    grads_q = getattr(up, "grad_Q")  # noqa: B009
    if method.single_phase:
        assert [tuple(q.shape) for q in grads_q] == [(8, 3), (6, 3), (3, 3)]
        assert all(bool(torch.isfinite(q).all()) and float(q.norm()) > 0 for q in grads_q)
    else:
        assert grads_q == []
    fb = method.feedback_gradients(system, x, y, torch.Generator().manual_seed(3))
    assert [tuple(q.shape) for q in fb] == [(8, 3), (6, 3), (3, 3)]
    assert all(bool(torch.isfinite(q).all()) for q in fb)


def test_feedback_scales_are_noise_normalised_and_layer_scaled() -> None:
    cfg = make_config(
        [3, 4, 4, 2],
        method={"name": "strong_dfc_single"},
        strong={"tau_noise": 0.05},
        feedback_learning={"scale_floor": 0.01},
    )
    dyn = StrongDynamics(
        dt=0.001, n_steps=3, alpha=0, k_p=0, tau_ratio=0.01, sigma=0.001, sigma_output=0.2
    )
    s = feedback_scales(cfg, dyn, 3)
    assert s == pytest.approx([1.2**2 / 0.01**2, 1.2 / 0.01**2, 1 / 0.2**2])
    off = cfg.model_copy(update={"strong": cfg.strong.model_copy(update={"layer_scaling": False})})
    assert feedback_scales(off, dyn, 3) == pytest.approx([1e4, 1e4, 25.0])


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "file", sorted(p.name for p in MODELS.glob("strong_*.toml")), ids=lambda f: f
)
def test_strong_configs_load(file: str) -> None:
    cfg = load_config(MODELS / file)
    assert cfg.method.name in ("strong_dfc", "strong_dfc_single")
    assert cfg.loss.reduction == "sum" and cfg.strong.target == "label"
    assert cfg.network.sizes == [784, 256, 256, 256, 10] and cfg.dtype == "float64"
    single = cfg.method.name == "strong_dfc_single"
    assert cfg.strong.high_pass == single and (cfg.strong.noise == "ou") == single


def test_nudged_target_needs_the_difference_error() -> None:
    with pytest.raises(ConfigError, match="strong.error"):
        make_config([3, 2], strong={"target": "nudged", "error": "loss_gradient"})
    make_config([3, 2], strong={"target": "nudged", "error": "difference"})


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["strong_dfc", "strong_dfc_single"])
def test_train_strong_end_to_end(name: str, tmp_path: Path) -> None:
    cfg = make_config(
        [4, 8, 3],
        act="tanh",
        alpha=0.01,
        k_p=1.0,
        tau_ratio=0.05,
        fb_init="xavier_normal",
        seed=3,
        sim={"dt": 0.01, "steps": 60},
        data={"dataset": "random", "n_train": 96, "n_val": 32, "n_test": 32},
        method={"name": name, "rule": "nonlinear_difference"},
        noise={"sigma": 0.02},
        feedback={"learned": True},
        training={"epochs": 3, "batch_size": 32, "lr": 0.01},
        feedback_learning={
            "dt": 0.005,
            "steps": 40,
            "tau_ratio": 0.01,
            "apical_tau": 0.02,
            "sigma": 0.02,
            "pretrain_epochs": 1,
            "extra_epochs": 0,
            "lr": 1e-3,
            "lr_init": 1e-3,
        },
        strong={"tau_noise": 0.05, "tau_f": 0.2},
    )
    system0 = make_system(cfg.network.sizes, seed=3, fb_init="xavier_normal")
    q0 = [q.detach().clone() for q in system0.network.Q]
    logs: list[str] = []
    res = train_strong(cfg, tmp_path / "run", log=logs.append)
    ds = res.metrics
    assert list(ds.epoch.values) == [1, 2, 3]
    loss = ds.train_loss.values
    assert all(math.isfinite(v) for v in loss) and loss[-1] < loss[0]
    assert (tmp_path / "run" / "metrics.nc").is_file()
    assert any("pre-training" in m for m in logs)
    # Q learned (pre-training, and for the single phase every minibatch)
    q1 = [q.detach() for q in res.system.network.Q]
    assert all(not torch.equal(a, b) for a, b in zip(q0[:-1], q1[:-1], strict=True))


def test_train_strong_without_a_folder_and_for_strong_methods_only(tmp_path: Path) -> None:
    cfg = make_config(
        [4, 6, 3],
        fb_init="xavier_normal",
        sim={"dt": 0.01, "steps": 30},
        data={"dataset": "random", "n_train": 32, "n_val": 16, "n_test": 16},
        method={"name": "strong_dfc"},
        feedback={"learned": True},
        training={"epochs": 1, "batch_size": 16},
        feedback_learning={"dt": 0.005, "steps": 10, "tau_ratio": 0.01, "pretrain_epochs": 0},
    )
    res = train_strong(cfg, None, log=lambda _: None)
    assert list(res.metrics.epoch.values) == [1] and not res.path.exists()
    assert all(math.isfinite(float(w.detach().abs().sum())) for w in res.system.network.W)
    with pytest.raises(ValueError, match="train_strong trains"):
        train_strong(cfg, None, overrides=["method.name=dfc_ssa"], log=lambda _: None)


# --------------------------------------------------------------------------- analysis
@pytest.mark.parametrize("name", ["strong_dfc", "strong_dfc_single"])
def test_analysis_metrics_work_for_strong_methods(name: str) -> None:
    from neurodfc.analysis.monitor import AnalysisLogger
    from neurodfc.config import AnalysisConfig
    from neurodfc.strong.analysis import h_analysis

    system = _classification_system(name)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 5, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.randint(0, 3, (8,), generator=g)
    method = get_method(name)
    up = method.update(system, x, y, generator=g)
    logger = AnalysisLogger(AnalysisConfig(log_interval=1), method)
    ds = logger.measure(system, x, y, up)
    assert math.isfinite(float(ds["angle_network"].sel(reference="bp")))
    h = h_analysis(system, x, y, up)
    assert h.H.dims == ("sample",) and h.angle_W.dims == ("layer",)
    assert list(h.layer.values) == [1, 2, 3] and bool(h.converged.all())
    assert 0 <= float(h.angle) < 90  # the strong update reduces the control needed
