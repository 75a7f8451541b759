"""Training runs end to end: files, resume equals uninterrupted, failures leave no damage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from neurodfc.cli import main
from neurodfc.config import ExperimentConfig, load_config
from neurodfc.methods import Update
from neurodfc.runs.checkpoint import read_checkpoint
from neurodfc.training import CHECKPOINT, NonFiniteError, RunDirError, load_run, train
from tests.helpers import make_config

REPO = Path(__file__).resolve().parents[2]


def _toy(method: str = "dfc_ssa", learned: bool = True, epochs: int = 2) -> ExperimentConfig:
    return make_config(
        [6, 8, 3],
        k_p=1.0,
        alpha=0.01,
        lam=0.05,
        reduction="mean",
        fb_init="xavier_normal",
        sim={"dt": 0.02, "steps": 60},
        data={"dataset": "teacher_student", "n_train": 96, "n_val": 32, "n_test": 32},
        method={"name": method, "include_non_converged": True},
        training={"epochs": epochs, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
        feedback={"learned": learned},
        feedback_learning={
            "pretrain_epochs": 1,
            "extra_epochs": 1,
            "steps": 8,
            "sigma": 0.05,
            "dt": 0.002,
            "tau_ratio": 0.01,
        },
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = read_checkpoint(run / CHECKPOINT)["system"]
    return state


def test_train_writes_config_metrics_and_checkpoint(tmp_path: Path) -> None:
    cfg = _toy()
    res = train(cfg, tmp_path / "run", quiet=True, log=lambda _: None)
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "config.toml",
        "metrics.nc",
        "checkpoint.pt",
    }
    assert load_config(tmp_path / "run" / "config.toml") == cfg
    ds = xr.open_dataset(tmp_path / "run" / "metrics.nc")
    assert list(ds["epoch"].values) == [1, 2]
    for var in ("train_loss", "val_loss", "test_loss", "wall_time", "n_converged"):
        assert var in ds and np.isfinite(ds[var].values).all()
    assert ExperimentConfig.model_validate_json(ds.attrs["config"]) == cfg
    assert ds.attrs["best_val_epoch"] in (1, 2)
    assert res.metrics.attrs["test_loss_at_best_val"] == pytest.approx(
        float(ds["test_loss"].sel(epoch=ds.attrs["best_val_epoch"]))
    )


@pytest.mark.parametrize("method", ["dfc_ssa", "dfc"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path, method: str) -> None:
    full = train(_toy(method, epochs=3), tmp_path / "full", quiet=True, log=lambda _: None)
    train(_toy(method, epochs=1), tmp_path / "part", quiet=True, log=lambda _: None)
    with pytest.raises(RunDirError):  # an existing run is not overwritten silently
        train(_toy(method, epochs=3), tmp_path / "part", quiet=True, log=lambda _: None)
    resumed = train(
        _toy(method, epochs=3), tmp_path / "part", resume=True, quiet=True, log=lambda _: None
    )
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    np.testing.assert_array_equal(
        full.metrics["test_loss"].values, resumed.metrics["test_loss"].values
    )


def test_load_run_rebuilds_the_trained_system_and_its_metrics(tmp_path: Path) -> None:
    res = train(_toy(epochs=1), tmp_path / "r", quiet=True, log=lambda _: None)
    again = load_run(tmp_path / "r")
    assert again.system.cfg == res.system.cfg
    a, b = res.system.state_dict(), again.system.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    np.testing.assert_array_equal(
        again.metrics["test_loss"].values, res.metrics["test_loss"].values
    )
    with pytest.raises(RunDirError, match="holds no run"):
        load_run(tmp_path / "nothing")


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    train(_toy(epochs=1), tmp_path / "r", quiet=True, log=lambda _: None)
    other = _toy(epochs=2).model_copy(update={"seed": 5})
    with pytest.raises(RunDirError, match="different config"):
        train(other, tmp_path / "r", resume=True, quiet=True, log=lambda _: None)


def test_resume_accepts_a_config_whose_defaults_resolve_to_the_saved_values(
    tmp_path: Path,
) -> None:
    """A run saved with the defaults written out (steps, tolerances) resumes under a config that
    leaves them at None, and vice versa; a real difference is still refused."""
    base = _toy("dfc", epochs=1)  # a simulating method: its [simulation] section acts
    rtol, atol = base.simulation.tolerances
    explicit = base.model_copy(
        update={"simulation": base.simulation.model_copy(update={"rtol": rtol, "atol": atol})}
    )
    train(explicit, tmp_path / "r", quiet=True, log=lambda _: None)
    again = _toy("dfc", epochs=2)
    assert again.simulation.rtol is None and again != explicit
    train(again, tmp_path / "r", resume=True, quiet=True, log=lambda _: None)
    tighter = again.model_copy(
        update={"simulation": again.simulation.model_copy(update={"rtol": rtol / 2})}
    )
    with pytest.raises(RunDirError, match="different config"):
        train(tighter, tmp_path / "r", resume=True, quiet=True, log=lambda _: None)


def test_resume_ignores_sections_that_cannot_act_on_the_run(tmp_path: Path) -> None:
    """Frozen feedback: [feedback_learning] is inert, so a run resumes under other sleep-phase
    settings and ends as the uninterrupted run; learned feedback: the same change is refused.
    A method that does not simulate (no analysis logging): [simulation] is inert."""
    fl_other = {"lr": 0.5, "optimizer": "adam", "steps": 12}

    def fixed(epochs: int, **fl: Any) -> ExperimentConfig:
        cfg = _toy(learned=False, epochs=epochs)
        return cfg.model_copy(
            update={"feedback_learning": cfg.feedback_learning.model_copy(update=fl)}
        )

    full = train(fixed(2), tmp_path / "full", quiet=True, log=lambda _: None)
    train(fixed(1), tmp_path / "part", quiet=True, log=lambda _: None)
    resumed = train(
        fixed(2, **fl_other), tmp_path / "part", resume=True, quiet=True, log=lambda _: None
    )
    for a, b in zip(full.system.network.W, resumed.system.network.W, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    train(_toy(epochs=1), tmp_path / "learned", quiet=True, log=lambda _: None)
    learned = _toy(epochs=2)
    learned = learned.model_copy(
        update={"feedback_learning": learned.feedback_learning.model_copy(update=fl_other)}
    )
    with pytest.raises(RunDirError, match="different config"):
        train(learned, tmp_path / "learned", resume=True, quiet=True, log=lambda _: None)
    bp = make_config(
        [6, 8, 3],
        reduction="mean",
        data={"dataset": "teacher_student", "n_train": 64, "n_val": 32, "n_test": 32},
        method={"name": "bp"},
        training={"epochs": 1, "batch_size": 32},
    )
    train(bp, tmp_path / "bp", quiet=True, log=lambda _: None)
    bp2 = bp.model_copy(
        update={
            "training": bp.training.model_copy(update={"epochs": 2}),
            "simulation": bp.simulation.model_copy(update={"dt": 0.005, "solver": "etdrk4"}),
        }
    )
    train(bp2, tmp_path / "bp", resume=True, quiet=True, log=lambda _: None)


def test_nonfinite_update_stops_without_touching_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurodfc.methods.dfc_ssa import DFCSSA

    run = tmp_path / "r"
    train(_toy(learned=False, epochs=1), run, quiet=True, log=lambda _: None)
    before = _weights(run)
    original = DFCSSA.update
    calls = {"n": 0}

    def poisoned(self: DFCSSA, *args: object, **kw: object) -> Update:
        up = original(self, *args, **kw)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 2:
            up.grad_W[0] = up.grad_W[0] * float("nan")
        return up

    monkeypatch.setattr(DFCSSA, "update", poisoned)
    with pytest.raises(NonFiniteError, match="epoch 2, batch 1"):
        train(_toy(learned=False, epochs=2), run, resume=True, quiet=True, log=lambda _: None)
    after = _weights(run)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)
        assert torch.isfinite(after[k]).all()
    ds = xr.open_dataset(run / "metrics.nc")
    assert list(ds["epoch"].values) == [1]


def test_cli_train_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "train",
        str(REPO / "models" / "fig3_dfc_ssa.toml"),
        "--out",
        str(tmp_path / "r"),
        "--epochs",
        "1",
        "--quiet",
        "--set",
        "data.n_train=128",
        "--set",
        "data.n_val=64",
        "--set",
        "data.n_test=64",
        "--set",
        "feedback_learning.pretrain_epochs=1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test loss" in out and (tmp_path / "r" / "metrics.nc").exists()
    # the same command again without --resume is a usage error (exit 2), not a crash
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_linear_response_training_counts_its_fallback_samples(tmp_path: Path) -> None:
    """A training with the linear-response solver records per epoch how many samples went to
    the fallback solver: every one at tolerance 1e-300 (a nonzero estimate exceeds it), fewer
    at a loose one (the toy's random feedback leaves some linearised loops unstable: those
    fall back at any tolerance); other solvers write no such count."""
    base = _toy("dfc", learned=False, epochs=1)
    got = []
    for tol in (1e-300, 1.0):
        sim = {"solver": "linear_response", "linear_response_tol": tol, "order": 2}
        d = base.model_dump()
        cfg = ExperimentConfig.model_validate({**d, "simulation": {**d["simulation"], **sim}})
        res = train(cfg, tmp_path / f"run{tol}", quiet=True, log=lambda _: None)
        got.append(float(res.metrics["n_lr_fallback"].sel(epoch=1)))
    assert got[0] == 96.0
    assert 0.0 <= got[1] < 96.0
    plain = train(base, tmp_path / "plain", quiet=True, log=lambda _: None)
    assert "n_lr_fallback" not in plain.metrics
