"""Every tutorial ``docs/tutorials/NN_name.py --quick --out DIR`` runs as a subprocess, exits 0,
writes its outputs into DIR and nothing into the repository; the property tests inside
tutorial 3 pass under pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import xarray as xr

from tests.conftest import REPO, shared_data_dir

TUTORIALS = REPO / "docs" / "tutorials"
FIGURES = TUTORIALS / "figures"

# the files each script must write into --out (figures are checked as images)
EXPECTED = {
    "01_dynamics": ["01_dynamics.nc", "01_dynamics.png", "01_dynamics_lambda.png"],
    "02_mnist_dfc_ssa": ["run/metrics.nc", "run/config.toml", "02_mnist_dfc_ssa.png"],
    "03_property_test": ["counterexample.txt"],
    "04_report": ["run/metrics.nc", "report/report.md", "04_report.png"],
    "05_sweep": ["sweep/sweep.nc", "sweep/table.md", "05_sweep.png"],
    "06_pid_controller": ["06_pid_controller.png"],
}


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env["HYPOTHESIS_PROFILE"] = "quick"
    data = shared_data_dir()
    if data is not None:
        env["NEURODFC_DATA"] = str(data)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _snapshot() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in FIGURES.glob("*")} if FIGURES.is_dir() else {}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs_in_quick_mode(name: str, tmp_path: Path) -> None:
    if name == "02_mnist_dfc_ssa" and shared_data_dir() is None:
        pytest.skip("shared data folder not found (set NEURODFC_TEST_DATA)")
    before = _snapshot()
    proc = subprocess.run(
        [sys.executable, str(TUTORIALS / f"{name}.py"), "--quick", "--out", str(tmp_path)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for rel in EXPECTED[name]:
        path = tmp_path / rel
        assert path.is_file(), f"{name} did not write {rel}"
        if path.suffix == ".png":
            img = mpimg.imread(path)
            assert img.ndim == 3 and min(img.shape[:2]) > 100
    assert _snapshot() == before, "quick mode wrote into docs/tutorials/figures"
    if name == "01_dynamics":
        with xr.open_dataset(tmp_path / "01_dynamics.nc") as ds:
            assert list(ds["solver"].values) == ["euler_reference", "dopri5"]
            assert "u_ss_lemma1" in ds and ds.sizes["sample"] == 4
    elif name == "02_mnist_dfc_ssa":
        with xr.open_dataset(tmp_path / "run" / "metrics.nc") as ds:
            assert ds.sizes["step"] >= 1 and "angle_network" in ds and "condition2" in ds
    elif name == "03_property_test":
        assert "FALSIFIED" in proc.stdout and "PASSED" in proc.stdout
        assert "false_claim" in (tmp_path / "counterexample.txt").read_text()
    elif name == "04_report":
        assert "locally stable" in proc.stdout
    elif name == "05_sweep":
        with xr.open_dataset(tmp_path / "sweep" / "sweep.nc") as ds:
            assert ds.sizes["seed"] == 2 and (ds["status"] == "done").all()
    elif name == "06_pid_controller":
        assert "Lemma 1 is exact" in proc.stdout


def test_property_tests_of_tutorial_3_pass_under_pytest(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--rootdir",
            str(REPO),
            str(TUTORIALS / "03_property_test.py"),
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
