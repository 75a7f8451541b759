"""Running a sweep on dask.distributed: the cluster, the submission, Ctrl-C, the outputs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurodfc.results import write_netcdf
from neurodfc.runs.files import atomic_write_text
from neurodfc.sweep.merge import SWEEP_NC, merge_sweep
from neurodfc.sweep.packing import DEFAULT_MAX_MEMBERS, pack_tasks
from neurodfc.sweep.plan import MANIFEST, SweepPlan, SweepTask
from neurodfc.sweep.tables import TABLE_CSV, TABLE_MD, summary_rows, table_csv, table_markdown
from neurodfc.sweep.tasks import (
    EnsembleSpec,
    TaskOutcome,
    TaskSpec,
    TaskStatus,
    run_ensemble_task,
    run_finished,
    run_task,
)

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

INSTALL_HINT = "pip install -e '.[sweep]'  (or: pip install 'dask[distributed]')"
"""How to install the optional dask dependency (quoted in the error without it)."""


class MissingDependencyError(ImportError):
    """dask.distributed is not installed; the message says how to install it."""


def require_distributed() -> None:
    """Raise :class:`MissingDependencyError` (with the install command) without dask."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"sweeps need dask.distributed, which is not installed: {INSTALL_HINT}"
        ) from None


def default_workers() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Worker processes started in the block ignore SIGINT (an ignored signal stays ignored
    across ``exec``, and Python then installs no KeyboardInterrupt handler). Ctrl-C in a
    terminal signals the whole process group; only this process should act on it (cancel the
    tasks, close the cluster): workers dying of their own KeyboardInterrupt print tracebacks
    and make the scheduler report ``CommClosedError``. A Ctrl-C during the cluster's start is
    ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _silenced(names: Sequence[str] = ("distributed", "tornado", "asyncio")) -> Iterator[None]:
    """Mute the loggers ``names`` (the cluster's complaints while it is torn down)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _close(*parts: Any, clean: bool) -> None:
    """Close the client and cluster ``parts``; after an interrupt or error (``clean`` False)
    quietly, swallowing what a half-dead cluster raises, so the original exception stays."""
    if clean:
        for part in parts:
            part.close()
        return
    with _silenced():
        for part in parts:
            with contextlib.suppress(Exception):
                part.close(timeout=5)


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    allowed_failures: int = 3,
) -> Iterator[Client]:
    """A client of ``scheduler``, or of a ``LocalCluster`` started here and closed on exit.

    An exception in the block (Ctrl-C's KeyboardInterrupt) propagates unchanged: the client
    and cluster are closed quietly, without the tracebacks of a cluster torn down mid-task.

    Args:
        scheduler: address of a running scheduler (``tcp://host:8786``); None starts a
            ``LocalCluster`` (its worker processes ignore SIGINT).
        workers: single-threaded worker processes of the local cluster (default: one per
            core, :func:`default_workers`).
        allowed_failures: how often the local scheduler re-runs a task whose worker died.
    """
    require_distributed()
    import dask
    from distributed import Client, LocalCluster

    parts: list[Any] = []
    if scheduler is not None:
        parts.append(Client(scheduler))
    else:
        cfg = {"distributed.scheduler.allowed-failures": allowed_failures}
        with dask.config.set(cfg), _children_ignore_sigint():
            cluster = LocalCluster(
                n_workers=workers or default_workers(),
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",  # a free port (8787 may be taken), local only
                scheduler_port=0,
            )
        parts = [Client(cluster), cluster]
    try:
        yield parts[0]
    except BaseException:
        _close(*parts, clean=False)
        raise
    _close(*parts, clean=True)


# ---------------------------------------------------------------------------- running
@dataclass
class SweepReport:
    """What :func:`run_sweep` returns."""

    plan: SweepPlan
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)
    sweep_nc: Path | None = None
    table_md: Path | None = None
    table_csv: Path | None = None

    def count(self, status: TaskStatus) -> int:
        """Number of tasks with ``status``."""
        return sum(o.status == status for o in self.outcomes.values())

    @property
    def failed(self) -> list[TaskOutcome]:
        """The failed tasks, in plan order."""
        return [
            self.outcomes[t.name]
            for t in self.plan.tasks
            if self.outcomes.get(t.name) and self.outcomes[t.name].status == "failed"
        ]


def run_sweep(
    plan: SweepPlan,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Client | None = None,
    retries: int = 2,
    quiet: bool = False,
    task_fn: Callable[[TaskSpec], TaskOutcome] = run_task,
    on_outcome: Callable[[TaskOutcome], None] | None = None,
    log: Callable[[str], None] = print,
    ensemble: bool = False,
    max_members: int = DEFAULT_MAX_MEMBERS,
    ensemble_fn: Callable[[EnsembleSpec], list[TaskOutcome]] = run_ensemble_task,
) -> SweepReport:
    """Run every unfinished task of ``plan`` on dask.distributed, then merge the results.

    ``client`` (kept open) or ``scheduler`` (an address) selects an existing cluster; else a
    ``LocalCluster`` with ``workers`` processes is started and closed at the end. Finished
    runs are skipped without a task. ``retries`` is passed to ``client.submit`` (it covers
    exceptions that escape ``task_fn``: out of memory) and sets how often a task whose worker
    died is re-run. ``task_fn`` runs one task in a worker (default :func:`run_task`).
    ``on_outcome`` is called with every result as it arrives; ``log`` receives the progress
    lines (one per finished task unless ``quiet``). On Ctrl-C the remaining tasks are
    cancelled and :class:`KeyboardInterrupt` propagates; finished runs stay on disk and the
    same call continues the sweep.

    With ``ensemble``, the unfinished runs that can share their simulations are packed into
    ensembles of at most ``max_members`` runs (:func:`~neurodfc.sweep.packing.pack_tasks`),
    each one task that runs ``ensemble_fn`` (default
    :func:`~neurodfc.sweep.tasks.run_ensemble_task`); the other runs stay tasks of
    ``task_fn``. The run folders, ``sweep.nc`` and the tables are those of the plain sweep
    (each member equals its run trained alone), and outcomes are reported per run.

    Raises:
        ValueError: ``max_members`` < 1.

    Returns:
        The :class:`SweepReport`: every task's outcome and the paths of ``sweep.nc``,
        ``table.md`` and ``table.csv``.
    """
    if max_members < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(plan.manifest(), indent=1) + "\n", out / MANIFEST)
    report = SweepReport(plan)
    pending: list[SweepTask] = []
    for t in plan.tasks:
        if t.config is None:
            report.outcomes[t.name] = TaskOutcome(t.name, "failed", error=t.error)
        elif run_finished(t.run_dir, t.config):
            report.outcomes[t.name] = TaskOutcome(
                t.name, "skipped", epochs_done=t.config.training.epochs
            )
        else:
            pending.append(t)
    n_skip = report.count("skipped")
    log(
        f"sweep {out}: {len(plan.tasks)} runs ({' x '.join(map(str, plan.shape)) or '1'} grid "
        f"points x {len(plan.seeds)} seeds): {len(pending)} to run, {n_skip} already finished"
        + (f", {report.count('failed')} with an invalid config" if report.count("failed") else "")
    )
    units = pack_tasks(pending, max_members) if ensemble else [(t,) for t in pending]
    if ensemble and pending:
        sizes = [len(u) for u in units if len(u) > 1]
        log(
            f"packed into {len(sizes)} ensembles ({', '.join(map(str, sizes)) or 'none'} runs) "
            f"and {len(units) - len(sizes)} single runs (at most {max_members} members)"
        )
    fns = _Fns(task_fn, ensemble_fn, on_outcome)
    if units:
        if client is not None:
            _run_on(client, units, report, retries, quiet, fns, log)
        else:
            with dask_client(scheduler, workers, allowed_failures=max(retries, 1)) as c:
                _run_on(c, units, report, retries, quiet, fns, log)
    for o in report.failed:
        log(f"FAILED {o.name}: {o.error}")
    ds = merge_sweep(plan, report.outcomes)
    report.sweep_nc = write_netcdf(ds, out / SWEEP_NC)
    rows = summary_rows(ds)
    report.table_md = out / TABLE_MD
    report.table_csv = out / TABLE_CSV
    atomic_write_text(table_markdown(rows, ds, title=plan.description), report.table_md)
    atomic_write_text(table_csv(rows), report.table_csv)
    log(
        f"{report.count('done')} trained, {report.count('skipped')} skipped (finished), "
        f"{report.count('failed')} failed; wrote {report.sweep_nc}, {report.table_md}, "
        f"{report.table_csv}"
    )
    return report


@dataclass(frozen=True)
class _Fns:
    """What runs a single task, what runs an ensemble, and who hears of every outcome."""

    task: Callable[[TaskSpec], TaskOutcome]
    ensemble: Callable[[EnsembleSpec], list[TaskOutcome]]
    on_outcome: Callable[[TaskOutcome], None] | None


def _spec(t: SweepTask) -> TaskSpec:
    assert t.config is not None
    return TaskSpec(t.name, t.config.model_dump_json(), str(t.run_dir), str(t.log_path))


def _unit_outcomes(fut: Any, unit: tuple[SweepTask, ...]) -> list[TaskOutcome]:
    """The outcomes of the runs of ``unit`` from its finished future ``fut``."""
    if fut.status == "error":
        exc = fut.exception()
        msg = f"{type(exc).__name__}: {exc}"
        return [  # an ensemble's members that finished before the error count as done
            TaskOutcome(t.name, "done", epochs_done=t.config.training.epochs)
            if len(unit) > 1 and t.config is not None and run_finished(t.run_dir, t.config)
            else TaskOutcome(t.name, "failed", error=f"{msg} (see {t.log_path})")
            for t in unit
        ]
    if fut.status == "cancelled":
        return [TaskOutcome(t.name, "failed", error="cancelled") for t in unit]
    res = fut.result()
    outcomes: list[TaskOutcome] = res if isinstance(res, list) else [res]
    for t, outcome in zip(unit, outcomes, strict=True):
        if outcome.status == "failed":
            outcome.error = f"{outcome.error} (traceback: {t.log_path})"
    return outcomes


def _run_on(
    client: Client,
    units: Sequence[tuple[SweepTask, ...]],
    report: SweepReport,
    retries: int,
    quiet: bool,
    fns: _Fns,
    log: Callable[[str], None],
) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    by_key: dict[Any, tuple[SweepTask, ...]] = {}
    futures = []
    stamp = f"{os.getpid()}-{time.time_ns()}"
    for unit in units:
        if len(unit) == 1:
            key = f"train-{unit[0].name}-{stamp}"
            fut = client.submit(fns.task, _spec(unit[0]), key=key, pure=False, retries=retries)
        else:
            spec = EnsembleSpec(tuple(_spec(t) for t in unit))
            key = f"ensemble-{unit[0].name}-{len(unit)}-{stamp}"
            run_unit: Callable[..., Any] = fns.ensemble
            fut = client.submit(run_unit, spec, key=key, pure=False, retries=retries)
        by_key[fut.key] = unit
        futures.append(fut)
    outstanding = {fut.key: fut for fut in futures}
    total = sum(len(u) for u in units)
    bar = tqdm(total=total, desc="sweep", unit="run", disable=quiet, dynamic_ncols=True)
    try:
        for fut in as_completed(futures):
            unit = by_key[fut.key]
            outstanding.pop(fut.key, None)
            outcomes = _unit_outcomes(fut, unit)
            # forget the result on the cluster: else a later worker loss makes the scheduler
            # recompute this finished task (harmless, the run is skipped, but wasted)
            fut.release()
            for t, outcome in zip(unit, outcomes, strict=True):
                report.outcomes[t.name] = outcome
                bar.update(1)
                bar.set_postfix(failed=report.count("failed"), refresh=False)
                if outcome.status == "failed" and not quiet:
                    bar.write(f"failed: {t.name}: {outcome.error}")
                if fns.on_outcome is not None:
                    fns.on_outcome(outcome)
    except KeyboardInterrupt:
        with _silenced(), contextlib.suppress(Exception):  # the cluster may be going down
            client.cancel(list(outstanding.values()))
        bar.close()
        done = sum(o.status in ("done", "skipped") for o in report.outcomes.values())
        log(
            f"interrupted: {done} finished runs are on disk under {report.plan.out / 'runs'}; "
            "run the same command again to continue (interrupted runs resume from their "
            "checkpoints)"
        )
        raise
    finally:
        bar.close()
