"""Merging a sweep: every run's ``metrics.nc`` into one Dataset ``(*axes, seed, epoch)``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neurodfc.runs.folder import METRICS, ResultsFileError, read_results, same_run
from neurodfc.sweep.plan import SweepPlan
from neurodfc.sweep.tasks import TaskOutcome

SWEEP_NC = "sweep.nc"
"""File name of the merged metrics of a sweep (in ``SWEEP_DIR``)."""
SUMMARY_VARS = (
    "test_error_percent_at_best_val",
    "test_loss_at_best_val",
    "test_accuracy_at_best_val",
    "final_train_loss",
    "best_val_epoch",
)
"""Per-run summary statistics in ``sweep.nc`` (NaN unless the run finished all its epochs)."""


def _load_metrics(run_dir: Path) -> xr.Dataset | None:
    """A run's ``metrics.nc`` (None when missing or unreadable: the run counts as missing)."""
    p = run_dir / METRICS
    if not p.is_file():
        return None
    try:
        return read_results(p)
    except ResultsFileError:
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
        if t.config is None or not same_run(ds.attrs.get("config"), t.config):
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
