"""Run folders (neurodfc.runs): the "same run" rule, finished runs, the atomic writer, the
lock, temp cleanup and checkpoint verification, each against what it promises."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from neurodfc.config import ExperimentConfig, config_from_dict
from neurodfc.runs import files as run_files
from neurodfc.runs.checkpoint import MAGIC, CheckpointError, read_checkpoint, write_checkpoint
from neurodfc.runs.files import (
    LockHeldError,
    atomic_write,
    atomic_write_text,
    clean_temp_files,
    hold_lock,
)
from neurodfc.runs.folder import (
    CHECKPOINT,
    METRICS,
    ResultsFileError,
    read_results,
    run_finished,
    same_run,
)


def _cfg(**tree: Any) -> ExperimentConfig:
    base: dict[str, Any] = {
        "network": {"sizes": [4, 3, 2]},
        "method": {"name": "dfc"},
        "simulation": {"solver": "euler_reference", "dt": 0.01, "steps": 50},
        "training": {"epochs": 2},
    }
    for k, v in tree.items():
        base.setdefault(k, {}).update(v) if isinstance(v, dict) else base.update({k: v})
    return config_from_dict(base)


# ------------------------------------------------------------------ same_run
def test_same_run_ignores_the_epoch_count_only() -> None:
    a = _cfg()
    assert same_run(a, _cfg(training={"epochs": 7}))
    assert same_run(a.model_dump_json(), _cfg(training={"epochs": 7}))  # JSON as stored
    assert not same_run(a, _cfg(seed=3))
    assert not same_run(a, _cfg(training={"lr": 0.5}))
    assert not same_run(None, a) and not same_run("{not json", a) and not same_run(5, a)


def test_same_run_resolves_defaults_and_ignores_inert_sections() -> None:
    a = _cfg(simulation={"solver": "etdrk4"})
    rtol, atol = a.simulation.tolerances
    explicit = _cfg(simulation={"solver": "etdrk4", "rtol": rtol, "atol": atol})
    assert a != explicit and same_run(explicit, a) and same_run(a, explicit)
    assert not same_run(_cfg(simulation={"solver": "etdrk4", "rtol": rtol / 2}), a)
    # frozen feedback: the sleep-phase settings cannot act on the run
    frozen = _cfg(feedback={"learned": False})
    assert same_run(_cfg(feedback={"learned": False}, feedback_learning={"lr": 0.5}), frozen)
    learned = _cfg(feedback={"learned": True})
    assert not same_run(_cfg(feedback={"learned": True}, feedback_learning={"lr": 0.5}), learned)
    # a method that does not simulate: [simulation] is inert (without analysis logging)
    bp = _cfg(method={"name": "bp"})
    assert same_run(_cfg(method={"name": "bp"}, simulation={"dt": 0.002}), bp)
    # the linear-response fields act only on that solver (a run saved when the default order
    # was 1 resumes; the same change under linear_response is another run)
    for solver in ("euler_reference", "etdrk4"):
        saved = _cfg(simulation={"solver": solver, "order": 1, "linear_response_tol": 1e-3})
        assert same_run(saved, _cfg(simulation={"solver": solver}))
    lr = {"solver": "linear_response"}
    assert not same_run(_cfg(simulation={**lr, "order": 1}), _cfg(simulation=lr))
    assert not same_run(
        _cfg(simulation={**lr, "discretisation": "reference_euler"}), _cfg(simulation=lr)
    )


def _metrics(path: Path, cfg: ExperimentConfig, epochs: int) -> None:
    ds = xr.Dataset(
        {"train_loss": ("epoch", np.linspace(1, 0.5, epochs))},
        coords={"epoch": np.arange(1, epochs + 1)},
    )
    ds.attrs["config"] = cfg.model_dump_json()
    path.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path / METRICS)


def test_run_finished_uses_the_same_run_rule_and_the_epoch_count(tmp_path: Path) -> None:
    cfg = _cfg(simulation={"solver": "etdrk4"})
    rtol, atol = cfg.simulation.tolerances
    explicit = _cfg(simulation={"solver": "etdrk4", "rtol": rtol, "atol": atol})
    run = tmp_path / "r"
    _metrics(run, explicit, 2)
    assert not run_finished(run, cfg)  # no checkpoint
    (run / CHECKPOINT).write_bytes(b"x")
    assert run_finished(run, cfg)  # defaults written out: the same run
    assert run_finished(run, _cfg(simulation={"solver": "etdrk4"}, training={"epochs": 1}))
    assert not run_finished(run, _cfg(simulation={"solver": "etdrk4"}, training={"epochs": 3}))
    assert not run_finished(run, _cfg(simulation={"solver": "etdrk4"}, seed=9))
    (run / METRICS).write_bytes(b"garbage")
    assert not run_finished(run, cfg)  # unreadable: train() decides


def test_the_sweep_merge_uses_the_same_rule(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from neurodfc.sweep import make_plan, merge_sweep

    cfg = _cfg(simulation={"solver": "etdrk4"})
    rtol, atol = cfg.simulation.tolerances
    plan = make_plan(
        tmp_path, [], [0, 1], lambda v, lab, seed: cfg.model_copy(update={"seed": seed})
    )
    explicit = _cfg(simulation={"solver": "etdrk4", "rtol": rtol, "atol": atol}, seed=0)
    _metrics(plan.tasks[0].run_dir, explicit, 2)
    _metrics(plan.tasks[1].run_dir, _cfg(simulation={"solver": "etdrk4"}, seed=5), 2)
    ds = merge_sweep(plan)
    assert ds["status"].values.tolist() == ["done", "foreign"]


def test_read_results_names_a_damaged_file(tmp_path: Path) -> None:
    p = tmp_path / "x.nc"
    p.write_bytes(os.urandom(300))
    with pytest.raises(ResultsFileError, match=f"{p}: cannot read it as netCDF") as err:
        read_results(p)
    assert "\n" not in str(err.value)
    with pytest.raises(ResultsFileError, match="no such results file"):
        read_results(tmp_path / "missing.nc")


# ------------------------------------------------------------------ the atomic writer
def test_atomic_write_replaces_whole_files_and_follows_the_umask(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    atomic_write_text("one", p)
    atomic_write_text("two", p)
    assert p.read_text() == "two" and [q.name for q in tmp_path.iterdir()] == ["a.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_a_failing_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    atomic_write_text("old", p)

    def half(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    with pytest.raises(OSError, match="No space left") as err:
        atomic_write(p, half)
    assert err.value.filename == str(p)  # the target is named, not the temp file
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(KeyboardInterrupt):  # also on an interrupt
        atomic_write(p, lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt))
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]


def test_clean_temp_files_removes_only_the_named_targets_temps(tmp_path: Path) -> None:
    doomed = [tmp_path / ".checkpoint.pt.abc.tmp", tmp_path / ".metrics.nc.x1.tmp"]
    kept = [tmp_path / ".other.txt.abc.tmp", tmp_path / "checkpoint.pt", tmp_path / "a.tmp"]
    for p in doomed + kept:
        p.write_text("x")
    removed = clean_temp_files(tmp_path, ["checkpoint.pt", "metrics.nc"])
    assert sorted(removed) == sorted(doomed)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in doomed)


# ------------------------------------------------------------------ the lock
def test_the_lock_refuses_a_second_holder_and_is_removed(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with hold_lock(lock):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(LockHeldError, match=f"process {os.getpid()} holds its lock"):
            with hold_lock(lock):
                pass
    assert not lock.exists()
    with hold_lock(lock, remove=False):
        pass
    assert lock.exists()
    with hold_lock(lock):  # a stale lock file (its holder gone) is no obstacle
        pass


def test_a_lock_whose_file_was_replaced_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder before us removed the file after we opened it: we must not keep a lock on
    the removed file (another process could lock a fresh file at the same path)."""
    lock = tmp_path / ".lock"
    real_open = os.open
    calls = {"n": 0}

    def racing_open(path: Any, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        calls["n"] += 1
        if calls["n"] == 1:  # the previous holder unlinks right after our open
            os.unlink(path)
        return fd

    monkeypatch.setattr(run_files.os, "open", racing_open)
    with hold_lock(lock):
        assert lock.exists()
        inode = lock.stat().st_ino
    assert calls["n"] >= 2 and inode  # opened again after the race


# ------------------------------------------------------------------ checkpoints
def test_a_checkpoint_round_trips_and_any_change_is_refused(tmp_path: Path) -> None:
    p = tmp_path / CHECKPOINT
    payload = {"w": torch.arange(6.0).reshape(2, 3), "config": "{}", "n": 3}
    digest = write_checkpoint(payload, p)
    got = read_checkpoint(p, required=("w", "config"))
    assert torch.equal(got["w"], payload["w"]) and got["n"] == 3
    data = p.read_bytes()
    assert data.startswith(MAGIC) and digest.encode() in data[:200]
    with pytest.raises(CheckpointError, match="not a neurodfc checkpoint"):
        read_checkpoint(p, required=("w", "system"))
    for i in (len(data) - 1, len(data) // 2, len(data) - 40):  # anywhere in the payload
        bad = bytearray(data)
        bad[i] ^= 0x01
        p.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match="SHA-256 digest"):
            read_checkpoint(p)
    p.write_bytes(data + b"\0")
    with pytest.raises(CheckpointError, match="1 bytes more"):
        read_checkpoint(p)
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(tmp_path / "missing.pt")
