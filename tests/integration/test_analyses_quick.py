"""Every ``analyses/<name>.py --quick --out DIR`` runs as a subprocess and writes a readable
``<name>.nc`` and ``<name>.png`` with the expected content."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import xarray as xr

from tests.conftest import REPO, shared_data_dir

SCRIPTS = ["fig1d", "fig2", "fig3", "figS1", "figC2C3", "mnist_alignment"]


def _run(name: str, out: Path) -> xr.Dataset:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "analyses" / f"{name}.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    png = mpimg.imread(out / f"{name}.png")
    assert png.ndim == 3 and min(png.shape[:2]) > 100
    with xr.open_dataset(out / f"{name}.nc") as ds:
        return ds.load()


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_analysis_script(name: str, tmp_path: Path) -> None:
    if name == "mnist_alignment" and shared_data_dir() is None:
        pytest.skip("shared data folder not found (set NEURODFC_TEST_DATA)")
    ds = _run(name, tmp_path)
    if name == "fig1d":
        assert ds.sizes["sample"] == 3 and "r_L" in ds and "condition2" in ds
        assert bool(((ds["condition2"] > 0) & (ds["condition2"] <= 1)).all())
    elif name == "fig2":
        assert ds.sizes["q"] == 200 and ds.sizes["gamma"] == 20
        assert bool((ds["min_re_eig_JQ"] > 0).all())  # Condition 3 (alpha = 0) by selection
        np.testing.assert_allclose(ds["condition2_first_Q"].values, 1.0, atol=1e-10)
        np.testing.assert_allclose(np.linalg.norm(ds["Q"].values, axis=1), 1.0)
    elif name == "fig3":
        assert ds.sizes["run"] == 7
        for v in ("condition2", "condition1_dev_r", "stability_measure", "angle_network"):
            assert v in ds
        a = ds["angle_network"].values
        assert np.all((a[np.isfinite(a)] >= 0) & (a[np.isfinite(a)] <= 180))
        assert bool(ds["angle_network"].sel(run="dfc", reference="ssa").notnull().all())
    elif name == "figS1":
        assert set(ds["matrix"].values) == {"A_I", "A_tilde_I", "A_I_inst", "A_PI"}
        assert ds.sizes["run"] == 2
    elif name == "figC2C3":
        assert set(ds["activation"].values) == {"linear", "tanh"}
        c2 = ds["condition2"].values
        assert np.all((c2[np.isfinite(c2)] >= 0) & (c2[np.isfinite(c2)] <= 1))
    else:
        assert ds.sizes["run"] == 3
        assert bool(ds["angle_network"].sel(run="dfc_ss", reference="ssa").notnull().all())
