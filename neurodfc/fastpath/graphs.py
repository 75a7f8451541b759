"""Chunks of the fused Euler loop replayed as CUDA graphs (issue 14).

On a GPU a small network's step is a few dozen tiny kernels, so its time is the launch
overhead. A CUDA graph records the kernels of a fixed sequence of steps once and replays them
with one launch. The fused loop qualifies between its chunk ends: every period of steps from
one chunk end to the next issues the same kernels on the same buffers (the rate slots roll back
to slot 0 at each chunk end), as long as nothing in it depends on the values (no early-stop
test), draws random numbers (no noise), or is recorded.

:func:`graph_plan` says which steps a run may replay (a head of plain steps that ends at a
chunk end and includes one full period, then whole periods, then at least one plain step that
carries the final record); :func:`run_with_graphs` runs the head, captures one period and
replays it. What a capture means is a :class:`GraphRunner`: :class:`CudaGraphs` on a CUDA
device, :class:`EagerGraphs` (a replay is a plain call of the period) everywhere else, which is
how the CPU tests check the period decomposition against the plain loop. A capture that fails
falls back to the plain loop from the same state (nothing ran during the capture).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch

GRAPH_STEPS = 16
"""Steps per captured period when the run has no sums (one rate slot, no chunk ends)."""
MIN_REPLAYS = 2
"""Fewer whole periods than this are run plainly (a capture costs about a period)."""


@dataclass(frozen=True)
class GraphPlan:
    """Which steps of a run are replayed: ``head`` plain steps, then ``replays`` times a period
    of ``period`` steps, then the rest plainly."""

    head: int
    """Plain steps first (up to a chunk end, one period included: the warm-up)."""
    period: int
    """Steps per captured period (from one chunk end to the next)."""
    replays: int
    """Whole periods replayed."""

    @property
    def end(self) -> int:
        """Steps done after the last replay."""
        return self.head + self.replays * self.period


def graph_plan(
    n_steps: int, slots: int, record_steps: Iterable[int], *, eligible: bool
) -> GraphPlan | None:
    """The replay plan of a run of ``n_steps`` time points (None: the plain loop).

    Args:
        n_steps: time points of the run (``n_steps - 1`` steps).
        slots: rate slots of the run (``chunk + 1`` with sums, else 1).
        record_steps: the recorded time points (none may fall in the replayed steps).
        eligible: whether nothing in a step depends on values or draws noise (no early stop,
            no noise, no stateful feedback filter) and graphs are wanted.

    Examples:
        >>> graph_plan(1000, 17, [0, 999], eligible=True)
        GraphPlan(head=32, period=16, replays=60)
        >>> graph_plan(1000, 17, [0, 500, 999], eligible=True) is None
        True
    """
    if not eligible:
        return None
    period = slots - 1 if slots > 1 else GRAPH_STEPS
    head = (slots - 1 if slots > 1 else 0) + period
    replays = (n_steps - 2 - head) // period  # at least one plain step after the replays
    if replays < MIN_REPLAYS:
        return None
    plan = GraphPlan(head=head, period=period, replays=replays)
    if any(head < r <= plan.end for r in record_steps):
        return None
    return plan


class GraphRunner(Protocol):
    """How the head runs and how a period is captured and replayed."""

    def warm_up(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (the head's plain steps) where the capture will need it warmed up.

        Args:
            fn: the plain steps.
        """

    def capture(self, body: Callable[[], None]) -> Callable[[], None]:
        """A replay of ``body`` (one period). A CUDA capture does not execute ``body``.

        Args:
            body: the period's steps.
        """


class EagerGraphs:
    """The stand-in off CUDA: the head runs as it is and a replay calls the period again."""

    def warm_up(self, fn: Callable[[], None]) -> None:
        """Run ``fn``.

        Args:
            fn: the plain steps.
        """
        fn()

    def capture(self, body: Callable[[], None]) -> Callable[[], None]:
        """``body`` itself (nothing runs now).

        Args:
            body: the period's steps.
        """
        return body


class CudaGraphs:
    """CUDA graphs on ``device``: the head runs on a side stream (cuBLAS and the allocator are
    initialised there before the capture), the period is captured once and replayed.

    Args:
        device: the CUDA device of the run.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.graph: torch.cuda.CUDAGraph | None = None

    def warm_up(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a side stream.

        Args:
            fn: the plain steps.
        """
        side = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            fn()
        main.wait_stream(side)

    def capture(self, body: Callable[[], None]) -> Callable[[], None]:
        """Capture ``body`` into a CUDA graph (kept alive by this runner) and return its replay.

        Args:
            body: the period's steps.
        """
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (an ensemble's members) are not part of this capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            body()
        self.graph = graph
        return graph.replay


class SteppedLoop(Protocol):
    """What :func:`run_with_graphs` needs of the fused loop."""

    s: int
    """Rate slot of the current state."""
    steps_done: int
    """Steps done."""

    def step(self, t: int) -> bool:
        """Step ``t -> t+1``.

        Args:
            t: the current time index.
        """

    @property
    def u(self) -> torch.Tensor:
        """The current control (rebound by every step)."""

    @u.setter
    def u(self, value: torch.Tensor) -> None: ...


def run_with_graphs(loop: SteppedLoop, plan: GraphPlan, runner: GraphRunner) -> int:
    """Run the head plainly, capture one period and replay it ``plan.replays`` times.

    A step rebinds the control to a new tensor; the period ends by copying it into the tensor
    it started from, so that every replay starts from the same buffers.

    Args:
        loop: the fused loop at time 0.
        plan: the replay plan.
        runner: how to warm up, capture and replay.

    Returns:
        The next time index for the plain loop (``plan.end``, or ``plan.head`` when the capture
        failed and the plain loop takes over).
    """

    def head() -> None:
        for t in range(plan.head):
            loop.step(t)

    runner.warm_up(head)
    s0, home = loop.s, loop.u

    def period() -> None:
        for j in range(plan.period):
            loop.step(plan.head + j)
        home.copy_(loop.u)
        loop.u = home

    try:
        replay = runner.capture(period)
    except RuntimeError:  # pragma: no cover (CUDA only: the plain loop goes on from here)
        loop.s, loop.steps_done, loop.u = s0, plan.head, home
        return plan.head
    for _ in range(plan.replays):
        replay()
    loop.s, loop.steps_done, loop.u = s0, plan.end, home
    return plan.end
