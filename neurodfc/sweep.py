"""Sweeps on dask.distributed: every (grid point x seed) training is one task.

A sweep is planned as a :class:`SweepPlan`: named axes (for ``neurodfc sweep`` the grid keys
``section.field``; :mod:`analyses.table1` uses ``dataset`` and ``method``), explicit seeds and
one :class:`SweepTask` per (point, seed) with its validated config and its run folder::

    SWEEP_DIR/
      sweep.json                      # the plan (axes, seeds, run folders); written first
      runs/<key=value__...>/seed_<s>/ # one `neurodfc train` run folder per task
        config.toml  metrics.nc  checkpoint.pt
      logs/<key=value__...>__seed_<s>.log   # what train() logged, tracebacks of failures
      logs/<key=value__...>__seed_<s>.lock  # per-run lock held by the task training it
      sweep.nc                        # all metrics.nc merged: dims (*axes, seed, epoch)
      table.md  table.csv             # mean +- std (ddof = 1) over seeds per grid point

:func:`run_sweep` runs the tasks on a dask.distributed cluster: by default a ``LocalCluster``
started in-process (one single-threaded worker process per core) and closed at the end, or an
existing scheduler (``tcp://host:8786``), or a :class:`distributed.Client` passed in. Every
task calls :func:`neurodfc.training.train` with ``resume=True``: a finished run (all epochs in
``metrics.nc`` with the same config) is skipped without being submitted, an interrupted one
continues from its last checkpoint. A task's error is caught in the worker and reported (it
is not retried: training is deterministic); a lost worker process is handled by the scheduler,
which re-runs its task elsewhere (``distributed.scheduler.allowed-failures`` times), and the
re-run resumes from the checkpoint. Only out-of-memory errors are left to dask's ``retries``.
Ctrl-C cancels the remaining tasks; every finished run stays on disk. See docs/sweeps.md.

dask is an optional dependency (``pip install -e '.[sweep]'``); this module imports it only
inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from neurodfc.config import ConfigError, ExperimentConfig, load_config, parse_override

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

INSTALL_HINT = "pip install -e '.[sweep]'  (or: pip install 'dask[distributed]')"
"""How to install the optional dask dependency (quoted in the error without it)."""
SWEEP_NC = "sweep.nc"
"""File name of the merged metrics of a sweep (in ``SWEEP_DIR``)."""
TABLE_MD = "table.md"
"""File name of the markdown summary table."""
TABLE_CSV = "table.csv"
"""File name of the CSV summary table."""
MANIFEST = "sweep.json"
"""File name of the plan, written before any task runs."""
SUMMARY_VARS = (
    "test_error_percent_at_best_val",
    "test_loss_at_best_val",
    "test_accuracy_at_best_val",
    "final_train_loss",
    "best_val_epoch",
)
"""Per-run summary statistics in ``sweep.nc`` (NaN unless the run finished all its epochs)."""
TABLE_STATS: tuple[tuple[str, str], ...] = (
    ("test_error_percent_at_best_val", "test error % (best val)"),
    ("test_loss_at_best_val", "test loss (best val)"),
    ("final_train_loss", "final train loss"),
)
"""The statistics of ``table.md`` / ``table.csv``: (variable, column title)."""

TaskStatus = Literal["done", "skipped", "failed"]
"""Outcome of a task: trained now, skipped (already finished) or failed."""


class MissingDependencyError(ImportError):
    """dask.distributed is not installed; the message says how to install it."""


class InvalidGridError(ValueError):
    """A ``--grid`` or ``--seeds`` argument cannot be parsed."""


def require_distributed() -> None:
    """Raise :class:`MissingDependencyError` (with the install command) without dask."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"sweeps need dask.distributed, which is not installed: {INSTALL_HINT}"
        ) from None


# ---------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Axis:
    """One sweep dimension: a name (a dotted config key for grids) and its values."""

    name: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    """The values as written (for run folder names, overrides and non-numeric coordinates)."""

    def coordinate(self) -> np.ndarray:
        """The values as a netCDF-friendly coordinate (numbers, else the labels)."""
        vals = self.values
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            if all(isinstance(v, int) for v in vals):
                return np.array(vals, dtype=np.int64)
            return np.array(vals, dtype=np.float64)
        if all(isinstance(v, str) for v in vals):
            return np.array(vals, dtype=object)
        return np.array(self.labels, dtype=object)


@dataclass(frozen=True)
class SweepTask:
    """One training of the sweep: a grid point and a seed."""

    index: tuple[int, ...]
    """Position of the grid point along every axis."""
    point: tuple[tuple[str, Any], ...]
    """``(axis name, value)`` of the grid point."""
    seed: int
    name: str
    """``<point>/seed_<s>``: the run folder relative to ``SWEEP_DIR/runs``."""
    run_dir: Path
    log_path: Path
    config: ExperimentConfig | None
    """The validated config; ``None`` when the point's config is invalid (see ``error``)."""
    error: str | None = None


@dataclass(frozen=True)
class SweepPlan:
    """All tasks of a sweep and where they write."""

    out: Path
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...]
    tasks: tuple[SweepTask, ...]
    description: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of values per axis."""
        return tuple(len(a.values) for a in self.axes)

    def manifest(self) -> dict[str, Any]:
        """A JSON-able description of the plan (written to ``SWEEP_DIR/sweep.json``)."""
        return {
            "description": self.description,
            "axes": [{"name": a.name, "values": list(a.labels)} for a in self.axes],
            "seeds": list(self.seeds),
            "runs": {t.name: str(t.run_dir.relative_to(self.out)) for t in self.tasks},
        }


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and quotes (``[1, 2],[3, 4]`` -> two items)."""
    items: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur).strip())
    return items


def parse_grid(item: str) -> Axis:
    """Parse a ``--grid`` ``item`` ``section.field=v1,v2,...`` into an :class:`Axis`.

    Values are read as TOML (numbers, booleans, lists), else kept as plain strings; commas
    inside brackets or quotes do not split.

    Raises:
        InvalidGridError: no ``=``, an empty or repeated value, or the key ``seed``.

    Examples:
        >>> parse_grid("training.lr=0.5,1.0")
        Axis(name='training.lr', values=(0.5, 1.0), labels=('0.5', '1.0'))
        >>> parse_grid("network.sizes=[4,3,1],[4,5,1]").values
        ([4, 3, 1], [4, 5, 1])
    """
    if "=" not in item:
        raise InvalidGridError(f"--grid expects section.field=v1,v2,..., got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or key == "seed":
        raise InvalidGridError(
            f"--grid {item!r}: " + ("seeds are swept with --seeds" if key else "missing key")
        )
    labels = _split_top_level(raw)
    if any(not lab for lab in labels):
        raise InvalidGridError(f"--grid {item!r}: empty value")
    if len(set(labels)) != len(labels):
        raise InvalidGridError(f"--grid {item!r}: repeated value")
    values = tuple(parse_override(f"{key}={lab}")[1] for lab in labels)
    return Axis(key, values, tuple(labels))


def parse_seeds(n: int | None, seed_list: str | None) -> tuple[int, ...]:
    """The seeds of a sweep: ``0..n-1``, or the explicit comma-separated ``seed_list`` when
    given (distinct integers).

    Raises:
        InvalidGridError: a non-integer, repeated or missing seed, or ``n < 1``.

    Examples:
        >>> parse_seeds(3, None), parse_seeds(None, "4,7")
        ((0, 1, 2), (4, 7))
    """
    if seed_list is not None:
        try:
            seeds = tuple(int(s) for s in seed_list.split(",") if s.strip())
        except ValueError:
            raise InvalidGridError(
                f"--seed-list expects integers like 0,1,2, got {seed_list!r}"
            ) from None
    else:
        if n is None or n < 1:
            raise InvalidGridError(f"--seeds must be >= 1, got {n}")
        seeds = tuple(range(n))
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidGridError(f"seeds must be distinct and non-empty, got {list(seeds)}")
    return seeds


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def point_name(point: Sequence[tuple[str, str]]) -> str:
    """Folder name of a grid ``point`` (``(key, label)`` pairs): ``key=value__key=value``,
    characters unsafe in file names replaced by ``_`` (``base`` without axes).

    Examples:
        >>> point_name([("training.lr", "0.5"), ("method.name", "dfc")])
        'training.lr=0.5__method.name=dfc'
    """
    if not point:
        return "base"
    return "__".join(_UNSAFE.sub("_", f"{k}={v}") for k, v in point)


def make_plan(
    out: str | Path,
    axes: Sequence[Axis],
    seeds: Sequence[int],
    build: Callable[[Mapping[str, Any], Mapping[str, str], int], ExperimentConfig],
    description: str = "",
) -> SweepPlan:
    """Plan every (grid point x seed).

    Args:
        out: the sweep folder ``SWEEP_DIR``.
        axes: the sweep dimensions (distinct names).
        seeds: the seeds of every grid point.
        build: ``build(values, labels, seed)`` returns the task's config from the point's
            ``{axis: value}`` and ``{axis: label}``; a
            :class:`~neurodfc.config.ConfigError` marks that task as failed (the others
            still run).
        description: a title for the manifest and the table.
    """
    out = Path(out)
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise InvalidGridError(f"an axis is given twice: {names}")
    tasks: list[SweepTask] = []
    used: set[str] = set()
    for index in np.ndindex(*(len(a.values) for a in axes)):
        point = tuple((a.name, a.values[i]) for a, i in zip(axes, index, strict=True))
        labels = {a.name: a.labels[i] for a, i in zip(axes, index, strict=True)}
        base = point_name(list(labels.items()))
        pname, k = base, 1
        while pname in used:  # labels that sanitise to the same name
            k += 1
            pname = f"{base}~{k}"
        used.add(pname)
        for seed in seeds:
            cfg, err = None, None
            try:
                cfg = build(dict(point), labels, seed)
            except ConfigError as e:
                err = str(e)
            tasks.append(
                SweepTask(
                    index=tuple(int(i) for i in index),
                    point=point,
                    seed=int(seed),
                    name=f"{pname}/seed_{seed}",
                    run_dir=out / "runs" / pname / f"seed_{seed}",
                    log_path=out / "logs" / f"{pname}__seed_{seed}.log",
                    config=cfg,
                    error=err,
                )
            )
    return SweepPlan(out, tuple(axes), tuple(int(s) for s in seeds), tuple(tasks), description)


def plan_grid_sweep(
    config: str | Path,
    out: str | Path,
    seeds: Sequence[int],
    grid: Sequence[Axis] = (),
    overrides: Sequence[str] = (),
) -> SweepPlan:
    """The plan of ``neurodfc sweep``.

    Args:
        config: path of the TOML config.
        out: the sweep folder ``SWEEP_DIR``.
        seeds: the seeds (set through the config's ``seed`` field).
        grid: one :class:`Axis` per ``--grid`` (its values set as overrides).
        overrides: ``section.field=value`` overrides shared by every task.
    """
    from neurodfc.config import load_toml

    load_toml(config)  # a missing or malformed file is a usage error before anything runs

    def build(values: Mapping[str, Any], labels: Mapping[str, str], seed: int) -> ExperimentConfig:
        extra = [f"{k}={v}" for k, v in labels.items()]
        return load_config(config, [*overrides, *extra, f"seed={seed}"])

    desc = f"neurodfc sweep {config}"
    return make_plan(out, grid, seeds, build, description=desc)


# ---------------------------------------------------------------------------- the task
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


def run_finished(run_dir: str | Path, cfg: ExperimentConfig) -> bool:
    """Whether ``run_dir`` holds a finished run of ``cfg``: its checkpoint exists and
    ``metrics.nc`` has ``cfg.training.epochs`` epochs with the same config (nothing is
    recomputed)."""
    from neurodfc.training import CHECKPOINT, METRICS

    run = Path(run_dir)
    if not (run / METRICS).is_file() or not (run / CHECKPOINT).is_file():
        return False
    try:
        with xr.open_dataset(run / METRICS) as ds:
            saved = ExperimentConfig.model_validate_json(ds.attrs["config"])
            epochs = ds["epoch"].values
    except Exception:  # unreadable or foreign: let train() decide
        return False
    return saved == cfg and len(epochs) > 0 and int(epochs.max()) >= cfg.training.epochs


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
    that dask's ``retries`` can run the task again.
    """
    import torch

    torch.set_num_threads(max(1, spec.torch_threads))
    log = _TaskLog(Path(spec.log_path))
    with _run_lock(Path(spec.log_path).with_suffix(".lock")):
        return _run_locked(spec, log)


@contextlib.contextmanager
def _run_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a run: a task of an earlier, cancelled sweep that still runs on
    an external cluster finishes before a new task touches the same folder (the OS drops the
    lock when a worker process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_locked(spec: TaskSpec, log: _TaskLog) -> TaskOutcome:
    from neurodfc.results import write_netcdf
    from neurodfc.training import METRICS, train

    t0 = time.perf_counter()
    try:
        cfg = ExperimentConfig.model_validate_json(spec.config_json)
        if run_finished(spec.run_dir, cfg):
            return TaskOutcome(spec.name, "skipped", epochs_done=cfg.training.epochs)
        log(f"start {spec.name} in {spec.run_dir}")
        res = train(cfg, spec.run_dir, resume=True, quiet=True, log=log)
        n = int(res.metrics.sizes.get("epoch", 0))
        if not run_finished(spec.run_dir, cfg):  # killed between checkpoint and metrics
            write_netcdf(res.metrics, Path(spec.run_dir) / METRICS)
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


# ---------------------------------------------------------------------------- the cluster
def default_workers() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    allowed_failures: int = 3,
) -> Iterator[Client]:
    """A client of ``scheduler``, or of a ``LocalCluster`` started here and closed on exit.

    Args:
        scheduler: address of a running scheduler (``tcp://host:8786``); None starts a
            ``LocalCluster``.
        workers: single-threaded worker processes of the local cluster (default: one per
            core, :func:`default_workers`).
        allowed_failures: how often the local scheduler re-runs a task whose worker died.
    """
    require_distributed()
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or default_workers()
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # a free port (8787 may be taken), local only
            scheduler_port=0,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


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


def _write_text_atomic(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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

    Returns:
        The :class:`SweepReport`: every task's outcome and the paths of ``sweep.nc``,
        ``table.md`` and ``table.csv``.
    """
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(json.dumps(plan.manifest(), indent=1) + "\n", out / MANIFEST)
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
    if pending:
        if client is not None:
            _run_on(client, pending, report, retries, quiet, task_fn, on_outcome, log)
        else:
            with dask_client(scheduler, workers, allowed_failures=max(retries, 1)) as c:
                _run_on(c, pending, report, retries, quiet, task_fn, on_outcome, log)
    for o in report.failed:
        log(f"FAILED {o.name}: {o.error}")
    ds = merge_sweep(plan, report.outcomes)
    from neurodfc.results import write_netcdf

    report.sweep_nc = write_netcdf(ds, out / SWEEP_NC)
    rows = summary_rows(ds)
    report.table_md = out / TABLE_MD
    report.table_csv = out / TABLE_CSV
    _write_text_atomic(table_markdown(rows, ds, title=plan.description), report.table_md)
    _write_text_atomic(table_csv(rows), report.table_csv)
    log(
        f"{report.count('done')} trained, {report.count('skipped')} skipped (finished), "
        f"{report.count('failed')} failed; wrote {report.sweep_nc}, {report.table_md}, "
        f"{report.table_csv}"
    )
    return report


def _run_on(
    client: Client,
    pending: Sequence[SweepTask],
    report: SweepReport,
    retries: int,
    quiet: bool,
    task_fn: Callable[[TaskSpec], TaskOutcome],
    on_outcome: Callable[[TaskOutcome], None] | None,
    log: Callable[[str], None],
) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    by_key: dict[Any, SweepTask] = {}
    futures = []
    stamp = f"{os.getpid()}-{time.time_ns()}"
    for t in pending:
        assert t.config is not None
        spec = TaskSpec(t.name, t.config.model_dump_json(), str(t.run_dir), str(t.log_path))
        key = f"train-{t.name}-{stamp}"
        fut = client.submit(task_fn, spec, key=key, pure=False, retries=retries)
        by_key[fut.key] = t
        futures.append(fut)
    outstanding = {fut.key: fut for fut in futures}
    bar = tqdm(total=len(futures), desc="sweep", unit="run", disable=quiet, dynamic_ncols=True)
    try:
        for fut in as_completed(futures):
            t = by_key[fut.key]
            outstanding.pop(fut.key, None)
            if fut.status == "error":
                exc = fut.exception()
                outcome = TaskOutcome(
                    t.name, "failed", error=f"{type(exc).__name__}: {exc} (see {t.log_path})"
                )
            elif fut.status == "cancelled":
                outcome = TaskOutcome(t.name, "failed", error="cancelled")
            else:
                outcome = fut.result()
                if outcome.status == "failed":
                    outcome.error = f"{outcome.error} (traceback: {t.log_path})"
            # forget the result on the cluster: else a later worker loss makes the scheduler
            # recompute this finished task (harmless, the run is skipped, but wasted)
            fut.release()
            report.outcomes[t.name] = outcome
            bar.update(1)
            bar.set_postfix(failed=report.count("failed"), refresh=False)
            if outcome.status == "failed" and not quiet:
                bar.write(f"failed: {t.name}: {outcome.error}")
            if on_outcome is not None:
                on_outcome(outcome)
    except KeyboardInterrupt:
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


# ---------------------------------------------------------------------------- merging
def _same_config(saved_json: Any, cfg: ExperimentConfig) -> bool:
    """Whether a run's saved config equals ``cfg`` up to ``training.epochs``."""
    if not isinstance(saved_json, str):
        return False
    try:
        saved = ExperimentConfig.model_validate_json(saved_json)
    except Exception:
        return False
    training = saved.training.model_copy(update={"epochs": cfg.training.epochs})
    return saved.model_copy(update={"training": training}) == cfg


def _load_metrics(run_dir: Path) -> xr.Dataset | None:
    from neurodfc.training import METRICS

    p = run_dir / METRICS
    if not p.is_file():
        return None
    try:
        with xr.open_dataset(p) as ds:
            return ds.load()
    except Exception:
        return None


def merge_sweep(plan: SweepPlan, outcomes: Mapping[str, TaskOutcome] | None = None) -> xr.Dataset:
    """All runs' ``metrics.nc`` as one Dataset with dims ``(*axes, seed, epoch)``.

    Args:
        plan: the sweep plan (axes, seeds, run folders).
        outcomes: the task outcomes by task name (failed tasks get status ``failed``).

    Per-epoch variables (those with dim ``epoch`` only) are NaN-padded; per-run variables:
    the :data:`SUMMARY_VARS` (NaN unless the run finished all its epochs and did not fail),
    ``epochs_done``, ``status`` and ``run`` (the run folder). ``status``: ``done`` (all
    epochs), ``incomplete``, ``failed`` (its task failed), ``missing`` (no metrics) or
    ``foreign`` (the folder holds a run of another config, which is left out).
    """
    outcomes = outcomes or {}
    loaded: dict[str, xr.Dataset] = {}
    foreign: set[str] = set()
    for t in plan.tasks:
        ds = _load_metrics(t.run_dir)
        if ds is None:
            continue
        if t.config is None or not _same_config(ds.attrs.get("config"), t.config):
            foreign.add(t.name)
        else:
            loaded[t.name] = ds
    epoch_vars: list[str] = []
    max_epoch = 0
    for ds in loaded.values():
        for k, v in ds.data_vars.items():
            if v.dims == ("epoch",) and str(k) not in epoch_vars:
                epoch_vars.append(str(k))
        if ds.sizes.get("epoch", 0):
            max_epoch = max(max_epoch, int(ds["epoch"].values.max()))
    shape = (*plan.shape, len(plan.seeds))
    dims = (*(a.name for a in plan.axes), "seed")
    epochs = np.arange(1, max_epoch + 1, dtype=np.int64)
    per_epoch = {k: np.full((*shape, len(epochs)), np.nan) for k in epoch_vars}
    summary = {k: np.full(shape, np.nan) for k in SUMMARY_VARS}
    epochs_done = np.zeros(shape, dtype=np.int64)
    status = np.full(shape, "missing", dtype=object)
    runs = np.full(shape, "", dtype=object)
    seed_pos = {s: i for i, s in enumerate(plan.seeds)}
    for t in plan.tasks:
        idx = (*t.index, seed_pos[t.seed])
        runs[idx] = str(t.run_dir.relative_to(plan.out))
        oc = outcomes.get(t.name)
        failed = oc is not None and oc.status == "failed"
        ds = loaded.get(t.name)
        if ds is None:
            status[idx] = "failed" if failed else "foreign" if t.name in foreign else "missing"
            continue
        ep = ds["epoch"].values.astype(np.int64)
        pos = ep - 1
        for k in epoch_vars:
            if k in ds:
                per_epoch[k][idx][pos] = ds[k].values
        epochs_done[idx] = len(ep)
        assert t.config is not None
        complete = len(ep) > 0 and int(ep.max()) >= t.config.training.epochs
        status[idx] = "failed" if failed else "done" if complete else "incomplete"
        if status[idx] == "done":
            for k in ("test_error_percent_at_best_val", "test_loss_at_best_val"):
                summary[k][idx] = float(ds.attrs.get(k, np.nan))
            summary["test_accuracy_at_best_val"][idx] = float(
                ds.attrs.get("test_accuracy_at_best_val", np.nan)
            )
            summary["best_val_epoch"][idx] = float(ds.attrs.get("best_val_epoch", np.nan))
            summary["final_train_loss"][idx] = float(ds["train_loss"].values[-1])
    coords: dict[str, Any] = {a.name: a.coordinate() for a in plan.axes}
    coords["seed"] = np.array(plan.seeds, dtype=np.int64)
    coords["epoch"] = epochs
    data: dict[str, Any] = {k: ((*dims, "epoch"), v) for k, v in per_epoch.items()}
    data.update({k: (dims, v) for k, v in summary.items()})
    data["epochs_done"] = (dims, epochs_done)
    data["status"] = (dims, status.astype(str))
    data["run"] = (dims, runs.astype(str))
    out = xr.Dataset(data, coords=coords)
    out["status"].attrs["values"] = "done | incomplete | failed | missing | foreign"
    out["final_train_loss"].attrs["long_name"] = "train loss after the last epoch"
    for k in SUMMARY_VARS:
        out[k].attrs["note"] = "NaN unless the run finished all its epochs (status done)"
    out.attrs["sweep"] = json.dumps(plan.manifest())
    out.attrs["axes"] = json.dumps([a.name for a in plan.axes])
    out.attrs["std_ddof"] = 1
    cfgs = [t.config for t in plan.tasks if t.config is not None]
    if cfgs:
        out.attrs["config_first_run"] = cfgs[0].model_dump_json()
    return out


def _mean_std(values: np.ndarray) -> tuple[float, float, int]:
    v = values[np.isfinite(values)]
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan, n


def summary_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One row per grid point of the merged sweep ``ds`` (:func:`merge_sweep`): the axis
    values, ``n`` (finished seeds), ``n_failed`` and ``<stat>_mean`` / ``<stat>_std`` (sample
    std, ddof = 1) of :data:`TABLE_STATS`."""
    axes: list[str] = json.loads(ds.attrs.get("axes", "[]"))
    shape = tuple(ds.sizes[a] for a in axes)
    rows = []
    for index in np.ndindex(*shape):
        sel = {a: i for a, i in zip(axes, index, strict=True)}
        sub = ds.isel(sel)
        row: dict[str, Any] = {a: _py(sub[a].values) for a in axes}
        st = sub["status"].values
        row["n"] = int((st == "done").sum())
        row["n_failed"] = int((st == "failed").sum())
        for var, _ in TABLE_STATS:
            m, s, _n = _mean_std(np.asarray(sub[var].values, dtype=float))
            row[f"{var}_mean"], row[f"{var}_std"] = m, s
        rows.append(row)
    return rows


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``mean +- std`` with ``digits`` significant digits (``mean`` alone when std is NaN,
    ``n/a`` when mean is).

    Examples:
        >>> format_mean_std(1.23456, 0.01234), format_mean_std(1.0, float("nan"))
        ('1.235 +- 0.012', '1')
    """
    if math.isnan(mean):
        return "n/a"
    if math.isnan(std):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} +- {std:.2g}"


def table_markdown(rows: Sequence[Mapping[str, Any]], ds: xr.Dataset, title: str = "") -> str:
    """The ``rows`` of :func:`summary_rows` as a markdown table under the heading ``title``
    (columns without data dropped; the axes are read from the merged sweep ``ds``)."""
    axes: list[str] = json.loads(ds.attrs.get("axes", "[]"))
    stats = [(v, t) for v, t in TABLE_STATS if any(not math.isnan(r[f"{v}_mean"]) for r in rows)]
    head = [*axes, "n", *(t for _, t in stats)]
    if any(r["n_failed"] for r in rows):
        head.insert(len(axes) + 1, "failed")
    lines = []
    if title:
        lines += [f"# {title}", ""]
    lines += [
        f"mean +- sample std (ddof = 1) over the seeds {list(ds['seed'].values.tolist())} of the "
        "runs that finished all epochs; test values at the best-validation epoch.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r[a]) for a in axes] + [str(r["n"])]
        if "failed" in head:
            cells.append(str(r["n_failed"]))
        cells += [format_mean_std(r[f"{v}_mean"], r[f"{v}_std"]) for v, _ in stats]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`summary_rows` as CSV (full precision, empty cells for NaN)."""
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return buf.getvalue()
