"""The linear-response measurement scripts the docs quote still run and say what they measure:
``benchmarks/lr_estimate_survey.py`` (the estimate on random networks) and
``benchmarks/linear_response_accuracy.py`` (the paper's configs). Small sizes: a smoke test of
the scripts, not a measurement."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import lr_estimate_survey as survey  # noqa: E402


def test_survey_rows_set_each_error_against_its_estimate() -> None:
    """Two drawn settings: every row carries both errors, both estimates and the transient,
    and on these (seeded, moderate) draws every error is below its estimate."""
    rng = random.Random(4)
    rows = [row for _ in range(2) for row in survey.measure(survey.draw(rng, 0.05))]
    assert rows
    for row in rows:
        assert row["transient"] >= 0.0
        assert row["update_error"] <= row["estimate"]
        assert row["final_error"] <= row["estimate_final"]
    assert any("transient [" in line for line in survey.summary(rows))


@pytest.mark.parametrize("flags", [[], ["--precise-oracle", "--rtol", "1e-10"]])
def test_accuracy_benchmark_runs_on_a_small_batch(flags: list[str]) -> None:
    """Fig. 3's config, 4 samples, continuous: one JSON line with the update's error against
    the oracle, the estimates and the fallback fraction; ``--precise-oracle`` says so."""
    script = REPO / "benchmarks" / "linear_response_accuracy.py"
    config = REPO / "models" / "fig3_dfc.toml"
    cmd = [sys.executable, str(script), str(config), "--batch", "4", "--order", "2", *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["precise_oracle"] is bool(flags)
    assert 0.0 < res["dfc_update_rel_error"] < 1e-3
    assert res["estimate_max"] >= res["estimate_median"] > 0.0
    assert 0.0 <= res["fallback_fraction_at_1e-6"] <= 1.0


def test_precise_oracle_refuses_the_reference_discretisation() -> None:
    """The precise oracle is an ETDRK4 one: asked for the reference scheme's discretisation,
    the script stops with a one-line usage error before computing anything."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "linear_response_accuracy.py"),
           str(REPO / "models" / "fig3_dfc.toml"), "--precise-oracle",
           "--discretisation", "reference_euler"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert "--precise-oracle" in out.stderr.strip().splitlines()[-1]
