"""Faults of training runs: damaged checkpoints, a held lock, a full disk, a read-only folder,
diverging dynamics, damaged metrics, a kill inside a checkpoint write.

Every fault gives one line naming the file or the setting and what to do, and leaves the last
good checkpoint intact; interrupted runs still resume bit-identical to the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neurodfc.cli import main
from neurodfc.config import ExperimentConfig, to_toml
from neurodfc.runs import files as run_files
from neurodfc.runs.checkpoint import MAGIC, CheckpointError, read_checkpoint
from neurodfc.runs.files import LockHeldError, RunDirError, hold_lock
from neurodfc.runs.folder import CHECKPOINT, LOCK, METRICS
from neurodfc.trainer import DivergedError, NonFiniteError, RunWriteError
from neurodfc.training import train
from tests.helpers import make_config

REPO = Path(__file__).resolve().parents[2]


def _cfg(epochs: int = 1, method: str = "dfc_ssa", learned: bool = False, **training: Any) -> Any:
    """A 6-8-3 teacher-student run of a few batches (a second or two per epoch)."""
    return make_config(
        [6, 8, 3],
        k_p=1.0,
        alpha=0.01,
        lam=0.05,
        reduction="mean",
        fb_init="xavier_normal",
        sim={"dt": 0.02, "steps": 60},
        data={"dataset": "teacher_student", "n_train": 64, "n_val": 16, "n_test": 16},
        method={"name": method, "include_non_converged": True},
        training={"epochs": epochs, "batch_size": 32, "optimizer": "adam", **training},
        feedback={"learned": learned},
        feedback_learning={"pretrain_epochs": 1, "extra_epochs": 0, "steps": 8, "dt": 0.002},
    )


def _quiet(run: Path, cfg: ExperimentConfig, **kw: Any) -> Any:
    return train(cfg, run, quiet=True, log=lambda _: None, **kw)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch run, copied by the tests that damage it."""
    run = tmp_path_factory.mktemp("base") / "run"
    _quiet(run, _cfg(1))
    return run


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = read_checkpoint(run / CHECKPOINT)["system"]
    return state


# ------------------------------------------------------------------ damaged checkpoints
def _flip_a_weight_bit(p: Path) -> None:
    data = bytearray(p.read_bytes())
    w = read_checkpoint(p)["system"]["network.W.0"]
    at = bytes(data).find(w.numpy().tobytes())
    assert at > len(MAGIC)
    data[at + 3] ^= 0x10  # one bit of the first weight's mantissa
    p.write_bytes(bytes(data))


def _foreign(p: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(3)}}, p)


def _folder(p: Path) -> None:
    p.unlink()
    p.mkdir()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "random bytes": (lambda p: p.write_bytes(os.urandom(4096)), "unknown format"),
    "foreign torch file": (_foreign, "not a neurodfc checkpoint"),
    "a folder": (_folder, "a folder"),
    "flipped bit in a weight": (_flip_a_weight_bit, "does not match its SHA-256 digest"),
    "damaged header": (
        lambda p: p.write_bytes(MAGIC + b"{oops\n" + p.read_bytes()[len(MAGIC) :]),
        "header is damaged",
    ),
    "damaged old-style file": (
        lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(500)),
        "cannot be loaded",
    ),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_the_file(
    kind: str, one_epoch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(one_epoch, tmp_path / "run")
    damage, why = DAMAGE[kind]
    damage(run / CHECKPOINT)
    with pytest.raises(CheckpointError, match=why) as err:
        _quiet(run, _cfg(2), resume=True)
    msg = str(err.value)
    assert str(run / CHECKPOINT) in msg and "another --out" in msg and "\n" not in msg
    # the CLI: exit 2, one line on stderr, no traceback
    toml = tmp_path / "c.toml"
    toml.write_text(to_toml(_cfg(2)))
    assert main(["train", str(toml), "--out", str(run), "--resume", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(run / CHECKPOINT) in lines[0], lines


def test_the_flipped_bit_would_change_the_weights(one_epoch: Path, tmp_path: Path) -> None:
    """The bit flipped above lies in a weight: without the digest the run would resume with a
    different W (the failure the digest prevents)."""
    run = _copy(one_epoch, tmp_path / "run")
    p = run / CHECKPOINT
    before = _weights(run)["network.W.0"].clone()
    _flip_a_weight_bit(p)
    payload = p.read_bytes().split(b"\n", 2)[2]
    after = torch.load(io.BytesIO(payload), weights_only=False)["system"]["network.W.0"]
    assert not torch.equal(before, after)
    assert hashlib.sha256(payload).hexdigest() not in p.read_bytes()[:200].decode(errors="ignore")


def test_an_old_checkpoint_without_digest_resumes_with_a_warning(
    tmp_path: Path,
) -> None:
    full = _quiet(tmp_path / "full", _cfg(2))
    run = tmp_path / "old"
    _quiet(run, _cfg(1))
    torch.save(read_checkpoint(run / CHECKPOINT), run / CHECKPOINT)  # the pre-digest format
    said: list[str] = []
    res = train(_cfg(2), run, resume=True, quiet=True, log=said.append)
    assert any("no content digest" in s for s in said)
    for a, b in zip(full.system.network.W, res.system.network.W, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (run / CHECKPOINT).read_bytes().startswith(MAGIC)  # rewritten with a digest


# ------------------------------------------------------------------ lock, temp files
def test_a_second_training_into_a_locked_folder_is_refused(
    one_epoch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(one_epoch, tmp_path / "run")
    with hold_lock(run / LOCK):
        with pytest.raises(LockHeldError, match=f"process {os.getpid()} holds its lock"):
            _quiet(run, _cfg(2), resume=True)
    # a second process holding the lock
    code = f"""
        import sys, time
        from neurodfc.runs.files import hold_lock
        with hold_lock({str(run / LOCK)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        toml = tmp_path / "c.toml"
        toml.write_text(to_toml(_cfg(2)))
        assert main(["train", str(toml), "--out", str(run), "--resume", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"process {child.pid} holds its lock" in err[0], err
    finally:
        child.communicate("", timeout=30)
    assert list(_weights(run)) == list(_weights(one_epoch))
    _quiet(run, _cfg(2), resume=True)  # the holder is gone: the lock is free
    assert not (run / LOCK).exists()


def test_temp_files_of_a_killed_writer_are_removed_at_start(
    one_epoch: Path, tmp_path: Path
) -> None:
    run = _copy(one_epoch, tmp_path / "run")
    stale = [run / ".checkpoint.pt.k2j3h4.tmp", run / ".metrics.nc.a1b2c3.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (run / "notes.txt").write_text("mine")
    _quiet(run, _cfg(2), resume=True)
    assert not any(p.exists() for p in stale)
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt",
        "config.toml",
        "metrics.nc",
        "notes.txt",
    ]


# ------------------------------------------------------------------ full disk, read-only
@pytest.mark.parametrize("at", ["start", "checkpoint"])
@pytest.mark.parametrize(
    ("code", "text"), [(errno.ENOSPC, "No space left"), (errno.EROFS, "Read-only file system")]
)
def test_a_failing_write_keeps_the_previous_checkpoint(
    code: int,
    text: str,
    at: str,
    one_epoch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every write (``start``: config.toml fails first) or only the checkpoint's fails."""
    run = _copy(one_epoch, tmp_path / "run")
    before = (run / CHECKPOINT).read_bytes()
    original = run_files._fsync_file

    def failing(path: Path) -> None:
        if at == "start" or Path(path).name.startswith(f".{CHECKPOINT}."):
            raise OSError(code, os.strerror(code), str(path))
        original(path)

    monkeypatch.setattr(run_files, "_fsync_file", failing)
    with pytest.raises(RunWriteError) as err:
        _quiet(run, _cfg(2), resume=True)
    msg = str(err.value)
    target = run / ("config.toml" if at == "start" else CHECKPOINT)
    assert msg.startswith(f"cannot write {target}: {text}") and "\n" not in msg
    assert f"{run / CHECKPOINT} (0 feedback pre-training and 1 training epochs), is intact" in msg
    assert msg.endswith("with --resume")
    assert (run / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.toml", "metrics.nc"]
    monkeypatch.undo()
    full_run = _quiet(tmp_path / "full", _cfg(2))
    resumed = _quiet(run, _cfg(2), resume=True)
    for a, b in zip(full_run.system.network.W, resumed.system.network.W, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_unwritable_or_file_out_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "run"):  # a file; a folder under a file
        with pytest.raises(ValueError, match=str(afile)) as err:
            _quiet(out, _cfg(1))
        assert "\n" not in str(err.value)
    assert afile.read_text() == "x"

    def denied(path: Path, blocking: bool) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(run_files, "_open_locked", denied)
    with contextlib.suppress(ImportError):  # the CLI's up-front check would refuse first
        from neurodfc import preflight

        monkeypatch.setattr(preflight, "check_output", lambda *a, **k: None)
    with pytest.raises(RunDirError, match="cannot write into .*: Permission denied"):
        _quiet(tmp_path / "ro", _cfg(1))
    assert not (tmp_path / "ro").exists()  # a refused run leaves no folder behind


# ------------------------------------------------------------------ diverging training
def test_diverging_dynamics_stop_with_exit_1_naming_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(to_toml(_cfg(2, method="dfc", learned=True)))
    run = tmp_path / "run"
    argv = ["train", str(toml), "--out", str(run), "--quiet", "--set", "controller.k_p=1e6"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert "64 of 64 samples non-finite" in err[0] and "training.max_bad_fraction = 0.5" in err[0]
    # the checkpoint it names exists (the pre-training epoch) and holds no training epoch
    assert f"last good checkpoint: {run / CHECKPOINT}" in err[0]
    assert read_checkpoint(run / CHECKPOINT)["epochs_done"] == 0
    for t in _weights(run).values():
        assert torch.isfinite(t).all()


def _with_bad_samples(monkeypatch: pytest.MonkeyPatch, bad: int) -> None:
    """DFC's update reports ``bad`` non-finite samples per batch (the rest converged)."""
    from neurodfc.methods.dfc import DFC

    original = DFC.update

    def update(self: DFC, system: Any, x: torch.Tensor, *a: Any, **kw: Any) -> Any:
        up = original(self, system, x, *a, **kw)
        n = x.shape[0]
        up.info.update(n_converged=n - bad, n_diverged=0.0, n_max_steps=0.0, n_nonfinite=bad)
        return up

    monkeypatch.setattr(DFC, "update", update)


@pytest.mark.parametrize(("limit", "stops"), [(0.4, True), (0.6, False)])
def test_max_bad_fraction_is_the_threshold_and_the_epoch_line_counts_non_finite(
    limit: float, stops: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_bad_samples(monkeypatch, bad=16)  # 16 of 32: a fraction of 0.5
    cfg = _cfg(1, method="dfc", max_bad_fraction=limit)
    said: list[str] = []
    if stops:
        with pytest.raises(DivergedError, match="32 of 64 samples non-finite"):
            train(cfg, tmp_path / "r", quiet=True, log=said.append)
        assert not (tmp_path / "r" / CHECKPOINT).exists()
        return
    res = train(cfg, tmp_path / "r", quiet=True, log=said.append)
    assert "converged 32 / diverged 0 / max_steps 0 / nonfinite 32 samples" in said[-1]
    assert float(res.metrics["n_nonfinite"].sum()) == 32


def test_max_bad_fraction_is_validated() -> None:
    from neurodfc.config import ConfigError

    for bad in (1.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="max_bad_fraction"):
            _cfg(1, max_bad_fraction=bad)


def test_a_non_finite_pretraining_names_a_checkpoint_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neurodfc.trainer as trainer_mod

    calls = {"n": 0}
    original = trainer_mod.feedback_gradients

    def poisoned(*a: Any, **kw: Any) -> list[torch.Tensor]:
        grads: list[torch.Tensor] = original(*a, **kw)
        calls["n"] += 1
        return [g * float("nan") for g in grads] if calls["n"] == stop_at else grads

    monkeypatch.setattr(trainer_mod, "feedback_gradients", poisoned)
    cfg = _cfg(1, method="dfc_ssa", learned=True)
    cfg = cfg.model_copy(
        update={
            "feedback_learning": cfg.feedback_learning.model_copy(update={"pretrain_epochs": 2})
        }
    )
    stop_at = 1  # the very first batch: no checkpoint yet
    with pytest.raises(NonFiniteError, match="no checkpoint was written yet"):
        _quiet(tmp_path / "a", cfg)
    calls["n"], stop_at = 0, 3  # pre-training epoch 2 (two batches per epoch)
    with pytest.raises(NonFiniteError) as err:
        _quiet(tmp_path / "b", cfg)
    assert f"last good checkpoint: {tmp_path / 'b' / CHECKPOINT} (1 feedback" in str(err.value)
    assert read_checkpoint(tmp_path / "b" / CHECKPOINT)["pretrain_done"] == 1


def test_non_finite_weights_are_never_saved(
    one_epoch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurodfc.trainer import Trainer

    run = _copy(one_epoch, tmp_path / "run")
    before = (run / CHECKPOINT).read_bytes()
    original = Trainer.forward_pass

    def overflow(self: Trainer, epoch: int) -> dict[str, float]:
        stats = original(self, epoch)
        with torch.no_grad():
            self.system.network.W[0][0, 0] = float("inf")
        return stats

    monkeypatch.setattr(Trainer, "forward_pass", overflow)
    with pytest.raises(NonFiniteError, match="weights network.W.0 became non-finite"):
        _quiet(run, _cfg(2), resume=True)
    assert (run / CHECKPOINT).read_bytes() == before


# ------------------------------------------------------------------ damaged metrics
@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_report_of_a_damaged_metrics_file_is_one_line(
    how: str, one_epoch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(one_epoch, tmp_path / "run")
    nc = run / METRICS
    nc.write_bytes(os.urandom(2000) if how == "garbage" else nc.read_bytes()[:700])
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(nc) in err[0] and "--resume" in err[0], err
    # resuming the finished run writes metrics.nc again from the checkpoint
    _quiet(run, _cfg(1), resume=True)
    assert main(["report", str(run)]) == 0


# ------------------------------------------------------------------ kill -9 while writing
_KILL_IN_WRITE = """
import os, signal, sys
from pathlib import Path
import torch
from neurodfc.config import ExperimentConfig
from neurodfc.runs import files
from neurodfc.training import train

torch.set_num_threads(1)
seen = {"n": 0}
original = files._fsync_file

def die_in_second_checkpoint(path):
    if Path(path).name.startswith(".checkpoint.pt."):
        seen["n"] += 1
        if seen["n"] == 2:  # the temp file of epoch 2 is complete but not renamed yet
            os.kill(os.getpid(), signal.SIGKILL)
    original(path)

files._fsync_file = die_in_second_checkpoint
cfg = ExperimentConfig.model_validate_json(Path(sys.argv[1]).read_text())
train(cfg, sys.argv[2], resume=len(sys.argv) > 3, quiet=True, log=lambda s: None)
"""


def test_kill_inside_a_checkpoint_write_resumes_bit_identical(tmp_path: Path) -> None:
    cfg = _cfg(3)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _KILL_IN_WRITE, str(tmp_path / "cfg.json"), str(run)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert read_checkpoint(run / CHECKPOINT)["epochs_done"] == 1
    assert any(p.name.startswith(".checkpoint.pt.") for p in run.iterdir())  # the torn temp
    resumed = _quiet(run, cfg, resume=True)
    full = _quiet(tmp_path / "full", cfg)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.toml", "metrics.nc"]
    for a, b in zip(full.system.network.W, resumed.system.network.W, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(
        full.metrics["test_loss"].values, resumed.metrics["test_loss"].values
    )


_TRAIN = """
import sys
from pathlib import Path
import torch
from neurodfc.config import ExperimentConfig
from neurodfc.training import train

torch.set_num_threads(1)
cfg = ExperimentConfig.model_validate_json(Path(sys.argv[1]).read_text())
run = Path(sys.argv[2])
train(cfg, run, resume=(run / "checkpoint.pt").exists(), quiet=True, log=lambda s: None)
"""


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """A training killed with SIGKILL at seeded random moments (startup, epochs, checkpoint
    and metrics writes alike) and resumed each time ends with the uninterrupted weights."""
    import random
    import time

    cfg = _cfg(4, method="dfc_ssa", learned=True)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _TRAIN, str(tmp_path / "cfg.json"), str(run)]
    rng = random.Random(1234)
    for _ in range(3):  # three kills at random moments, then the resume below finishes
        proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.0, 12.0))
        if proc.poll() is not None:  # it finished before the kill
            assert proc.returncode == 0, proc.communicate()[1]
            break
        proc.kill()
        proc.wait()
    full = _quiet(tmp_path / "full", cfg)
    resumed = _quiet(run, cfg, resume=True)
    want, got = full.system.state_dict(), resumed.system.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    np.testing.assert_array_equal(
        full.metrics["test_loss"].values, resumed.metrics["test_loss"].values
    )


def test_report_into_an_unwritable_folder_is_one_line(
    one_epoch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["report", str(one_epoch), "--out", str(afile / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write the report into {afile / 'rep'}" in err[0], err


def test_epoch_line_of_a_method_without_status_shows_no_counts(tmp_path: Path) -> None:
    """Strong-DFC simulates but reports no per-sample status: its epoch line must not claim
    'converged 0 / diverged 0 / ...' (issue 13), while a status-reporting method's line does."""
    from neurodfc.config import load_config

    cfg = load_config(
        REPO / "models" / "teacher_student_strong_dfc.toml",
        overrides=[
            "training.epochs=1",
            "feedback_learning.pretrain_epochs=0",
            "data.n_train=32",
            "data.n_val=16",
            "data.n_test=16",
        ],
    )
    said: list[str] = []
    train(cfg, tmp_path / "r", quiet=True, log=said.append)
    epoch_lines = [s for s in said if s.startswith("epoch ")]
    assert epoch_lines and all("converged" not in s for s in epoch_lines)
