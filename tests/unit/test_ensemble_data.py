"""Data sharing inside an ensemble: members whose data would be equal load it once (the
teacher-student set is drawn from ``data.teacher_seed``, not the run's seed), members whose data
differ (MNIST validation splits follow the run's seed) each load their own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import neurodfc.ensemble as ens
from neurodfc.config import config_from_dict
from neurodfc.experiment import data_seed, load_data

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _teacher(seed: int, teacher_seed: int = 0):  # type: ignore[no-untyped-def]
    return config_from_dict(
        {
            "seed": seed,
            "network": {"sizes": [15, 4, 5]},
            "method": {"name": "bp"},
            "training": {"epochs": 1, "batch_size": 8},
            "analysis": {"log_interval": 0},
            "data": {
                "dataset": "teacher_student",
                "n_train": 16,
                "n_val": 8,
                "n_test": 8,
                "teacher_seed": teacher_seed,
            },
        }
    )


def _mnist(seed: int):  # type: ignore[no-untyped-def]
    return config_from_dict(
        {
            "seed": seed,
            "network": {"sizes": [784, 4, 10]},
            "loss": {"loss": "cross_entropy"},
            "data": {
                "dataset": "mnist",
                "data_dir": str(SHARED),
                "val_size": 50,
                "max_train_samples": 200,
                "max_test_samples": 10,
            },
        }
    )


def test_teacher_student_data_do_not_depend_on_the_run_seed() -> None:
    a, b = load_data(_teacher(1)), load_data(_teacher(2))
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)
    assert data_seed(_teacher(1)) == data_seed(_teacher(2)) == 0
    assert ens._data_key(_teacher(1)) == ens._data_key(_teacher(2))
    # a different teacher: different data, different key
    c = load_data(_teacher(1, teacher_seed=5))
    assert not torch.equal(a.train.y, c.train.y)
    assert ens._data_key(_teacher(1)) != ens._data_key(_teacher(1, teacher_seed=5))


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_mnist_validation_split_follows_the_run_seed() -> None:
    a, b = load_data(_mnist(1)), load_data(_mnist(2))
    assert not torch.equal(a.val.x, b.val.x)
    assert data_seed(_mnist(1)) == 1
    assert ens._data_key(_mnist(1)) != ens._data_key(_mnist(2))


def test_an_ensemble_of_seeds_loads_the_teacher_student_data_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = ens.load_data

    def counting(cfg):  # type: ignore[no-untyped-def]
        calls.append(cfg.seed)
        return real(cfg)

    monkeypatch.setattr(ens, "load_data", counting)
    res = ens.train_ensemble([_teacher(1), _teacher(2), _teacher(3)], tmp_path)
    assert res.ok
    assert len(calls) == 1
