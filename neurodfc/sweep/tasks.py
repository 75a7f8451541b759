"""The task of a sweep: one training in a worker, under the run's lock.

A task is plain data (:class:`TaskSpec`); :func:`run_task` trains it with
:func:`neurodfc.training.train` and ``resume=True``, so a finished run is skipped and an
interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from neurodfc.config import ExperimentConfig
from neurodfc.runs.files import hold_lock
from neurodfc.runs.folder import run_finished

__all__ = ["TaskOutcome", "TaskSpec", "TaskStatus", "run_finished", "run_task"]

TaskStatus = Literal["done", "skipped", "failed"]
"""Outcome of a task: trained now, skipped (already finished) or failed."""


@dataclass(frozen=True)
class TaskSpec:
    """What a worker needs to run one task (plain data, cheap to send)."""

    name: str
    config_json: str
    run_dir: str
    log_path: str
    torch_threads: int = 1


@dataclass
class TaskOutcome:
    """The result of one task."""

    name: str
    status: TaskStatus
    error: str | None = None
    wall_s: float = 0.0
    epochs_done: int = 0
    details: str = ""
    """The traceback of a failure (also in the task's log file)."""


class _TaskLog:
    """Appends timestamped lines to a task's log file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def __call__(self, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a") as fh:
            fh.write(f"{stamp} [pid {os.getpid()}] {msg}\n")


def _transient_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (MemoryError, torch.OutOfMemoryError)


def run_task(spec: TaskSpec) -> TaskOutcome:
    """Train one run in a worker (``resume=True``) with ``spec.torch_threads`` torch threads.

    A finished run is skipped. An exception is caught, logged and returned as a ``failed``
    outcome (not retried: training is deterministic); only out-of-memory errors propagate so
    that dask's ``retries`` can run the task again. The task waits for the lock
    ``logs/<task>.lock``: a task of an earlier, cancelled sweep that still runs on an external
    cluster finishes before a new task touches the same folder (the OS drops the lock when a
    worker process dies).

    Args:
        spec: the task.
    """
    import torch

    torch.set_num_threads(max(1, spec.torch_threads))
    log = _TaskLog(Path(spec.log_path))
    with (
        _no_worker_client(),
        hold_lock(Path(spec.log_path).with_suffix(".lock"), blocking=True, remove=False),
    ):
        return _run_locked(spec, log)


@contextlib.contextmanager
def _no_worker_client() -> Iterator[None]:
    """Keep dask's own scheduler out of the task: in a worker, xarray's netCDF writer asks dask
    for the scheduler, which opens a client back to the cluster; that client is torn down with
    a traceback when the sweep is interrupted. The task computes nothing with dask."""
    try:
        import dask
    except ImportError:  # pragma: no cover (run_task called without dask)
        yield
        return
    with dask.config.set(scheduler="synchronous"):
        yield


def _run_locked(spec: TaskSpec, log: _TaskLog) -> TaskOutcome:
    from neurodfc.training import train

    t0 = time.perf_counter()
    try:
        cfg = ExperimentConfig.model_validate_json(spec.config_json)
        if run_finished(spec.run_dir, cfg):
            return TaskOutcome(spec.name, "skipped", epochs_done=cfg.training.epochs)
        log(f"start {spec.name} in {spec.run_dir}")
        # resume=True also rewrites a metrics.nc that lags its checkpoint (a kill between)
        res = train(cfg, spec.run_dir, resume=True, quiet=True, log=log)
        n = int(res.metrics.sizes.get("epoch", 0))
        log(f"done {spec.name}: {n} epochs")
        return TaskOutcome(spec.name, "done", wall_s=time.perf_counter() - t0, epochs_done=n)
    except _transient_errors():
        log(f"out of memory, left to dask's retries:\n{traceback.format_exc()}")
        raise
    except Exception as err:
        tb = traceback.format_exc()
        log(f"failed:\n{tb}")
        return TaskOutcome(
            spec.name,
            "failed",
            error=f"{type(err).__name__}: {err}",
            wall_s=time.perf_counter() - t0,
            details=tb,
        )
