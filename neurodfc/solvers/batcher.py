"""The meeting point of an ensemble's members: each member trains in its own thread; its
simulations (:func:`neurodfc.solve.simulate`) wait here until every member still training has
one, and then all are solved together (:func:`neurodfc.solvers.ensemble.solve_together`:
compatible ones as one batched system).

The members therefore advance in lockstep from one simulation to the next; everything between
two simulations (the optimiser steps, the evaluation, the checkpoints) runs in the members' own
threads, unchanged. A member that stops (finished, or stopped by a fault) leaves, and the
others go on without it.
"""

from __future__ import annotations

import itertools
import threading

from neurodfc.core.solution import Solution
from neurodfc.solvers.base import Problem
from neurodfc.solvers.ensemble import solve_together


class EnsembleAborted(RuntimeError):
    """The ensemble was interrupted; the member stops at its simulation."""


class SimulationBatcher:
    """Collects the members' problems and solves them together (see the module docstring).

    Args:
        members: the number of members that will train (each calls :meth:`leave` when it
            stops).
        workers: threads that solve independent groups of problems at the same time (see
            :func:`~neurodfc.solvers.ensemble.solve_together`).
    """

    def __init__(self, members: int, workers: int = 1) -> None:
        self.workers = workers
        self._cv = threading.Condition()
        self._live = members
        self._ids = itertools.count()
        self._pending: dict[int, Problem] = {}
        self._done: dict[int, Solution | BaseException] = {}
        self._aborted = False
        self.rounds = 0
        """How many times problems were solved together (for tests and benchmarks)."""

    def solve(self, problem: Problem) -> Solution:
        """Wait until every live member has a problem, solve them together, return this one's.

        Args:
            problem: the calling member's problem.

        Raises:
            EnsembleAborted: :meth:`abort` was called.
        """
        with self._cv:
            if self._aborted:
                raise EnsembleAborted("the ensemble was interrupted")
            key = next(self._ids)
            self._pending[key] = problem
            self._run_if_complete()
            while key not in self._done:
                if self._aborted:
                    self._pending.pop(key, None)
                    raise EnsembleAborted("the ensemble was interrupted")
                self._cv.wait()
            result = self._done.pop(key)
        if isinstance(result, BaseException):
            raise result
        return result

    def leave(self) -> None:
        """A member stopped: the others no longer wait for it."""
        with self._cv:
            self._live -= 1
            self._run_if_complete()

    def abort(self) -> None:
        """Stop every waiting member (and every later simulation) with :class:`EnsembleAborted`."""
        with self._cv:
            self._aborted = True
            self._cv.notify_all()

    def _run_if_complete(self) -> None:
        """Under the lock: when every live member waits, solve all pending problems."""
        if not self._pending or len(self._pending) < self._live:
            return
        items = list(self._pending.items())
        self._pending.clear()
        results = solve_together([p for _, p in items], self.workers)
        for (key, _), res in zip(items, results, strict=True):
            self._done[key] = res
        self.rounds += 1
        self._cv.notify_all()
