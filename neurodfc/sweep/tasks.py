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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from neurodfc.config import ExperimentConfig
from neurodfc.runs.files import hold_lock
from neurodfc.runs.folder import run_finished

__all__ = [
    "EnsembleSpec",
    "TaskOutcome",
    "TaskSpec",
    "TaskStatus",
    "run_ensemble_task",
    "run_finished",
    "run_task",
]

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


@dataclass(frozen=True)
class EnsembleSpec:
    """What a worker needs to run several tasks as one ensemble (plain data)."""

    members: tuple[TaskSpec, ...]
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
        return _failed(spec.name, err, log, time.perf_counter() - t0)


def _failed(name: str, err: BaseException, log: _TaskLog, wall_s: float) -> TaskOutcome:
    """The outcome of a task stopped by ``err`` (its traceback logged)."""
    tb = _format(err)
    log(f"failed:\n{tb}")
    return TaskOutcome(
        name, "failed", error=f"{type(err).__name__}: {err}", wall_s=wall_s, details=tb
    )


# ---------------------------------------------------------------------------- ensembles
def run_ensemble_task(spec: EnsembleSpec) -> list[TaskOutcome]:
    """Train several tasks as one ensemble in a worker (:func:`neurodfc.ensemble.train_ensemble`
    with ``resume=True``, ``spec.torch_threads`` torch threads).

    Every member is treated as :func:`run_task` treats its task: a finished run is skipped, an
    interrupted one continues from its checkpoint, each member's lines and failure traceback
    go to its own log, and a member stopped by an error is a ``failed`` outcome while the
    others finish. Out-of-memory errors propagate (after the other members finished) so that
    dask's ``retries`` run the ensemble again; it then skips the finished members. The task
    holds every member's lock (taken in a fixed order).

    Args:
        spec: the members' tasks.

    Returns:
        One outcome per member, in the order of ``spec.members``.
    """
    import torch

    torch.set_num_threads(max(1, spec.torch_threads))
    logs = [_TaskLog(Path(m.log_path)) for m in spec.members]
    locks = sorted({Path(m.log_path).with_suffix(".lock") for m in spec.members})
    with _no_worker_client(), contextlib.ExitStack() as stack:
        for lock in locks:
            stack.enter_context(hold_lock(lock, blocking=True, remove=False))
        return _run_ensemble_locked(spec.members, logs)


def _run_ensemble_locked(members: Sequence[TaskSpec], logs: list[_TaskLog]) -> list[TaskOutcome]:
    outcomes: list[TaskOutcome | None] = [None] * len(members)
    todo: list[tuple[int, ExperimentConfig]] = []
    for k, m in enumerate(members):
        try:
            cfg = ExperimentConfig.model_validate_json(m.config_json)
        except Exception as err:
            outcomes[k] = _failed(m.name, err, logs[k], 0.0)
            continue
        if run_finished(m.run_dir, cfg):
            outcomes[k] = TaskOutcome(m.name, "skipped", epochs_done=cfg.training.epochs)
        else:
            todo.append((k, cfg))
    if todo:
        _train_members(members, logs, todo, outcomes)
    return [o for o in outcomes if o is not None]


def _train_members(
    members: Sequence[TaskSpec],
    logs: list[_TaskLog],
    todo: list[tuple[int, ExperimentConfig]],
    outcomes: list[TaskOutcome | None],
) -> None:
    """Train the members ``todo`` (index, config) as one ensemble; fill in their outcomes."""
    from neurodfc.ensemble import train_ensemble

    t0 = time.perf_counter()
    for j, (k, _) in enumerate(todo):
        m = members[k]
        logs[k](f"start {m.name} in {m.run_dir} (ensemble member {j + 1} of {len(todo)})")
    res = train_ensemble(
        [cfg for _, cfg in todo],
        [members[k].run_dir for k, _ in todo],
        resume=True,
        log=[logs[k] for k, _ in todo],
        workers=1,
    )
    wall = time.perf_counter() - t0
    transient: BaseException | None = None
    for j, (k, _) in enumerate(todo):
        error, run = res.errors[j], res.runs[j]
        if error is None and run is not None:
            n = int(run.metrics.sizes.get("epoch", 0))
            logs[k](f"done {members[k].name}: {n} epochs")
            outcomes[k] = TaskOutcome(members[k].name, "done", wall_s=wall, epochs_done=n)
        elif isinstance(error, _transient_errors()):
            logs[k](f"out of memory, left to dask's retries:\n{_format(error)}")
            transient = error
        else:
            assert error is not None
            outcomes[k] = _failed(members[k].name, error, logs[k], wall)
    if transient is not None:
        raise transient


def _format(err: BaseException) -> str:
    """The traceback of ``err`` as text."""
    return "".join(traceback.format_exception(err))
