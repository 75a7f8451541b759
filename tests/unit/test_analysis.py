"""The analysis layer against slow, obvious per-sample references.

Oracles, all written here independently of ``neurodfc.system`` / ``neurodfc.analysis``: a plain
per-sample forward pass with explicit nonlinearities, Jacobians by ``torch.func.jacrev``
(w.r.t. the voltages or the parameters), ``torch.linalg`` solves and eigenvalues per sample,
the A matrices assembled block by block from the paper's formulas, and angles from numpy's
``arccos``. Also: value ranges, netCDF round trips, batch summaries and training-time logging.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import jacrev

from neurodfc.analysis import (
    AnalysisLogger,
    alignment,
    angle,
    batched_angle,
    conditions,
    convergence,
    mn_update,
    nullspace,
    nullspace_ratio_layers,
    resolve_mn_rule,
    ssa_update,
    stability,
    summarize,
)
from neurodfc.methods import BP, Update, get_method
from neurodfc.results import write_netcdf
from neurodfc.solve import Status, simulate
from neurodfc.system import DFCSystem
from neurodfc.training import train
from tests.helpers import make_config, make_system, random_batch

T = torch.Tensor


# ----------------------------------------------------------------------------- oracles
def _np_angle(a: T, b: T) -> float:
    a_ = a.detach().reshape(-1).numpy()
    b_ = b.detach().reshape(-1).numpy()
    c = float(a_ @ b_ / (np.linalg.norm(a_) * np.linalg.norm(b_)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


class Oracle:
    """A per-sample reimplementation of a tanh (hidden) / linear (output) network."""

    def __init__(self, system: DFCSystem) -> None:
        net = system.network
        self.W = [w.detach().clone() for w in net.W]
        self.b = [b.detach().clone() for b in net.b]
        self.Q = torch.cat([q.detach() for q in net.Q], 0)
        self.sizes = net.sizes[1:]
        self.L = len(self.W)
        self.cfg = system.cfg

    def phi(self, i: int, v: T) -> T:
        return torch.tanh(v) if i < self.L - 1 else v

    def dphi(self, i: int, v: T) -> T:
        return 1 - torch.tanh(v) ** 2 if i < self.L - 1 else torch.ones_like(v)

    def forward(self, x: T, dv: T | None = None) -> tuple[list[T], list[T]]:
        """Voltages and rates of ONE sample x [n_0], with optional dv [N] added layer-wise."""
        vs, rs, r, off = [], [], x, 0
        for i in range(self.L):
            v = self.W[i] @ r + self.b[i]
            if dv is not None:
                v = v + dv[off : off + self.sizes[i]]
            off += self.sizes[i]
            r = self.phi(i, v)
            vs.append(v)
            rs.append(r)
        return vs, rs

    def J(self, x: T, dv: T | None = None) -> T:
        """d r_L / d v [n_L, N] at the state reached with dv (autograd through the chain)."""
        base = torch.zeros(sum(self.sizes), dtype=x.dtype) if dv is None else dv
        return jacrev(lambda e: self.forward(x, base + e)[1][-1])(torch.zeros_like(base))

    def delta(self, x: T, y: T) -> T:
        """r_L* - r_L^- for the summed MSE (``reduction = "sum"``): -lam * 2 (r - y)."""
        out = self.forward(x)[1][-1]
        return -self.cfg.loss.lam * 2.0 * (out - y)

    def lemma1(self, x: T, y: T) -> tuple[T, T]:
        """(u_ss, dv_ss) of one sample: (J Q + alpha I)^-1 delta, Q u."""
        J = self.J(x)
        a = self.cfg.controller.alpha
        u = torch.linalg.solve(
            J @ self.Q + a * torch.eye(J.shape[0], dtype=x.dtype), self.delta(x, y)
        )
        return u, self.Q @ u

    def split(self, t: T) -> list[T]:
        return list(torch.split(t, self.sizes))


def _oracle_references(system: DFCSystem, x: T, y: T, gamma: float) -> dict[str, list[T]]:
    """Reference updates (flattened per parameter, gradient convention) by per-sample loops."""
    o = Oracle(system)
    B = x.shape[0]
    L = o.L
    refs: dict[str, list[T]] = {}
    # BP: autograd of the summed MSE through the oracle's own forward pass
    Wp = [w.clone().requires_grad_(True) for w in o.W]
    bp = [b.clone().requires_grad_(True) for b in o.b]
    loss = torch.zeros((), dtype=x.dtype)
    for k in range(B):
        r = x[k]
        for i in range(L):
            r = o.phi(i, Wp[i] @ r + bp[i])
        loss = loss + ((r - y[k]) ** 2).sum()
    g = torch.autograd.grad(loss, [*Wp, *bp])
    refs["bp"] = [t for i in range(L) for t in (g[i], g[L + i])]
    # GN: explicit per-sample parameter Jacobian, mean of J^T (J J^T + gamma I)^-1 delta
    params = [*o.W, *o.b]

    def out(p: list[T], xb: T) -> T:
        r = xb
        for i in range(L):
            r = o.phi(i, p[i] @ r + p[L + i])
        return r

    acc = [torch.zeros_like(p) for p in params]
    for k in range(B):
        jac = jacrev(out)(params, x[k])
        Jt = torch.cat([j.reshape(j.shape[0], -1) for j in jac], 1)
        n_out = Jt.shape[0]
        w = torch.linalg.solve(
            Jt @ Jt.T + gamma * torch.eye(n_out, dtype=x.dtype), o.delta(x[k], y[k])
        )
        step = Jt.T @ w
        off = 0
        for j, p in enumerate(params):
            acc[j] -= step[off : off + p.numel()].reshape(p.shape) / B
            off += p.numel()
    refs["gn"] = [t for i in range(L) for t in (acc[i], acc[L + i])]
    # MN: dv = J^T (J J^T + gamma I)^-1 delta at the feedforward state, times r_{i-1}^-
    mW = [torch.zeros_like(w) for w in o.W]
    mb = [torch.zeros_like(b) for b in o.b]
    sW = [torch.zeros_like(w) for w in o.W]
    sb = [torch.zeros_like(b) for b in o.b]
    a = system.cfg.controller.alpha
    for k in range(B):
        J = o.J(x[k])
        n_out = J.shape[0]
        dv = J.T @ torch.linalg.solve(
            J @ J.T + gamma * torch.eye(n_out, dtype=x.dtype), o.delta(x[k], y[k])
        )
        _, r = o.forward(x[k])
        prev = [x[k], *r[:-1]]
        for i, d in enumerate(o.split(dv)):
            mW[i] -= torch.outer(d, prev[i])
            mb[i] -= d
        # SSA: Lemma 1, then the nonlinear difference at the steady state
        u = torch.linalg.solve(J @ o.Q + a * torch.eye(n_out, dtype=x.dtype), o.delta(x[k], y[k]))
        dss = o.Q @ u
        v_ss, r_ss = o.forward(x[k], dss)
        prev_ss = [x[k], *r_ss[:-1]]
        for i in range(L):
            basal = o.W[i] @ prev_ss[i] + o.b[i]
            d = o.phi(i, v_ss[i]) - o.phi(i, basal)
            sW[i] -= torch.outer(d, prev_ss[i])
            sb[i] -= d
    refs["mn"] = [t for i in range(L) for t in (mW[i], mb[i])]
    refs["ssa"] = [t for i in range(L) for t in (sW[i], sb[i])]
    return refs


def _random_update(system: DFCSystem, seed: int) -> Update:
    g = torch.Generator().manual_seed(seed)
    net = system.network
    gW = [torch.randn(w.shape, generator=g, dtype=torch.float64) for w in net.W]
    gb = [torch.randn(b.shape, generator=g, dtype=torch.float64) for b in net.b]
    return Update(grad_W=gW, grad_b=gb, loss=torch.tensor(0.0), output=torch.zeros(1))


def _roundtrip(ds: xr.Dataset, path: Path) -> None:
    write_netcdf(ds, path)
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(ds, back.load())


# ----------------------------------------------------------------------------- angles
def test_angle_of_known_vectors() -> None:
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    assert float(angle(e1, e2)) == pytest.approx(90.0)
    assert float(angle(e1, 3 * e1)) == pytest.approx(0.0, abs=1e-6)
    assert float(angle(e1, -e1)) == pytest.approx(180.0)
    assert float(angle(e1 + e2 / 2, e1)) == pytest.approx(45.0)
    assert math.isnan(float(angle(e1, torch.zeros(3, dtype=torch.float64))))
    with pytest.raises(ValueError):
        angle(e1, torch.zeros(4))


@settings(max_examples=30)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 12))
def test_batched_angle_matches_numpy_and_lies_in_range(seed: int, B: int, n: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, n, 2, generator=g, dtype=torch.float64)
    b = torch.randn(B, n, 2, generator=g, dtype=torch.float64)
    got = batched_angle(a, b)
    for k in range(B):
        assert float(got[k]) == pytest.approx(_np_angle(a[k], b[k]), abs=1e-7)
    assert bool(((got >= 0) & (got <= 180)).all())


# ----------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("gamma", [0.0, 0.3])
def test_alignment_of_a_given_update_matches_per_sample_references(
    gamma: float, tmp_path: Path
) -> None:
    system = make_system([4, 6, 5, 3], seed=2, alpha=0.02, fb_init="xavier_normal")
    x, y = random_batch(system, 5)
    up = _random_update(system, 11)
    # the oracle builds the voltage-difference MN and the DFC-SSA (Lemma-1 rates) references
    ds = alignment(
        system, x, y, up, gamma=gamma, mn_rule="voltage_difference", ssa_rates="analytic"
    )
    refs = _oracle_references(system, x, y, gamma)
    mine = [t for i in range(3) for t in (up.grad_W[i], up.grad_b[i])]
    for name, ref in refs.items():
        for i in range(3):
            want_W = _np_angle(mine[2 * i], ref[2 * i])
            want_b = _np_angle(mine[2 * i + 1], ref[2 * i + 1])
            got = ds.sel(reference=name, layer=i + 1)
            assert float(got["angle_W"]) == pytest.approx(want_W, abs=1e-6), (name, i)
            assert float(got["angle_b"]) == pytest.approx(want_b, abs=1e-6), (name, i)
        whole = _np_angle(
            torch.cat([t.reshape(-1) for t in mine]), torch.cat([t.reshape(-1) for t in ref])
        )
        assert float(ds["angle_network"].sel(reference=name)) == pytest.approx(whole, abs=1e-6)
    _roundtrip(ds, tmp_path / "alignment.nc")


def test_alignment_by_method_name_equals_its_precomputed_update() -> None:
    system = make_system(
        [4, 6, 3],
        seed=3,
        k_p=1.0,
        alpha=0.02,
        method={"name": "dfc_ss"},
        sim={"dt": 0.02, "steps": 400},
    )
    x, y = random_batch(system, 6)
    by_name = alignment(system, x, y, "dfc_ss", gamma=0.1)
    up = get_method("dfc_ss").update(system, x, y)
    given_up = alignment(system, x, y, up, gamma=0.1)
    xr.testing.assert_allclose(by_name.drop_attrs(), given_up.drop_attrs())
    # the default method is the config's
    xr.testing.assert_allclose(alignment(system, x, y).drop_attrs(), by_name.drop_attrs())
    # DFC-SSA is aligned with itself, BP is not (the other references differ from BP)
    ssa = alignment(system, x, y, "dfc_ssa", against=["ssa", "bp"], ssa_rates="analytic")
    assert float(ssa["angle_network"].sel(reference="ssa")) < 1e-5
    bp = alignment(system, x, y, "bp", against=["bp"])
    assert float(bp["angle_network"].sel(reference="bp")) < 1e-5


def test_alignment_without_biases_has_nan_bias_angles() -> None:
    system = make_system([3, 4, 2], seed=1, network={"bias": False})
    x, y = random_batch(system, 4)
    ds = alignment(system, x, y, "dfc_ssa", against=["bp", "mn"])
    assert bool(ds["angle_b"].isnull().all())
    assert bool(ds["angle_W"].notnull().all())
    with pytest.raises(ValueError):
        alignment(system, x, y, "dfc_ssa", gamma=-1.0)
    with pytest.raises(ValueError):
        alignment(system, x, y, "dfc_ssa", against=["nope"])


# ----------------------------------------------------------------------------- conditions
def test_conditions_match_per_sample_references(tmp_path: Path) -> None:
    system = make_system([4, 6, 5, 3], seed=5, alpha=0.03, fb_init="xavier_normal")
    x, y = random_batch(system, 6)
    gammas = [0.0, 0.2, 3.0]
    ds = conditions(system, x, y, gammas=gammas)
    o = Oracle(system)
    a = system.cfg.controller.alpha
    for k in range(6):
        _, r = o.forward(x[k])
        norms = np.array([float(t.norm()) for t in [x[k], *r[:-1]]])
        m = norms.mean()
        assert float(ds["condition1"][k]) == pytest.approx(norms.std() / m, rel=1e-10)
        dev_r = math.sqrt(((norms - m) ** 2).mean() / m)
        assert float(ds["condition1_dev_r"][k]) == pytest.approx(dev_r, rel=1e-10)
        np.testing.assert_allclose(ds["r_norm"][k].values, norms, rtol=1e-12)
        J = o.J(x[k])
        P = J.T @ torch.linalg.inv(J @ J.T) @ J
        want2 = float(torch.linalg.matrix_norm(P @ o.Q) / torch.linalg.matrix_norm(o.Q))
        assert float(ds["condition2"][k]) == pytest.approx(want2, rel=1e-9)
        ff = float(torch.linalg.eigvals(J @ o.Q).real.min()) + a
        assert float(ds["condition3_ff"][k]) == pytest.approx(ff, rel=1e-9, abs=1e-12)
        _, dv = o.lemma1(x[k], y[k])
        Jss = o.J(x[k], dv)
        ss = float(torch.linalg.eigvals(Jss @ o.Q).real.min()) + a
        assert float(ds["condition3_ss"][k]) == pytest.approx(ss, rel=1e-9, abs=1e-12)
        assert float(ds["angle_Q_JT"][k]) == pytest.approx(_np_angle(o.Q, J.T), abs=1e-6)
        for gi, gam in enumerate(gammas):
            n = J.shape[0]
            pinv = (
                torch.linalg.pinv(J)
                if gam == 0
                else J.T @ torch.linalg.inv(J @ J.T + gam * torch.eye(n, dtype=J.dtype))
            )
            want = _np_angle(o.Q, pinv)
            assert float(ds["angle_Q_pinv"][gi, k]) == pytest.approx(want, abs=1e-6)
    _roundtrip(ds, tmp_path / "conditions.nc")


@settings(max_examples=12)
@given(
    st.integers(0, 1000),
    st.sampled_from(["tanh", "linear"]),
    st.sampled_from(["xavier_normal", "weight_product"]),
)
def test_condition_measures_lie_in_their_ranges(seed: int, act: str, fb: str) -> None:
    system = make_system([3, 5, 4, 2], act=act, seed=seed, fb_init=fb)
    x, y = random_batch(system, 4, seed=seed + 1)
    ds = conditions(system, x, y)
    assert bool(((ds["condition2"] >= 0) & (ds["condition2"] <= 1 + 1e-12)).all())
    assert bool((ds["condition1"] >= 0).all()) and bool((ds["condition1_dev_r"] >= 0).all())
    for v in ("angle_Q_JT", "angle_Q_pinv"):
        assert bool(((ds[v] >= 0) & (ds[v] <= 180)).all())
    up = _random_update(system, seed)
    al = alignment(system, x, y, up, gamma=0.1)
    for v in ("angle_W", "angle_b", "angle_network"):
        assert bool(((al[v] >= 0) & (al[v] <= 180)).all())


def test_condition_one_is_zero_iff_the_norms_are_equal() -> None:
    """Linear network with orthogonal square weights and zero biases: |r_k| = |x| for all k."""
    system = make_system([4, 4, 4, 2], act="linear", seed=1, network={"init": "orthogonal"})
    x, y = random_batch(system, 3)
    ds = conditions(system, x, y)
    assert float(abs(ds["condition1"]).max()) < 1e-12
    assert float(abs(ds["condition1_dev_r"]).max()) < 1e-6
    with torch.no_grad():
        system.network.W[0].mul_(2.0)
    ds2 = conditions(system, x, y)
    # norms (n, 2n, 2n): std / mean = sqrt(2/9) / (5/3)
    np.testing.assert_allclose(ds2["condition1"].values, math.sqrt(2 / 9) / (5 / 3), rtol=1e-10)


# ----------------------------------------------------------------------------- stability
def _oracle_A(system: DFCSystem, o: Oracle, x: T, dv: T | None) -> dict[str, T]:
    """The four A matrices of ONE sample from the paper's block definitions."""
    ctrl = system.cfg.controller
    a, kp, tcr = ctrl.alpha, ctrl.k_p, ctrl.tau_ratio
    v, _ = o.forward(x, dv)
    J = o.J(x, dv)
    N, n_out = sum(o.sizes), o.sizes[-1]
    offs = np.cumsum([0, *o.sizes])
    Jhat = torch.zeros(N, N, dtype=x.dtype)
    for i in range(1, o.L):
        Jhat[offs[i] : offs[i + 1], offs[i - 1] : offs[i]] = o.W[i] @ torch.diag(
            o.dphi(i - 1, v[i - 1])
        )
    JL = torch.diag(o.dphi(o.L - 1, v[-1]))
    JL0 = torch.zeros(n_out, N, dtype=x.dtype)
    JL0[:, offs[-2] :] = JL
    I_N, I_L = torch.eye(N, dtype=x.dtype), torch.eye(n_out, dtype=x.dtype)
    QL = o.Q[offs[-2] :]
    top = torch.cat([-(I_N - Jhat) / tcr, (I_N - Jhat) @ o.Q / tcr], 1)
    return {
        "A_I": torch.cat([top, torch.cat([-J, -a * I_L], 1)], 0),
        "A_tilde_I": torch.cat(
            [torch.cat([-(I_N - Jhat) / tcr, o.Q / tcr], 1), torch.cat([-JL0, -a * I_L], 1)], 0
        ),
        "A_I_inst": -(J @ o.Q + a * I_L),
        "A_PI": torch.cat(
            [top, torch.cat([-J + kp / tcr * JL0, -(a * I_L + kp / tcr * JL @ QL)], 1)], 0
        ),
    }


@pytest.mark.parametrize("at", ["feedforward", "analytic", "simulated"])
def test_stability_matches_per_sample_block_matrices(at: str, tmp_path: Path) -> None:
    system = make_system(
        [3, 5, 4, 2],
        seed=7,
        k_p=1.5,
        alpha=0.05,
        tau_ratio=0.2,
        fb_init="xavier_normal",
        sim={"dt": 0.02, "steps": 300},
    )
    x, y = random_batch(system, 4)
    ds = stability(system, x, y, at=at)
    o = Oracle(system)
    sol = simulate(system, x, system.target(x, y), record=False) if at == "simulated" else None
    for k in range(4):
        if at == "feedforward":
            dv = None
        elif at == "analytic":
            dv = o.lemma1(x[k], y[k])[1]
        else:
            assert sol is not None  # state reached by the simulation: v_final - feedforward
            v_ff, _ = o.forward(x[k])
            r_fin = [torch.tanh(t[k]) for t in sol.v_final[:-1]]
            prev = [x[k], *r_fin]
            dv = torch.cat([sol.v_final[i][k] - (o.W[i] @ prev[i] + o.b[i]) for i in range(3)])
        A = _oracle_A(system, o, x[k], dv)
        for name, M in A.items():
            ev = torch.linalg.eigvals(M)
            got = float(ds["max_re_eig"].sel(matrix=name)[k])
            assert got == pytest.approx(float(ev.real.max()), rel=1e-8, abs=1e-10), name
            re = np.sort(ev.real.numpy())[::-1]
            got_re = ds["eig_real"].sel(matrix=name)[k].values
            # repeated eigenvalues are only accurate to ~sqrt(machine eps)
            np.testing.assert_allclose(got_re[: re.size], re, rtol=1e-7, atol=1e-6)
            assert np.all(np.isnan(got_re[re.size :]))
            np.testing.assert_allclose(
                np.sort(ds["eig_imag"].sel(matrix=name)[k].values[: re.size]),
                np.sort(ev.imag.numpy()),
                atol=1e-6,
            )
        assert float(ds["stability_measure"][k]) == float(ds["max_re_eig"].sel(matrix="A_PI")[k])
    if at == "simulated":
        assert sol is not None
        np.testing.assert_array_equal(ds["status"].values, sol.status.numpy())
    _roundtrip(ds, tmp_path / f"stability_{at}.nc")


def test_stability_keeps_full_spectra_only_for_small_networks() -> None:
    system = make_system([3, 5, 2], seed=1)
    x, y = random_batch(system, 2)
    assert "eig_real" not in stability(system, x, y, at="feedforward", max_full_size=5)
    assert "eig_real" in stability(system, x, y, at="feedforward", max_full_size=9)
    assert "eig_real" not in stability(system, x, y, at="feedforward", full_spectrum=False)
    with pytest.raises(ValueError):
        stability(system, x, y, at="nowhere")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- convergence
def test_convergence_matches_per_sample_reference(tmp_path: Path) -> None:
    system = make_system(
        [4, 6, 3], seed=1, k_p=1.0, alpha=0.05, sim={"dt": 0.02, "steps": 750, "record_every": 4}
    )
    x, y = random_batch(system, 8, scale=3.0)
    ds = convergence(system, x, y, tail=0.4)
    o = Oracle(system)
    sim = system.cfg.simulation
    a = system.cfg.controller.alpha
    settled = []
    for k in range(8):
        xb, yb = x[k : k + 1], y[k : k + 1]
        rt = system.target(xb, yb)
        sol = simulate(system, xb, rt, record=True)
        t = sol.t.numpy()
        e = sol.e[:, 0].numpy()
        r = sol.r_out[:, 0].numpy()
        u = sol.u[:, 0].numpy()
        ff = float(np.linalg.norm(sol.r_ff[-1][0].numpy()))
        e0 = float(np.linalg.norm(e[0]))
        ok = [
            np.linalg.norm(r[j] - (rt[0].numpy() - a * u[j])) / ff < sim.convergence_threshold
            and np.linalg.norm(e[j]) < sim.epsilon**2 * e0
            for j in range(len(t))
        ]
        settle = math.nan
        for j in range(len(t) - 1, -1, -1):
            if not ok[j]:
                break
            settle = t[j]
        got = float(ds["settling_time"][k])
        assert (math.isnan(got) and math.isnan(settle)) or got == pytest.approx(settle)
        settled.append(not math.isnan(settle))
        assert (not math.isnan(got)) == (int(ds["status"][k]) == Status.CONVERGED)
        n = math.ceil(0.4 * len(t))
        slope = np.polyfit(t[-n:], np.log(np.linalg.norm(e[-n:], axis=1)), 1)[0]
        assert float(ds["decay_rate"][k]) == pytest.approx(-slope, rel=1e-6)
        u_ss, dv = o.lemma1(x[k], y[k])
        r_ss = o.forward(x[k], dv)[1][-1].numpy()
        r_ff = o.forward(x[k])[1][-1].numpy()
        fin = sol.r_final[-1][0].numpy()
        want = np.linalg.norm(fin - r_ss) / np.linalg.norm(r_ff - r_ss)
        assert float(ds["dist_lemma1_output"][k]) == pytest.approx(want, rel=1e-6)
        want_u = np.linalg.norm(sol.u_final[0].numpy() - u_ss.numpy()) / np.linalg.norm(u_ss)
        assert float(ds["dist_lemma1_u"][k]) == pytest.approx(want_u, rel=1e-6)
    assert any(settled) and not all(settled)  # the horizon (15 tau_u) splits the batch
    assert bool((ds["decay_rate"] > 0).all())
    _roundtrip(ds, tmp_path / "convergence.nc")


# ----------------------------------------------------------------------------- logging
def test_summarize_reduces_samples_and_counts_statuses() -> None:
    ds = xr.Dataset(
        {
            "m": (("sample",), np.array([1.0, 3.0, np.nan])),
            "g": (("gamma", "sample"), np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])),
            "status": (("sample",), np.array([0, 2, 2], dtype=np.int8)),
            "traj": (("time", "sample"), np.zeros((2, 3))),
            "whole": (("reference",), np.array([5.0])),
        }
    )
    s = summarize(ds)
    assert float(s["m"]) == 2.0 and float(s["m_std"]) == 1.0
    np.testing.assert_allclose(s["g"].values, [2.0, 1.0])
    np.testing.assert_allclose(s["g_std"].values, [math.sqrt(2 / 3), math.sqrt(2.0)])
    assert s["status_count"].sel(status="converged") == 1
    assert s["status_count"].sel(status="max_steps") == 2
    assert "traj" not in s and float(s["whole"][0]) == 5.0


def _tiny_run_config(**analysis: object) -> object:
    return make_config(
        [6, 5, 3],
        k_p=1.0,
        alpha=0.02,
        reduction="mean",
        method={"name": "dfc_ssa"},
        data={"dataset": "random", "n_train": 48, "n_val": 8, "n_test": 8},
        training={"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "shuffle": False},
        analysis=analysis,
    )


def test_training_logs_nothing_by_default(tmp_path: Path) -> None:
    cfg = _tiny_run_config()
    assert cfg.analysis.log_interval == 0  # type: ignore[attr-defined]
    res = train(cfg, tmp_path / "run", quiet=True, log=lambda s: None)  # type: ignore[arg-type]
    assert "step" not in res.metrics.dims
    with xr.open_dataset(tmp_path / "run" / "metrics.nc") as ds:
        assert "step" not in ds.dims and "condition2" not in ds


def test_training_logs_metrics_every_interval_without_changing_the_run(tmp_path: Path) -> None:
    on = _tiny_run_config(
        log_interval=2, metrics=["alignment", "conditions", "stability"], ssa_rates="analytic"
    )
    off = _tiny_run_config()
    r_on = train(on, tmp_path / "on", quiet=True, log=lambda s: None)  # type: ignore[arg-type]
    r_off = train(off, tmp_path / "off", quiet=True, log=lambda s: None)  # type: ignore[arg-type]
    # logging observes, never changes the training
    np.testing.assert_array_equal(
        r_on.metrics["train_loss"].values, r_off.metrics["train_loss"].values
    )
    for a, b in zip(r_on.system.network.W, r_off.system.network.W, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with xr.open_dataset(tmp_path / "on" / "metrics.nc") as ds:
        ds = ds.load()
    # 3 batches per epoch, batches 0 and 2 of each epoch
    np.testing.assert_array_equal(ds["step"].values, [0, 2, 3, 5])
    np.testing.assert_array_equal(ds["step_epoch"].values, [1, 1, 2, 2])
    np.testing.assert_array_equal(ds["step_batch"].values, [0, 2, 0, 2])
    assert ds["angle_W"].dims == ("step", "reference", "layer")
    assert ds["angle_Q_pinv"].dims == ("step", "gamma")
    assert ds["max_re_eig"].dims == ("step", "matrix")
    # the variables keep the analysis functions' labels (figure captions read them)
    for name in ("angle_W", "angle_network", "condition2", "max_re_eig"):
        assert ds[name].attrs.get("long_name"), name
    assert ds["angle_W"].attrs.get("units") == "degree"
    # the first log (before any update, first batch: no shuffling) equals a direct measurement
    sys0 = DFCSystem.from_config(on)  # type: ignore[arg-type]
    from neurodfc.experiment import load_data

    data = load_data(on)  # type: ignore[arg-type]
    xb, yb = data.train.x[:16], data.train.y[:16]
    c = conditions(sys0, xb, yb, gammas=on.analysis.gammas)  # type: ignore[attr-defined]
    assert float(ds["condition2"][0]) == pytest.approx(float(c["condition2"].mean()), rel=1e-12)
    st_ = stability(sys0, xb, yb, at="analytic")
    assert float(ds["stability_measure"][0]) == pytest.approx(
        float(st_["stability_measure"].mean()), rel=1e-12
    )
    al = alignment(sys0, xb, yb, "dfc_ssa", ssa_rates="analytic")
    # clipping (norm 1 per parameter) changes the whole-network angle but not per-layer W ones
    np.testing.assert_allclose(ds["angle_W"][0].values, al["angle_W"].values, atol=1e-8)
    assert float(ds["angle_network"].sel(reference="ssa")[0]) < 1e-5


def test_logger_uses_only_the_first_max_samples() -> None:
    cfg = _tiny_run_config(log_interval=1, metrics=["conditions"], max_samples=3)
    system = DFCSystem.from_config(cfg)  # type: ignore[arg-type]
    x, y = random_batch(system, 8)
    logger = AnalysisLogger(cfg.analysis, get_method("dfc_ssa"))  # type: ignore[attr-defined]
    logger.log(system, x, y, None, epoch=1, batch=0, batches_per_epoch=1)
    ds = logger.to_dataset()
    assert ds is not None
    want = conditions(system, x[:3], y[:3])["condition2"].mean()
    assert float(ds["condition2"][0]) == pytest.approx(float(want), rel=1e-12)
    assert (
        logger.due(0)
        and logger.due(5)
        and not AnalysisLogger(
            cfg.analysis.model_copy(update={"log_interval": 0}),
            get_method("bp"),  # type: ignore[attr-defined]
        ).due(0)
    )


def test_logged_metrics_survive_a_resume(tmp_path: Path) -> None:
    """Interrupted after one epoch and resumed: the same logs as an uninterrupted run."""
    full = _tiny_run_config(log_interval=2, metrics=["conditions"])
    short = full.model_copy(  # type: ignore[attr-defined]
        update={"training": full.training.model_copy(update={"epochs": 1})}  # type: ignore[attr-defined]
    )
    train(short, tmp_path / "a", quiet=True, log=lambda s: None)
    resumed = train(full, tmp_path / "a", resume=True, quiet=True, log=lambda s: None)  # type: ignore[arg-type]
    straight = train(full, tmp_path / "b", quiet=True, log=lambda s: None)  # type: ignore[arg-type]
    xr.testing.assert_identical(
        resumed.metrics.drop_vars("wall_time"), straight.metrics.drop_vars("wall_time")
    )
    assert resumed.metrics.sizes["step"] == 4


# ------------------------------------------------- issue 16: MN / SSA definitions, null space
def _oracle_g(o: Oracle, x: T, y: T, reduction: str, batch: int) -> T:
    """dL/dr_L of ONE sample for the MSE: 2 (r - y), divided by B n_L for the batch mean."""
    out = o.forward(x)[1][-1]
    g = 2.0 * (out - y)
    return g / (batch * out.shape[0]) if reduction == "mean" else g


def _oracle_mn(system: DFCSystem, x: T, y: T, gamma: float, rule: str) -> list[T]:
    """The MN reference by an explicit per-sample loop: dv = J^T (J J^T + gamma I)^-1 g,
    then mean_b [phi(v + dv) - phi(v)] r^T (or dv r^T), bias: the batch mean."""
    o = Oracle(system)
    B = x.shape[0]
    mW = [torch.zeros_like(w) for w in o.W]
    mb = [torch.zeros_like(b) for b in o.b]
    for k in range(B):
        J = o.J(x[k])
        g = _oracle_g(o, x[k], y[k], system.cfg.loss.reduction, B)
        dv = J.T @ torch.linalg.solve(J @ J.T + gamma * torch.eye(J.shape[0], dtype=x.dtype), g)
        v, r = o.forward(x[k])
        prev = [x[k], *r[:-1]]
        for i, d in enumerate(o.split(dv)):
            if rule == "nonlinear_difference":
                d = o.phi(i, v[i] + d) - o.phi(i, v[i])
            mW[i] += torch.outer(d, prev[i]) / B
            mb[i] += d / B
    return [t for i in range(o.L) for t in (mW[i], mb[i])]


def _flat_pairs(up: Update) -> list[T]:
    return [t for w, b in zip(up.grad_W, up.grad_b, strict=True) for t in (w, b)]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("gamma", [0.0, 0.3])
@pytest.mark.parametrize("rule", ["nonlinear_difference", "voltage_difference"])
def test_mn_reference_matches_a_per_sample_loop(reduction: str, gamma: float, rule: str) -> None:
    system = make_system([4, 6, 5, 3], seed=2, fb_init="xavier_normal", reduction=reduction)
    x, y = random_batch(system, 5, scale=3.0)
    got = _flat_pairs(mn_update(system, x, y, gamma, rule))
    want = _oracle_mn(system, x, y, gamma, rule)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    # the angle of a given update against it, per layer and whole network
    up = _random_update(system, 5)
    ds = alignment(system, x, y, up, against=["mn"], gamma=gamma, mn_rule=rule)
    mine = _flat_pairs(up)
    for i in range(3):
        assert float(ds["angle_W"].sel(reference="mn", layer=i + 1)) == pytest.approx(
            _np_angle(mine[2 * i], want[2 * i]), abs=1e-8
        )
    whole = _np_angle(
        torch.cat([t.reshape(-1) for t in mine]), torch.cat([t.reshape(-1) for t in want])
    )
    assert float(ds["angle_network"].sel(reference="mn")) == pytest.approx(whole, abs=1e-8)
    assert ds["angle_W"].attrs["mn_rule"] == rule and ds.attrs["mn_rule"] == rule


def test_mn_rule_auto_follows_the_forward_rule_as_the_reference_code() -> None:
    for rule, want in [
        ("nonlinear_difference", "nonlinear_difference"),
        ("voltage_difference", "voltage_difference"),
        ("derivative_matrix", "voltage_difference"),
    ]:
        system = make_system([3, 4, 2], method={"name": "dfc_ssa", "rule": rule})
        assert resolve_mn_rule(system, "auto") == want
        assert resolve_mn_rule(system, "voltage_difference") == "voltage_difference"
    with pytest.raises(ValueError, match="mn_rule"):
        resolve_mn_rule(system, "nope")
    x, y = random_batch(system, 3)
    with pytest.raises(ValueError, match="ssa_rates"):
        alignment(system, x, y, "bp", ssa_rates="nope")
    # the default of the config section is the reference code's choice
    assert make_config([3, 4, 2]).analysis.mn_rule == "auto"
    assert make_config([3, 4, 2]).analysis.ssa_rates == "simulated"


def _oracle_euler_rates(system: DFCSystem, x: T, r_target: T, steps: int) -> list[list[T]]:
    """Per-sample forward Euler of the reference scheme (k_p = 0, no inst_transmission, not
    proactive, instantaneous apical compartment): u[t+1] = u[t] + dt (e[t] - alpha u[t]),
    v[t+1] = v[t] + dt/tcr (-v[t] + W r[t] + b + Q u[t]); returns the final rates."""
    o = Oracle(system)
    ctrl, dt = system.cfg.controller, system.cfg.simulation.dt
    out = []
    for k in range(x.shape[0]):
        v, r = o.forward(x[k])
        u = torch.zeros(r[-1].shape[0], dtype=x.dtype)
        Qs = o.split(o.Q)
        for _ in range(steps - 1):
            e = r_target[k] - r[-1]
            prev = [x[k], *r[:-1]]
            v = [
                v[i] + dt / ctrl.tau_ratio * (-v[i] + o.W[i] @ prev[i] + o.b[i] + Qs[i] @ u)
                for i in range(o.L)
            ]
            u = u + dt * (e - ctrl.alpha * u)
            r = [o.phi(i, v[i]) for i in range(o.L)]
        out.append(r)
    return out


@pytest.mark.parametrize("include", [True, False])
def test_ssa_reference_with_simulated_rates_matches_a_per_sample_loop(include: bool) -> None:
    steps = 120
    system = make_system(
        [4, 5, 3],
        seed=4,
        alpha=0.05,
        fb_init="xavier_normal",
        sim={"dt": 0.02, "steps": steps, "inst_transmission": False, "proactive_controller": False},
        method={"name": "dfc_ss", "include_non_converged": include},
    )
    x, y = random_batch(system, 4)
    o = Oracle(system)
    out = system.network(x)
    r_target = system.target_of(out, y)
    sol = simulate(system, x, r_target, record=False)
    rates = _oracle_euler_rates(system, x, r_target, steps)
    B, L = x.shape[0], o.L
    sW = [torch.zeros_like(w) for w in o.W]
    sb = [torch.zeros_like(b) for b in o.b]
    for k in range(B):
        _, dss = o.lemma1(x[k], y[k])
        keep_sim = include or int(sol.status[k]) == int(Status.CONVERGED)
        r_k = rates[k] if keep_sim else o.forward(x[k])[1]
        prev = [x[k], *r_k[:-1]]
        for i, d in enumerate(o.split(dss)):
            basal = o.W[i] @ prev[i] + o.b[i]
            t = o.phi(i, basal + d) - o.phi(i, basal)
            sW[i] -= 2.0 * torch.outer(t, prev[i]) / B
            sb[i] -= 2.0 * t / B
    got = ssa_update(system, x, y, "simulated")
    for a, b in zip(_flat_pairs(got), [t for i in range(L) for t in (sW[i], sb[i])], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    if not include:  # 120 steps do not converge here: the feedforward rates are used
        assert int((sol.status != int(Status.CONVERGED)).sum()) > 0
    # the analytic variant is the DFC-SSA update itself
    ana = ssa_update(system, x, y, "analytic")
    ref = get_method("dfc_ssa").update(system, x, y)
    for a, b in zip(_flat_pairs(ana), _flat_pairs(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ... and differs from the simulated-rates variant on this unconverged batch
    assert float((got.grad_W[1] - ana.grad_W[1]).norm()) > 1e-6 * float(ana.grad_W[1].norm())


def _batch_weight_jacobian(system: DFCSystem, x: T, i: int) -> T:
    """d vec(r_L of the whole batch) / d vec(W_i) [B n_L, n_i n_{i-1}] by jacrev of a plain
    forward pass written here."""
    o = Oracle(system)

    def outputs(Wi: T) -> T:
        r = x
        for j in range(o.L):
            W = Wi if j == i else o.W[j]
            r = o.phi(j, r @ W.T + o.b[j])
        return r.reshape(-1)

    return jacrev(outputs)(o.W[i]).reshape(-1, o.W[i].numel())


@pytest.mark.parametrize("max_explicit", [0, 10**9])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_nullspace_ratio_is_0_in_the_row_space_1_in_the_null_space_and_matches_svd(
    max_explicit: int, batch: int
) -> None:
    system = make_system([5, 6, 4, 3], seed=6, fb_init="xavier_normal")
    x, _ = random_batch(system, batch)
    g = torch.Generator().manual_seed(9)
    net = system.network
    for i in range(net.depth):
        A = _batch_weight_jacobian(system, x, i)
        _, S, Vh = torch.linalg.svd(A, full_matrices=True)
        rank = int((S >= 1e-12).sum())
        V_null = Vh[rank:].T  # the reference's null-space basis
        shape = net.W[i].shape
        w = torch.randn(A.shape[0], generator=g, dtype=torch.float64)
        in_row = (A.T @ w).reshape(shape)
        z = torch.randn(A.shape[1], generator=g, dtype=torch.float64)
        in_null = (V_null @ (V_null.T @ z)).reshape(shape)
        other = torch.randn(shape, generator=g, dtype=torch.float64)
        filler = [torch.randn(w_.shape, generator=g, dtype=torch.float64) for w_ in net.W]
        for X, want in [
            (in_row, 0.0),
            (in_null, 1.0 if V_null.shape[1] else math.nan),
            (other, float(torch.linalg.vector_norm(V_null.T @ other.reshape(-1)) / other.norm())),
        ]:
            if math.isnan(want):  # full column rank: no null space, skip the null vector
                continue
            gW = list(filler)
            gW[i] = X
            got = nullspace_ratio_layers(system, x, gW, max_explicit=max_explicit)[i]
            assert float(got) == pytest.approx(want, abs=1e-7), (i, want)


def test_nullspace_dataset_and_its_logging(tmp_path: Path) -> None:
    system = make_system([4, 6, 3], seed=1)
    x, y = random_batch(system, 6)
    up = get_method("dfa").update(system, x, y)
    ds = nullspace(system, x, up.grad_W)
    assert ds["nullspace_ratio"].dims == ("layer",)
    v = ds["nullspace_ratio"].values
    assert np.all((v >= 0) & (v <= 1)) and ds["nullspace_ratio"].attrs["long_name"]
    _roundtrip(ds, tmp_path / "nullspace.nc")
    bp = nullspace(system, x, BP().update(system, x, y).grad_W)["nullspace_ratio"].values
    # the BP gradient is a combination of the rows of d r_L / d W_i: no null-space part
    np.testing.assert_allclose(bp, 0.0, atol=1e-7)
    # training-time logging: the variable and the MN / SSA definitions in metrics.nc
    cfg = _tiny_run_config(log_interval=3, metrics=["alignment", "nullspace"])
    train(cfg, tmp_path / "run", quiet=True, log=lambda s: None)  # type: ignore[arg-type]
    with xr.open_dataset(tmp_path / "run" / "metrics.nc") as m:
        m = m.load()
    assert m["nullspace_ratio"].dims == ("step", "layer")
    assert m["angle_network"].attrs["mn_rule"] == "nonlinear_difference"  # auto, paper rule
    assert m["angle_network"].attrs["ssa_rates"] == "simulated"
    sys0 = DFCSystem.from_config(cfg)  # type: ignore[arg-type]
    from neurodfc.experiment import load_data

    data = load_data(cfg)  # type: ignore[arg-type]
    xb, yb = data.train.x[:16], data.train.y[:16]
    first = get_method("dfc_ssa").update(sys0, xb, yb)
    # per-layer clipping rescales each W_i: the ratio does not change
    want = nullspace(sys0, xb, first.grad_W)["nullspace_ratio"].values
    np.testing.assert_allclose(m["nullspace_ratio"][0].values, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("apical_tau", [None, 0.05])
def test_convergence_reports_the_recorded_apical_voltages(apical_tau: float | None) -> None:
    def run(steps: int) -> tuple[xr.Dataset, DFCSystem, T, T]:
        system = make_system(
            [4, 6, 3],
            act="linear",
            seed=3,
            alpha=0.05,
            sim={"dt": 0.01, "steps": steps, "record_every": 25},
            apical={"tau": apical_tau},
        )
        x, y = random_batch(system, 5)
        return convergence(system, x, y), system, x, y

    ds, system, x, y = run(6000)
    assert ds["apical_norm"].dims == ("time", "layer", "sample")
    np.testing.assert_array_equal(ds["apical_norm_final"].values, ds["apical_norm"][-1].values)
    # the oracle: the Lemma-1 apical voltage Q u_ss of this linear 4-6-3 network, written here:
    # J = [W_2, I], delta = -lam 2 (r_L^- - y), u_ss = (J Q + alpha I)^-1 delta
    net, cfg = system.network, system.cfg
    W1, W2 = (w.detach() for w in net.W)
    b1, b2 = (b.detach() for b in net.b)
    Q = net.full_Q().detach()
    J = torch.cat([W2, torch.eye(3, dtype=torch.float64)], 1)
    out = (x @ W1.T + b1) @ W2.T + b2
    delta = -cfg.loss.lam * 2.0 * (out - y)
    u = torch.linalg.solve(
        J @ Q + cfg.controller.alpha * torch.eye(3, dtype=torch.float64), delta.T
    ).T
    want = [torch.linalg.vector_norm(d, dim=1) for d in torch.split(u @ Q.T, [6, 3], dim=1)]
    np.testing.assert_allclose(ds["apical_norm_final"].values, torch.stack(want).numpy(), rtol=1e-8)
    assert float(ds["dist_lemma1_apical"].max()) < 1e-8  # linear network: Lemma 1 is exact
    short, system, x, y = run(40)
    assert float(short["dist_lemma1_apical"].min()) > 1e-3  # not there yet
    if apical_tau is None:  # instantaneous: v^fb(t) = Q u(t) at every recorded time
        sol = simulate(system, x, system.target(x, y), record=True)
        Qs = torch.split(system.network.full_Q().detach(), system.network.sizes[1:])
        for i, Qi in enumerate(Qs):
            want = torch.linalg.vector_norm(sol.u @ Qi.T, dim=2).numpy()
            np.testing.assert_allclose(short["apical_norm"][:, i].values, want, rtol=1e-12)
    # logged as batch statistics per layer (the trajectory is dropped)
    s = summarize(short)
    assert s["apical_norm_final"].dims == ("layer",) and "apical_norm" not in s
