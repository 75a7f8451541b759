"""analyses/table1.py with each row's seeds as one ensemble (a dask task): the runs equal the
same runs trained alone, a second call skips them, and the estimate prints both totals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import xarray as xr

from neurodfc.config import load_config
from neurodfc.training import load_run, train
from tests.integration.test_sweep import _table1, cluster  # noqa: F401 - the fixture

if TYPE_CHECKING:  # pragma: no cover
    from distributed import LocalCluster


def test_table1_rows_as_ensembles_equal_runs_alone(
    tmp_path: Path,
    cluster: LocalCluster,  # noqa: F811 - the fixture imported above
    data_dir: Path,
    capsys: Any,
) -> None:
    """--quick on the MNIST DFC row: both seeds as one ensemble task, each run equal to
    :func:`neurodfc.training.train` of its config alone; a second call trains nothing."""
    t1 = _table1()
    out = tmp_path / "t1"
    argv = ["--quick", "--datasets", "mnist", "--methods", "dfc", "--quiet", "--out", str(out)]
    argv += ["--scheduler", cluster.scheduler_address]
    assert t1.main(argv) == 0
    with xr.open_dataset(out / "sweep.nc") as f:
        ds = f.load()
    assert dict(ds.sizes) == {"dataset": 1, "method": 1, "seed": 2, "epoch": 1}
    assert (ds["status"].values == "done").all()
    assert "| DFC | " in (out / "table1.md").read_text()
    for seed in (0, 1):  # trained as members of one ensemble of two
        log = (out / "logs" / f"dataset=mnist__method=dfc__seed_{seed}.log").read_text()
        assert f"(ensemble member {seed + 1} of 2)" in log

    cfg = load_config(t1.config_path("mnist", "dfc"), [*t1.QUICK_OVERRIDES, "seed=1"])
    alone = train(cfg, tmp_path / "alone", quiet=True, log=lambda line: None)
    got = load_run(out / "runs" / "dataset=mnist__method=dfc" / "seed_1")
    for k in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
        a, b = got.metrics[k].values, alone.metrics[k].values
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    sa, sb = got.system.state_dict(), alone.system.state_dict()
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sa) <= 1e-12

    capsys.readouterr()
    assert t1.main(argv) == 0  # again: nothing to train
    assert "0 to run, 2 already finished" in capsys.readouterr().err
    with xr.open_dataset(out / "sweep.nc") as f:
        np.testing.assert_array_equal(f["test_loss"].values, ds["test_loss"].values)


def test_estimate_markdown_totals_sequential_and_ensembles() -> None:
    """The totals: seeds x the runs, and the rows' ensembles, each over the workers."""
    t1 = _table1()
    timings = [
        t1.Timing("mnist", "dfc", 1.0, 0.1, 0.5, 3600.0, 5, 2.0, 0.3, 2 * 3600.0),
        t1.Timing("mnist", "bp", 0.01, 0.0, 0.5, 2 * 3600.0, 5, 0.05, 0.0, 3 * 3600.0),
    ]
    md = t1.estimate_markdown(timings, "cpu", seeds=5, concurrent=2)
    assert "Total: 15.0 h of sequential compute" in md and "about 7.5 h" in md
    assert "With ensembles (one per row): 5.0 h of compute" in md and "about 2.5 h" in md
    assert "(sequential / ensembles = 3.00)" in md
    assert "row as ensemble (h)" in md and "| mnist | DFC | 1 | 0.1 | 1.00 | 2 | 0.3 | 2.00 |" in md
    one = [t1.Timing("mnist", "dfc", 1.0, 0.1, 0.5, 3600.0)]
    assert "ensemble" not in t1.estimate_markdown(one, "cpu", seeds=5, concurrent=1).lower()


def test_time_config_times_a_row_as_one_ensemble(data_dir: Path) -> None:
    """A simulating config's seeds timed as one ensemble; a method without simulations costs
    its members' updates one by one."""
    t1 = _table1()
    t = t1.time_config("mnist", "fixed_dfc_ss", "cpu", reps=1, members=2)
    assert t.members == 2 and 0 < t.forward_ens_s < math.inf and t.sleep_ens_s == 0.0
    assert t.row_ens_s > 0
    bp = t1.time_config("mnist", "bp", "cpu", reps=1, members=3)
    assert bp.forward_ens_s == 3 * bp.forward_s
    assert bp.row_ens_s == pytest.approx(3 * bp.run_s)
