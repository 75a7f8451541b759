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
Ctrl-C cancels the remaining tasks and closes the cluster without tracebacks (the worker
processes of the local cluster ignore SIGINT, so only this process acts on it); every finished
run stays on disk, an interrupted one keeps its last checkpoint, and the same command continues
the sweep (the CLI exits with status 130). See docs/sweeps.md.

With ``ensemble=True`` (``neurodfc sweep --ensemble``), the unfinished runs whose simulations
can be batched are packed into ensembles of at most ``max_members`` runs
(:mod:`~neurodfc.sweep.packing`); each ensemble is one task that trains its runs with
:func:`neurodfc.ensemble.train_ensemble` into the same run folders, so the outputs are those of
the plain sweep.

The package is split by concern: :mod:`~neurodfc.sweep.plan` (axes, seeds, tasks),
:mod:`~neurodfc.sweep.tasks` (one training, or one ensemble, in a worker, under its locks),
:mod:`~neurodfc.sweep.packing` (which runs share an ensemble),
:mod:`~neurodfc.sweep.cluster` (dask, running, Ctrl-C), :mod:`~neurodfc.sweep.merge`
(``sweep.nc``) and :mod:`~neurodfc.sweep.tables` (``table.md`` / ``table.csv``); every public
name is importable from ``neurodfc.sweep``. Whether a run folder holds a finished run of a
task's config is :func:`neurodfc.runs.folder.run_finished` (the "same run" rule of
:func:`neurodfc.runs.folder.same_run`, shared with ``train --resume``).

dask is an optional dependency (``pip install -e '.[sweep]'``); the package imports it only
inside the functions that need it.
"""

from neurodfc.sweep.cluster import (
    INSTALL_HINT,
    MissingDependencyError,
    SweepReport,
    dask_client,
    default_workers,
    require_distributed,
    run_sweep,
)
from neurodfc.sweep.merge import SUMMARY_VARS, SWEEP_NC, merge_sweep
from neurodfc.sweep.packing import DEFAULT_MAX_MEMBERS, pack_tasks, packing_key
from neurodfc.sweep.plan import (
    MANIFEST,
    Axis,
    InvalidGridError,
    SweepPlan,
    SweepTask,
    make_plan,
    parse_grid,
    parse_seeds,
    plan_grid_sweep,
    point_name,
)
from neurodfc.sweep.tables import (
    TABLE_CSV,
    TABLE_MD,
    TABLE_STATS,
    format_mean_std,
    summary_rows,
    table_csv,
    table_markdown,
)
from neurodfc.sweep.tasks import (
    EnsembleSpec,
    TaskOutcome,
    TaskSpec,
    TaskStatus,
    run_ensemble_task,
    run_finished,
    run_task,
)

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "INSTALL_HINT",
    "MANIFEST",
    "SUMMARY_VARS",
    "SWEEP_NC",
    "TABLE_CSV",
    "TABLE_MD",
    "TABLE_STATS",
    "Axis",
    "EnsembleSpec",
    "InvalidGridError",
    "MissingDependencyError",
    "SweepPlan",
    "SweepReport",
    "SweepTask",
    "TaskOutcome",
    "TaskSpec",
    "TaskStatus",
    "dask_client",
    "default_workers",
    "format_mean_std",
    "make_plan",
    "merge_sweep",
    "pack_tasks",
    "packing_key",
    "parse_grid",
    "parse_seeds",
    "plan_grid_sweep",
    "point_name",
    "require_distributed",
    "run_ensemble_task",
    "run_finished",
    "run_sweep",
    "run_task",
    "summary_rows",
    "table_csv",
    "table_markdown",
]
