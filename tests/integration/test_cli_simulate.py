"""End to end: ``neurodfc simulate`` writes a labelled, reproducible netCDF file (and a PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch.autograd.functional import jacobian as autograd_jacobian

from neurodfc.cli import main
from neurodfc.config import ExperimentConfig, load_config
from neurodfc.system import DFCSystem

REPO = Path(__file__).resolve().parents[2]
FIG1D = REPO / "models" / "fig1d.toml"
STEPS = 400
STATUS_VALUES = {"converged", "diverged", "max_steps", "nonfinite"}
# a small data set keeps the seed runs fast (the teacher network is the slow part)
SMALL_DATA = ["--set", "data.n_train=10", "--set", "data.n_val=0", "--set", "data.n_test=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The README-style run: 3 samples of Fig. 1D, 400 steps, with a plot."""
    folder = tmp_path_factory.mktemp("simulate")
    rc = main(
        [
            "simulate",
            str(FIG1D),
            "--out",
            str(folder / "x.nc"),
            "--plot",
            str(folder / "x.png"),
            "--samples",
            "3",
            "--set",
            f"simulation.steps={STEPS}",
        ]
    )
    return rc, folder


@pytest.fixture(scope="module")
def ds(run: tuple[int, Path]) -> xr.Dataset:
    rc, folder = run
    assert rc == 0
    with xr.open_dataset(folder / "x.nc") as opened:
        return opened.load()


@pytest.fixture(scope="module")
def cfg() -> ExperimentConfig:
    return load_config(FIG1D, [f"simulation.steps={STEPS}"])


def test_exit_status_and_files(run: tuple[int, Path]) -> None:
    rc, folder = run
    assert rc == 0
    # written atomically: no temporary file is left beside the outputs
    assert sorted(p.name for p in folder.iterdir()) == ["x.nc", "x.png"]
    assert (folder / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "x.nc").read_bytes()[:4] == b"\x89HDF"  # netCDF-4


def test_netcdf_file_mode_follows_the_umask(run: tuple[int, Path]) -> None:
    _, folder = run
    mode_nc = os.stat(folder / "x.nc").st_mode & 0o777
    mode_png = os.stat(folder / "x.png").st_mode & 0o777
    assert mode_nc == mode_png


def test_dimensions_and_variables(ds: xr.Dataset, cfg: ExperimentConfig) -> None:
    n_rec = len(range(0, STEPS, cfg.simulation.record_every)) + 1  # + the last step
    assert dict(ds.sizes) == {
        "time": n_rec,
        "sample": 3,
        "output": 1,
        "unit_l1": 10,
        "unit_l2": 10,
        "unit_l3": 1,
    }
    expected_dims = {
        "r_L": ("time", "sample", "output"),
        "u": ("time", "sample", "output"),
        "e": ("time", "sample", "output"),
        "e_norm": ("time", "sample"),
        "r_L_target": ("sample", "output"),
        "u_ss_lemma1": ("sample", "output"),
        "status": ("sample",),
        "v_l1": ("time", "sample", "unit_l1"),
        "v_l2": ("time", "sample", "unit_l2"),
        "v_l3": ("time", "sample", "unit_l3"),
    }
    for name, dims in expected_dims.items():
        assert name in ds, name
        assert ds[name].dims == dims, name
    assert set(ds["status"].values.tolist()) <= STATUS_VALUES


def test_config_attribute_revalidates(ds: xr.Dataset, cfg: ExperimentConfig) -> None:
    stored = ExperimentConfig.model_validate_json(ds.attrs["config"])
    assert stored == cfg


def test_time_axis(ds: xr.Dataset, cfg: ExperimentConfig) -> None:
    t = ds["time"].values
    sim = cfg.simulation
    assert t[0] == 0.0
    np.testing.assert_allclose(np.diff(t)[:-1], sim.record_every * sim.dt, rtol=1e-12)
    # the last step is always recorded: t_max = (steps - 1) dt
    assert t[-1] == pytest.approx((STEPS - 1) * sim.dt, rel=1e-12)
    assert 0 < t[-1] - t[-2] <= sim.record_every * sim.dt + 1e-12


def test_recorded_quantities_are_consistent(ds: xr.Dataset, cfg: ExperimentConfig) -> None:
    r, rt, r_ff = ds["r_L"].values, ds["r_L_target"].values, ds["r_L_ff"].values
    np.testing.assert_allclose(ds["e"].values, rt[None] - r, rtol=0, atol=1e-14)
    np.testing.assert_allclose(
        ds["e_norm"].values, np.linalg.norm(ds["e"].values, axis=-1), rtol=1e-12
    )
    # the simulation starts from the feedforward pass with zero control
    np.testing.assert_allclose(r[0], r_ff, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(ds["u"].values[0], 0.0)
    # linear output layer: r_L = v_L
    np.testing.assert_allclose(ds["v_l3"].values, r, rtol=0, atol=1e-14)
    # target: PyTorch's batch-mean MSE, r* = r^- - lam * 2 (r^- - y) / (B n_L)
    y = ds["label"].values
    lam, (B, n_L) = cfg.loss.lam, r_ff.shape
    np.testing.assert_allclose(rt, r_ff - lam * 2 * (r_ff - y) / (B * n_L), rtol=1e-12)
    # the controller moves the output towards the target
    e_norm = ds["e_norm"].values
    assert (e_norm[-1] < e_norm[0]).all()


def test_lemma1_prediction_is_that_of_the_configured_system(
    ds: xr.Dataset, cfg: ExperimentConfig
) -> None:
    """u_ss = (J Q + alpha I)^-1 delta with J from autograd on the network the seed builds."""
    assert cfg.controller.leak == "reference"  # alpha_eff = alpha
    net = DFCSystem.from_config(cfg).network
    sizes = net.sizes[1:]
    u_ref = []
    for b in range(ds.sizes["sample"]):
        # t = 0 is the feedforward pass: v_1 = W_1 x + b_1; perturb every layer from there
        v1_ff = torch.tensor(ds["v_l1"].values[0, b])
        r_ff_b = torch.tensor(ds["r_L_ff"].values[b])

        def out(dv_flat: torch.Tensor, v1: torch.Tensor = v1_ff) -> torch.Tensor:
            dv = torch.split(dv_flat, sizes)
            v = v1 + dv[0]
            for i in range(1, net.depth):
                v = net.W[i].detach() @ net.act(i - 1, v) + net.b[i].detach() + dv[i]
            return net.act(net.depth - 1, v)

        zero = torch.zeros(sum(sizes), dtype=torch.float64)
        torch.testing.assert_close(out(zero), r_ff_b, rtol=1e-12, atol=1e-12)
        J = autograd_jacobian(out, zero)
        delta = torch.tensor(ds["r_L_target"].values[b]) - r_ff_b
        A = J @ net.full_Q().detach() + cfg.controller.alpha * torch.eye(net.n_out)
        u_ref.append(torch.linalg.solve(A.double(), delta))
    np.testing.assert_allclose(ds["u_ss_lemma1"].values, torch.stack(u_ref).numpy(), rtol=1e-10)


def _simulate_small(folder: Path, name: str, seed: int) -> Path:
    out = folder / f"{name}.nc"
    argv = ["simulate", str(FIG1D), "--out", str(out), "--samples", "3", "--seed", str(seed)]
    rc = main([*argv, "--set", "simulation.steps=100", *SMALL_DATA])
    assert rc == 0
    return out


def test_seed_changes_weights_and_reproduces_bitwise(tmp_path: Path) -> None:
    a = _simulate_small(tmp_path, "seed1_a", 1)
    b = _simulate_small(tmp_path, "seed1_b", 1)
    c = _simulate_small(tmp_path, "seed2", 2)
    with xr.open_dataset(a) as da, xr.open_dataset(b) as db, xr.open_dataset(c) as dc:
        xr.testing.assert_identical(da.load(), db.load())
        for name in da.data_vars:
            if da[name].dtype.kind == "f":
                assert np.array_equal(da[name].values, db[name].values), name
        # same data (teacher_seed), other weights: the feedforward output differs
        np.testing.assert_array_equal(da["label"].values, dc["label"].values)
        assert not np.allclose(da["r_L_ff"].values, dc["r_L_ff"].values)
        assert ExperimentConfig.model_validate_json(dc.attrs["config"]).seed == 2
    assert a.read_bytes() == b.read_bytes()


def test_linear_response_diagnostics_are_written_per_sample(tmp_path: Path) -> None:
    """With the linear-response solver, x.nc says per sample which path each sample took and
    why, its error estimates and its transient at ``t_max``, as the Solution does; the reason
    codes are named in the variable's attributes."""
    out = tmp_path / "lr.nc"
    argv = ["simulate", str(FIG1D), "--out", str(out), "--samples", "3",
            "--set", "simulation.solver=linear_response",
            "--set", "simulation.linear_response_tol=1e-30"]  # fmt: skip
    assert main(argv) == 0
    with xr.open_dataset(out) as opened:
        lr = opened.load()
    names = ("lr_path", "lr_reason", "lr_estimate", "lr_estimate_final", "lr_transient")
    for name in names:
        assert lr[name].dims == ("sample",), name
    # a tolerance no estimate meets: every sample falls back, for that reason
    assert lr.lr_path.values.tolist() == [1, 1, 1]
    assert lr.lr_reason.values.tolist() == [1, 1, 1]
    assert "1 estimate_above_tol" in lr.lr_reason.attrs["values"]
    assert (lr.lr_estimate.values > 1e-30).all() and (lr.lr_transient.values >= 0).all()
