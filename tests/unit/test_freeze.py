"""The per-sample freezing shared by ETDRK4 and torchdiffeq (:mod:`neurodfc.core.freeze`),
against hand-computed limits and marks."""

from __future__ import annotations

import torch

from neurodfc.core.freeze import Freezer, freeze_limit


def test_the_limit_is_the_larger_of_the_ratio_and_the_grown_initial_ratio() -> None:
    r_ff = torch.tensor([[3.0, 4.0], [3.0, 4.0]], dtype=torch.float64)  # |r_L^-| = 5
    delta = torch.tensor([[0.0, 0.5], [30.0, 40.0]], dtype=torch.float64)  # ratios 0.1, 10
    lim = freeze_limit(r_ff, delta, ratio=2.0, growth=100.0)
    # sample 0: max(100 * 0.1, 2) * 5 = 50 ; sample 1: max(100 * 10, 2) * 5 = 5000
    torch.testing.assert_close(lim, torch.tensor([50.0, 5000.0], dtype=torch.float64))
    lim = freeze_limit(r_ff, delta, ratio=1e4, growth=100.0)
    torch.testing.assert_close(lim, torch.tensor([5e4, 5e4], dtype=torch.float64))


def test_marks_accumulate_and_only_new_samples_count() -> None:
    f = Freezer(torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))
    assert f.dead_or_none() is None and f.overflowed_or_none() is None
    assert f.mark(torch.tensor([False, True, False]), True)
    assert not f.mark(torch.tensor([False, True, False]), False)  # already frozen
    e = torch.tensor([[0.6, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    u = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    # |e - 0.5 u| = 0.4, 0, 5 against the limit 1: sample 2 diverged (not overflowed)
    f.divergence(e, u, 0.5)
    assert f.any_dead
    assert f.dead.tolist() == [False, True, True]
    assert f.overflowed.tolist() == [False, True, False]
    f.divergence(e, u, 0.0)  # |e| = 0.6 < 1: sample 0 stays
    assert f.dead.tolist() == [False, True, True]
