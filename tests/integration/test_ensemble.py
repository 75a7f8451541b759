"""Ensembles: each member equals the same run trained alone (float64, reference scheme,
within 1e-12 of the weights' size after two epochs), with per-member scalars, seeds, noise and
learned feedback; a diverging member stops alone; an interrupted ensemble resumes exactly;
members that cannot be batched (ETDRK4) are solved one by one and still equal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurodfc.config import load_config
from neurodfc.ensemble import train_ensemble
from neurodfc.solvers import ensemble as batched
from neurodfc.trainer import DivergedError, NonFiniteError
from neurodfc.training import load_run, train

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "data.n_train=48",
    "data.n_val=16",
    "data.n_test=16",
    "training.batch_size=16",
    "training.epochs=2",
    "simulation.steps=60",
    "feedback_learning.pretrain_epochs=1",
    "feedback_learning.extra_epochs=1",
    "feedback_learning.steps=20",
    "analysis.log_interval=0",
]


def _cfg(name: str, *extra: str):
    return load_config(ROOT / "models" / f"{name}.toml", [*SMALL, *extra])


def _assert_same_run(a: Path, b: Path) -> None:
    """Weights, feedback weights and every logged metric of two run folders agree."""
    ra, rb = load_run(a), load_run(b)
    sa, sb = ra.system.state_dict(), rb.system.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        scale = max(1.0, float(sb[k].abs().max()))
        assert float((sa[k] - sb[k]).abs().max()) <= 1e-12 * scale, k
    for var in rb.metrics.data_vars:
        if var == "wall_time":
            continue
        va, vb = ra.metrics[var].values, rb.metrics[var].values
        assert va.shape == vb.shape, var
        assert ((abs(va - vb) <= 1e-12 * (1 + abs(vb))) | ((va != va) & (vb != vb))).all(), var


@pytest.fixture
def stacked_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the member count of every batched simulation."""
    calls: list[int] = []
    real = batched.solve_stacked

    def spy(problems):  # type: ignore[no-untyped-def]
        calls.append(len(problems))
        return real(problems)

    monkeypatch.setattr(batched, "solve_stacked", spy)
    return calls


def test_members_equal_separate_runs(tmp_path: Path, stacked_calls: list[int]) -> None:
    """DFC with learned feedback (sleep phase with noise): members differing in seed, k_p,
    alpha, tau ratio, lambda, learning rate and sleep noise equal their runs alone."""
    cfgs = [
        _cfg("fig3_dfc"),
        _cfg("fig3_dfc", "seed=7", "controller.k_p=2.0", "controller.alpha=0.003"),
        _cfg("fig3_dfc", "seed=3", "controller.tau_ratio=0.3", "loss.lam=0.03"),
        _cfg("fig3_dfc", "seed=5", "training.lr=0.02", "feedback_learning.sigma=0.02"),
    ]
    res = train_ensemble(cfgs, tmp_path / "ens", log=lambda line: None)
    assert res.ok, res.errors
    assert stacked_calls and max(stacked_calls) == len(cfgs)  # really batched
    for k, cfg in enumerate(cfgs):
        alone = tmp_path / f"alone_{k}"
        train(cfg, alone, quiet=True, log=lambda line: None)
        _assert_same_run(res.paths[k], alone)


def test_mixed_methods_and_fixed_feedback(tmp_path: Path) -> None:
    """DFC-SS, fixed-feedback DFC and DFC-SSA in one ensemble (batched where they can be),
    independent groups solved by two threads."""
    cfgs = [
        _cfg("fig3_dfc_ss"),
        _cfg("fig3_dfc_ss", "seed=12"),
        _cfg("fig3_fixed_dfc"),
        _cfg("fig3_fixed_dfc", "seed=9"),
        _cfg("fig3_dfc_ssa"),
    ]
    res = train_ensemble(cfgs, tmp_path / "ens", log=lambda line: None, workers=2)
    assert res.ok, res.errors
    for k, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"alone_{k}", quiet=True, log=lambda line: None)
        _assert_same_run(res.paths[k], tmp_path / f"alone_{k}")


def test_diverging_member_stops_alone(tmp_path: Path) -> None:
    """A member whose dynamics diverge is stopped and reported; the others finish unchanged."""
    good = [_cfg("fig3_fixed_dfc"), _cfg("fig3_fixed_dfc", "seed=11")]
    bad = _cfg("fig3_fixed_dfc", "controller.k_p=1e6", "seed=2")
    res = train_ensemble([good[0], bad, good[1]], tmp_path / "ens", log=lambda line: None)
    assert res.errors[0] is None and res.errors[2] is None
    assert isinstance(res.errors[1], (DivergedError, NonFiniteError))
    assert res.runs[1] is None
    for k, cfg in zip((0, 2), good, strict=True):
        train(cfg, tmp_path / f"alone_{k}", quiet=True, log=lambda line: None)
        _assert_same_run(res.paths[k], tmp_path / f"alone_{k}")
    # the stopped member's weights are never non-finite (it may have no checkpoint at all)
    ckpt = res.paths[1] / "checkpoint.pt"
    if ckpt.exists():
        state = load_run(res.paths[1]).system.state_dict()
        assert all(bool(torch.isfinite(t).all()) for t in state.values())


def test_interrupted_ensemble_resumes_exactly(tmp_path: Path) -> None:
    """One epoch, then resumed to two, equals two epochs in one go."""
    two = [_cfg("fig3_dfc"), _cfg("fig3_dfc", "seed=4", "controller.k_p=1.0")]
    one = [
        c.model_copy(update={"training": c.training.model_copy(update={"epochs": 1})}) for c in two
    ]
    first = train_ensemble(one, tmp_path / "ens", log=lambda line: None)
    assert first.ok, first.errors
    resumed = train_ensemble(two, tmp_path / "ens", resume=True, log=lambda line: None)
    assert resumed.ok, resumed.errors
    whole = train_ensemble(two, tmp_path / "whole", log=lambda line: None)
    for a, b in zip(resumed.paths, whole.paths, strict=True):
        _assert_same_run(a, b)


def test_unbatchable_members_are_solved_alone(tmp_path: Path, stacked_calls: list[int]) -> None:
    """ETDRK4 members (adaptive steps) are simulated one by one inside the ensemble and equal
    their runs alone."""
    cfgs = [
        _cfg("fig3_fixed_dfc", "simulation.solver=etdrk4", "training.epochs=1"),
        _cfg("fig3_fixed_dfc", "simulation.solver=etdrk4", "training.epochs=1", "seed=8"),
    ]
    res = train_ensemble(cfgs, tmp_path / "ens", log=lambda line: None)
    assert res.ok, res.errors
    assert stacked_calls == []
    for k, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"alone_{k}", quiet=True, log=lambda line: None)
        _assert_same_run(res.paths[k], tmp_path / f"alone_{k}")


def test_folder_count_must_match(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 configs but 1 run folders"):
        train_ensemble([_cfg("fig3_dfc"), _cfg("fig3_dfc")], [tmp_path / "a"])


_KILL_ENSEMBLE = """
import os, signal, sys
from pathlib import Path
import torch
from neurodfc.config import ExperimentConfig
from neurodfc.ensemble import train_ensemble
from neurodfc.runs import files

torch.set_num_threads(1)
seen = {"n": 0}
original = files._fsync_file

def die_in_member_1s_second_checkpoint(path):
    p = Path(path)
    if p.name.startswith(".checkpoint.pt.") and p.parent.name == "member_001":
        seen["n"] += 1
        if seen["n"] == 2:  # its epoch-2 temp file is complete but not renamed yet
            os.kill(os.getpid(), signal.SIGKILL)
    original(path)

files._fsync_file = die_in_member_1s_second_checkpoint
cfgs = [ExperimentConfig.model_validate_json(t) for t in Path(sys.argv[1]).read_text().split("\\n")]
train_ensemble(cfgs, sys.argv[2], log=lambda s: None)
"""


def test_killed_ensemble_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """SIGKILL inside a member's checkpoint write (the other member anywhere in its epoch):
    the ensemble resumed from the members' own checkpoints ends where an uninterrupted one
    does."""
    import os
    import signal
    import subprocess
    import sys

    cfgs = [
        _cfg("fig3_fixed_dfc", "training.epochs=3"),
        _cfg("fig3_fixed_dfc", "training.epochs=3", "seed=21", "controller.k_p=1.2"),
    ]
    (tmp_path / "cfgs.txt").write_text("\n".join(c.model_dump_json() for c in cfgs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    ens = tmp_path / "ens"
    args = [sys.executable, "-c", _KILL_ENSEMBLE, str(tmp_path / "cfgs.txt"), str(ens)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert any(p.name.startswith(".checkpoint.pt.") for p in (ens / "member_001").iterdir())
    resumed = train_ensemble(cfgs, ens, resume=True, log=lambda line: None)
    assert resumed.ok, resumed.errors
    whole = train_ensemble(cfgs, tmp_path / "whole", log=lambda line: None)
    for a, b in zip(resumed.paths, whole.paths, strict=True):
        _assert_same_run(a, b)
        assert sorted(p.name for p in a.iterdir() if not p.name.startswith(".neurodfc")) == [
            "checkpoint.pt",
            "config.toml",
            "metrics.nc",
        ]
