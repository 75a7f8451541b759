"""analyses/table1.py with each row's seeds as one ensemble: the runs equal the same runs
trained alone, a second call skips them, and the estimate prints both totals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import neurodfc.ensemble
from neurodfc.config import load_config
from neurodfc.training import load_run, train
from tests.integration.test_sweep import _table1


def test_table1_rows_as_ensembles_equal_runs_alone(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """--quick on the MNIST DFC row in this process: one ensemble of both seeds (solved
    together), each run equal to :func:`neurodfc.training.train` of its config alone."""
    t1 = _table1()
    calls: list[tuple[int, int]] = []
    real = neurodfc.ensemble.train_ensemble

    def spy(configs: Any, out: Any, **kw: Any) -> Any:
        res = real(configs, out, **kw)
        calls.append((len(configs), res.rounds))
        return res

    monkeypatch.setattr(neurodfc.ensemble, "train_ensemble", spy)
    out = tmp_path / "t1"
    argv = ["--quick", "--datasets", "mnist", "--methods", "dfc", "--workers", "1", "--quiet"]
    assert t1.main([*argv, "--out", str(out)]) == 0
    assert len(calls) == 1 and calls[0][0] == 2 and calls[0][1] > 0
    with xr.open_dataset(out / "sweep.nc") as f:
        ds = f.load()
    assert dict(ds.sizes) == {"dataset": 1, "method": 1, "seed": 2, "epoch": 1}
    assert (ds["status"].values == "done").all()
    assert "| DFC | " in (out / "table1.md").read_text()

    cfg = load_config(t1.config_path("mnist", "dfc"), [*t1.QUICK_OVERRIDES, "seed=1"])
    alone = train(cfg, tmp_path / "alone", quiet=True, log=lambda line: None)
    member = out / "runs" / "dataset=mnist__method=dfc" / "seed_1"
    got = load_run(member)
    for k in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(
            got.metrics[k].values, alone.metrics[k].values, rtol=0, atol=1e-12
        )
    sa, sb = got.system.state_dict(), alone.system.state_dict()
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sa) <= 1e-12

    capsys.readouterr()
    assert t1.main([*argv, "--out", str(out)]) == 0  # again: nothing to train
    assert "2 runs, 0 to train as 0 ensembles" in capsys.readouterr().err
    assert len(calls) == 1
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
    assert "With ensembles (one per row): 5.0 h (3.00x less" in md and "about 2.5 h" in md
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
