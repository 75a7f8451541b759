"""Behaviour must not change: every golden case recomputed with the current code equals the
corpus recorded from the pristine main (``corpus.npz``, made by ``make_golden.py`` from the
definitions in ``cases.py``) to ``max|a - b| <= 1e-12 * max(1, max|b|)`` per array (float64),
status codes and other integers exactly, NaN and inf at the same places.

See README.md in this folder for when the corpus may be regenerated.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from tests.golden.cases import SEP, Case, all_cases, data_available, digest

CORPUS = Path(__file__).resolve().parent / "corpus.npz"
RTOL = 1e-12
"""``max|a - b| <= RTOL * max(1, max|b|)``."""


@functools.cache
def corpus() -> dict[str, dict[str, np.ndarray]]:
    """The stored arrays by case name, then array name."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(CORPUS, allow_pickle=False) as f:
        for key in f.files:
            case, name = key.split(SEP, 1)
            out.setdefault(case, {})[name] = f[key]
    out.pop("__meta__", None)
    return out


def cases() -> dict[str, Case]:
    """Every case of ``cases.py`` by name."""
    return {c.name: c for c in all_cases()}


def compare(case: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """One line per array of ``got`` that differs from ``want`` beyond the tolerance, naming
    the case, the array, the worst element, both values and the tolerance."""
    problems = [f"{case}: {k} missing from the recomputation" for k in want if k not in got]
    problems += [f"{case}: {k} not in the corpus (regenerate?)" for k in got if k not in want]
    for key in [k for k in want if k in got]:
        a, b = got[key], want[key]
        where = f"{case}: {key}"
        if a.shape != b.shape:
            problems.append(f"{where}: shape {a.shape}, corpus {b.shape}")
            continue
        if b.dtype.kind in "iub" or a.dtype.kind in "iub":
            if a.dtype.kind != b.dtype.kind or not np.array_equal(a, b):
                i = np.unravel_index(np.argmax(a != b), a.shape) if a.shape else ()
                problems.append(
                    f"{where}: integers differ, e.g. at {tuple(map(int, i))}: got "
                    f"{a[i] if a.shape else a}, corpus {b[i] if b.shape else b} (all: "
                    f"{a.ravel()[:16].tolist()} vs {b.ravel()[:16].tolist()})"
                )
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        same_nonfinite = np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True)
        if not same_nonfinite:
            i = np.unravel_index(np.argmax(fa != fb), a.shape) if a.shape else ()
            problems.append(f"{where}: NaN/inf at other places, e.g. {tuple(map(int, i))}")
            continue
        if not fb.any():
            continue
        diff = np.where(fb, np.abs(a - b), 0.0)
        scale = max(1.0, float(np.abs(b[fb]).max()))
        tol = RTOL * scale
        if float(diff.max()) > tol:
            i = np.unravel_index(np.argmax(diff), diff.shape) if diff.shape else ()
            problems.append(
                f"{where}: max|a - b| = {float(diff.max()):.3e} > {tol:.1e} (= {RTOL:g} x "
                f"{scale:.3g}) at {tuple(map(int, i))}: got {float(a[i]):.17g}, corpus "
                f"{float(b[i]):.17g}"
            )
    return problems


def test_corpus_lists_every_case() -> None:
    """The corpus and ``cases.py`` name the same cases (a new case needs a regenerated corpus,
    a removed one must leave it too)."""
    stored, defined = set(corpus()), set(cases())
    assert stored == defined, (
        f"in the corpus only: {sorted(stored - defined)}; defined only: {sorted(defined - stored)}"
    )


def test_compare_catches_a_difference() -> None:
    """The comparison itself flags a relative change of 1e-11, a changed status and a NaN."""
    want = {"x": np.array([1.0, 2.0, 3.0]), "s": np.array([0, 2]), "big": np.array([1e6, 1.0])}
    assert compare("c", dict(want), want) == []
    assert compare("c", want | {"x": np.array([1.0, 2.0, 3.0 + 3e-11])}, want)
    assert compare("c", want | {"x": np.array([1.0, 2.0, 3.0 + 3e-13])}, want) == []
    assert compare("c", want | {"s": np.array([0, 1])}, want)
    assert compare("c", want | {"x": np.array([1.0, np.nan, 3.0])}, want)
    # the tolerance scales with the array's largest element
    assert compare("c", want | {"big": np.array([1e6, 1.0 + 1e-7])}, want) == []
    assert compare("c", want | {"big": np.array([1e6, 1.0 + 1e-5])}, want)


@pytest.mark.parametrize("name", sorted(corpus()) if CORPUS.exists() else [])
def test_golden(name: str) -> None:
    """Case ``name`` recomputed equals the corpus."""
    case = cases().get(name)
    assert case is not None, f"{name} is in the corpus but no longer defined in cases.py"
    if case.needs_data and not data_available():
        pytest.skip("needs the MNIST files (shared data folder not found)")
    problems = compare(name, digest(case.run()), corpus()[name])
    assert not problems, "\n".join(problems)
