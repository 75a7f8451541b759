"""Stacked simulation of several problems (:mod:`neurodfc.solvers.ensemble`): every member's
Solution equals the one its problem gets alone (1e-12), for per-member scalars, noise,
recordings and the sums; the grouping rules (batch key, forward rule, CPU stack size)."""

from __future__ import annotations

import pytest
import torch

from neurodfc.config import config_from_dict
from neurodfc.solve import simulate
from neurodfc.solvers import ensemble as ens
from neurodfc.solvers.base import Problem, get_solver
from neurodfc.system import DFCSystem


class _Capture:
    """A batcher that only keeps the problems it is given."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def solve(self, problem: Problem):  # type: ignore[no-untyped-def]
        self.problems.append(problem)
        return None


def _problems(kw: dict, members: list[dict], B: int = 6) -> list[Problem]:
    cap = _Capture()
    x = torch.rand(B, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) - 0.5
    for k, extra in enumerate(members):
        tree = {
            "network": {"sizes": [4, 5, 3, 2], "hidden_activation": "tanh"},
            "simulation": {
                "solver": "euler_reference",
                "steps": 40,
                "dt": 0.02,
                "record_every": 7,
            },
            "seed": 10 + k,
        }
        for sec, vals in extra.items():
            tree.setdefault(sec, {}).update(vals)
        system = DFCSystem.from_config(config_from_dict(tree))
        system.batcher = cap
        r_target = system.output(x) + 0.05
        gen = torch.Generator().manual_seed(100 + k)
        simulate(system, x, r_target, generator=gen, **kw)
    return cap.problems


def _same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    assert float((a - b).abs().max()) <= 1e-12 * scale, what


def _compare(problems: list[Problem], kw: dict) -> None:
    # the same problems again, solved alone (fresh generators: the noise is drawn again)
    stacked = ens.solve_stacked(problems)
    for k, (p, sol) in enumerate(zip(problems, stacked, strict=True)):
        p.generator = torch.Generator().manual_seed(100 + k)
        alone = get_solver("euler_reference").solve(p)
        _same(sol.r_out, alone.r_out, "r_out")
        _same(sol.u, alone.u, "u")
        for a, b in zip(sol.v_final, alone.v_final, strict=True):
            _same(a, b, "v_final")
        for a, b in zip(sol.v, alone.v, strict=True):
            _same(a, b, "v records")
        assert torch.equal(sol.status, alone.status)
        for acc in ("accumulator", "feedback_accumulator"):
            sa, sb = getattr(sol, acc), getattr(alone, acc)
            assert (sa is None) == (sb is None)
            if sa is not None:
                for a, b in zip([*sa.W, *sa.b], [*sb.W, *sb.b], strict=True):
                    _same(a, b, acc)


@pytest.mark.parametrize(
    "kw",
    [
        {"accumulate": "nonlinear_difference", "record_v": True},
        {"accumulate": "voltage_difference", "record": False},
        {"accumulate": "derivative_matrix", "record": False},
        {"noise": (0.05, 0.02), "accumulate_feedback": True, "record": False},
        {"noise": (0.03, 0.03), "apical_tau": 0.1, "accumulate": "nonlinear_difference"},
    ],
)
def test_stacked_members_equal_their_runs_alone(kw: dict) -> None:
    members = [
        {},
        {"controller": {"k_p": 2.0, "alpha": 0.01}},
        {"controller": {"tau_ratio": 0.3, "k_p": 0.5}},
    ]
    probs = _problems(kw, members)
    keys = {ens.batch_key(p) for p in probs}
    assert len(keys) == 1 and None not in keys
    _compare(probs, kw)


def test_rule_free_problems_ride_along_and_rules_split() -> None:
    a = _problems({"accumulate": "nonlinear_difference", "record": False}, [{}, {}])
    b = _problems({"record": False}, [{}])
    c = _problems({"accumulate": "voltage_difference", "record": False}, [{}])
    probs = [*a, *b, *c]
    out = ens.solve_together(probs)
    assert all(not isinstance(o, BaseException) for o in out)
    stacks = ens._by_rule(probs, list(range(4)))
    assert stacks == [[0, 1, 2], [3]]
    assert out[2].accumulator is None  # it asked for no sums


def test_cpu_stacks_are_cut_to_size(monkeypatch: pytest.MonkeyPatch) -> None:
    probs = _problems({"record": False}, [{}, {}, {}, {}, {}], B=6)
    per_member = 6 * (5 + 3 + 2)
    monkeypatch.setattr(ens, "CPU_STACK_ELEMENTS", 2 * per_member)
    assert ens._split(probs, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3], [4]]
    monkeypatch.setattr(ens, "CPU_STACK_ELEMENTS", per_member - 1)
    assert ens._split(probs, [0, 1, 2]) == [[0], [1], [2]]


def test_unbatchable_problems_have_no_key() -> None:
    (p,) = _problems({"record": False}, [{"simulation": {"solver": "etdrk4"}}])
    assert ens.batch_key(p) is None
    (q,) = _problems({"record": False}, [{"simulation": {"early_stop": True}}])
    assert ens.batch_key(q) is None
