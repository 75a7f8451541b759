"""Replayed periods of the fused loop (:mod:`neurodfc.fastpath.graphs`): the period
decomposition (plain head, captured period, replays, plain tail, the control copied back into
its buffer) equals the plain loop bitwise, for one network and a stacked ensemble, with and
without sums; the plan refuses what a graph cannot replay. On CUDA the real CUDA graphs are
checked against the plain loop on the same device."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from neurodfc.fastpath import FusedSettings, run_fused
from neurodfc.fastpath.graphs import (
    GRAPH_STEPS,
    CudaGraphs,
    EagerGraphs,
    GraphPlan,
    graph_plan,
)
from neurodfc.fastpath.stack import StackedNetwork
from tests.helpers import make_system, random_batch


class CountingGraphs(EagerGraphs):
    """Eager stand-in that counts captures and replays."""

    def __init__(self) -> None:
        self.captures = 0
        self.replays = 0

    def capture(self, body):  # type: ignore[no-untyped-def]
        self.captures += 1

        def replay() -> None:
            self.replays += 1
            body()

        return replay


def _settings(T: int, rule: str | None, chunk: int, **kw: Any) -> FusedSettings:
    return FusedSettings(
        dt=0.01,
        n_steps=T,
        alpha=0.02,
        k_p=kw.pop("k_p", 1.0),
        tau_ratio=0.2,
        leak="reference",
        inst_transmission=kw.pop("inst_transmission", True),
        proactive_controller=kw.pop("proactive_controller", True),
        inst_system_dynamics=False,
        record_steps=(0, T - 1),
        accumulate=rule,
        chunk=chunk,
        **kw,
    )


def _equal(a: Any, b: Any) -> None:
    for name in ("v", "r", "vb", "acc_W", "acc_b", "acc_Q"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            assert torch.equal(x, y), name
    for name in ("u", "u_int", "r_rec", "u_rec", "e_rec"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.steps_run == b.steps_run


@pytest.mark.parametrize(
    ("T", "rule", "chunk", "flags"),
    [
        (157, "nonlinear_difference", 8, {}),
        (100, "nonlinear_difference", 16, {"inst_transmission": False}),
        (203, "voltage_difference", 4, {"proactive_controller": False, "apical_tau": 0.05}),
        (120, None, 16, {}),  # no sums: one slot, periods of GRAPH_STEPS
        (90, None, 16, {"accumulate_feedback": True}),
    ],
)
def test_replayed_periods_equal_the_plain_loop(
    T: int, rule: str | None, chunk: int, flags: dict[str, Any]
) -> None:
    system = make_system([5, 7, 6, 4], k_p=1.0, alpha=0.02, seed=3)
    x, y = random_batch(system, 6, seed=2)
    rt = system.target(x, y)
    cfg = _settings(T, rule, chunk, **flags)
    plain = run_fused(system.network, x, rt, cfg)
    graphs = CountingGraphs()
    replayed = run_fused(system.network, x, rt, cfg, graphs=graphs)
    plan = graph_plan(T, cfg.slots, cfg.record_steps, eligible=True)
    assert plan is not None and graphs.captures == 1 and graphs.replays == plan.replays >= 2
    _equal(replayed, plain)


def test_replayed_periods_of_a_stacked_ensemble_equal_the_plain_loop() -> None:
    systems = [make_system([4, 6, 5, 3], k_p=1.0, alpha=0.02, seed=s) for s in (1, 2, 3)]
    x, y = random_batch(systems[0], 5, seed=4)
    xs = torch.stack([x] * 3)
    rts = torch.stack([s.target(x, y) for s in systems])
    net = StackedNetwork([s.network for s in systems])
    k_p = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64).reshape(3, 1, 1)
    cfg = _settings(140, "nonlinear_difference", 16, k_p=k_p)
    plain = run_fused(net, xs, rts, cfg)
    graphs = CountingGraphs()
    _equal(run_fused(net, xs, rts, cfg, graphs=graphs), plain)
    assert graphs.replays > 0


def test_the_plan_replays_only_what_a_graph_can_repeat() -> None:
    # sums with chunk 16: a head of 32 steps (to the first chunk end, then one period)
    assert graph_plan(1000, 17, [0, 999], eligible=True) == GraphPlan(32, 16, 60)
    # no sums: periods of GRAPH_STEPS
    p = graph_plan(1000, 1, [0, 999], eligible=True)
    assert p is not None and p.period == GRAPH_STEPS and p.head == GRAPH_STEPS
    # at least one plain step after the replays (it carries the final record)
    for T in range(40, 120):
        q = graph_plan(T, 9, [0, T - 1], eligible=True)
        assert q is None or q.end <= T - 2
    # a record inside the replayed steps, too few periods, or an ineligible run: plain loop
    assert graph_plan(1000, 17, [0, 500, 999], eligible=True) is None
    assert graph_plan(60, 17, [0, 59], eligible=True) is None
    assert graph_plan(1000, 17, [0, 999], eligible=False) is None


def test_noisy_and_early_stopping_runs_take_the_plain_loop() -> None:
    system = make_system([5, 7, 6, 4], k_p=1.0, alpha=0.02, seed=3)
    x, y = random_batch(system, 6, seed=2)
    rt = system.target(x, y)
    graphs = CountingGraphs()
    cfg = _settings(200, None, 16, noise=(0.01, 0.01))
    run_fused(system.network, x, rt, cfg, generator=torch.Generator().manual_seed(0), graphs=graphs)
    assert graphs.captures == 0
    cfg = _settings(200, "nonlinear_difference", 16, early_stop=True)
    ok = torch.ones(6, dtype=torch.bool)
    run_fused(system.network, x, rt, cfg, converged=lambda r, u, ui: ok, graphs=graphs)
    assert graphs.captures == 0
    run_fused(system.network, x, rt, _settings(200, None, 16, cuda_graphs=False), graphs=graphs)
    assert graphs.captures == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_equal_the_plain_loop_on_the_device() -> None:
    system = make_system([5, 7, 6, 4], k_p=1.0, alpha=0.02, seed=3)
    x, y = random_batch(system, 64, seed=2)
    rt = system.target(x, y)
    dev = torch.device("cuda")
    net = system.network.to(dev)
    x, rt = x.to(dev), rt.to(dev)
    for rule in ("nonlinear_difference", None):
        plain = run_fused(net, x, rt, _settings(500, rule, 16, cuda_graphs=False))
        runner = CudaGraphs(dev)
        graphed = run_fused(net, x, rt, _settings(500, rule, 16), graphs=runner)
        assert runner.graph is not None  # the capture happened
        default = run_fused(net, x, rt, _settings(500, rule, 16))  # graphs chosen by itself
        for run in (graphed, default):
            got = [run.u, *run.v, *run.acc_W]
            want = [plain.u, *plain.v, *plain.acc_W]
            for a, b in zip(got, want, strict=True):
                scale = max(1.0, float(b.abs().max()))
                assert float((a - b).abs().max()) <= 1e-12 * scale
