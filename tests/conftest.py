"""Shared fixtures: data folder, small systems, deterministic hypothesis settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Two pytest-xdist workers on two cores: one torch thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$NEURODFC_TEST_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("NEURODFC_TEST_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


# Subprocesses and dask workers started by tests inherit this (tests never download).
if shared_data_dir() is not None:
    os.environ.setdefault("NEURODFC_DATA", str(shared_data_dir()))
# Tests never download: a download attempt fails loudly (subprocesses inherit this too).
os.environ["NEURODFC_NO_DOWNLOAD"] = "1"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding mnist/ and fashion-mnist/ IDX files (skips if absent)."""
    p = shared_data_dir()
    if p is None:
        pytest.skip("shared data folder not found (set NEURODFC_TEST_DATA)")
    return p


@pytest.fixture(autouse=True)
def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the internet: the data loaders find ../shared/data first."""
    p = shared_data_dir()
    if p is not None:
        monkeypatch.setenv("NEURODFC_DATA", str(p))
