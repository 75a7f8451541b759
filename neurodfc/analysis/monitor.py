"""Logging analysis metrics during training (``[analysis]`` config section).

Every ``log_interval``-th minibatch of an epoch (batch index within the epoch ``% k == 0``, as
the reference code's ``log_interval``), :class:`AnalysisLogger` measures the configured metric
groups on that minibatch, reduces per-sample values to batch statistics with
:func:`summarize` and keeps one record per logged batch. :meth:`AnalysisLogger.to_dataset`
stacks them along dim ``step`` (the global minibatch index, 0-based, counted over forward
passes) with coords ``step_epoch`` (1-based epoch) and ``step_batch`` (index within the
epoch) along ``step``; the trainer merges it into ``metrics.nc``.

The alignment angles and the null-space measure use the update as handed to the optimiser
(after gradient clipping, as the reference code's) and the whole minibatch; the other groups
use the first ``max_samples`` samples. The MN and SSA definitions (``mn_rule``, ``ssa_rates``)
are stored in the angle variables' attributes. Nothing here draws from the trainer's random
generators (the SSA reference's simulation, with apical noise, draws from the logger's own).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis.alignment import alignment
from neurodfc.analysis.conditions import conditions
from neurodfc.analysis.convergence import convergence
from neurodfc.analysis.nullspace import nullspace
from neurodfc.analysis.stability import stability
from neurodfc.config import AnalysisConfig
from neurodfc.methods import Method, Update
from neurodfc.solve import STATUS_NAMES
from neurodfc.system import DFCSystem

DROP_DIMS = ("time", "eig")


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Batch statistics of a per-sample analysis Dataset ``ds``.

    A variable with dim ``sample`` becomes its NaN-skipping batch mean (same name) and batch
    std (``<name>_std``, population std); ``status`` becomes ``status_count`` (dim
    ``status``: converged, diverged, max_steps, nonfinite); variables over ``time`` or ``eig``
    (trajectories, full spectra) are dropped; the rest is kept as is. Attributes are kept,
    ``long_name`` gains "(batch mean)" / "(batch std)"."""
    out: dict[str, xr.DataArray] = {}
    for name, da in ds.data_vars.items():
        key = str(name)
        if any(d in da.dims for d in DROP_DIMS):
            continue
        if key == "status":
            codes = da.values.astype(np.int64)
            counts = np.array([(codes == c).sum() for c in range(len(STATUS_NAMES))], float)
            out["status_count"] = xr.DataArray(
                counts,
                dims=("status",),
                coords={"status": np.array(STATUS_NAMES, dtype=object)},
                attrs={"long_name": "number of samples per status", "units": "1"},
            )
        elif "sample" in da.dims:
            attrs = dict(da.attrs)
            long = attrs.get("long_name", key)
            mean = da.mean("sample", skipna=True)
            std = da.std("sample", skipna=True)
            mean.attrs = {**attrs, "long_name": f"{long} (batch mean)"}
            std.attrs = {**attrs, "long_name": f"{long} (batch std)"}
            out[key] = mean
            out[f"{key}_std"] = std
        else:
            out[key] = da
    res = xr.Dataset(out)
    return res.drop_vars([c for c in ("sample",) if c in res.coords])


class AnalysisLogger:
    """Collects analysis metrics of minibatches during training (see the module docstring).

    Args:
        cfg: the ``[analysis]`` config section.
        method: the training method (``simulates`` picks the state of the ``stability`` group
            when ``stability_at = "auto"``).
        seed: seed of the logger's own noise generator (used only with apical noise).
    """

    def __init__(self, cfg: AnalysisConfig, method: Method, seed: int = 0) -> None:
        self.cfg = cfg
        self.method = method
        self.records: list[xr.Dataset] = []
        self.generator = torch.Generator().manual_seed(seed + 7_777_777)

    def due(self, batch: int) -> bool:
        """Whether the ``batch``-th minibatch of an epoch (0-based) is logged."""
        k = self.cfg.log_interval
        return k > 0 and batch % k == 0

    def measure(
        self, system: DFCSystem, x: torch.Tensor, y: torch.Tensor, update: Update | None
    ) -> xr.Dataset:
        """Batch statistics of the configured metric groups for one minibatch (no ``step``).

        Args:
            system: the DFC system being trained; never modified.
            x: inputs [B, n_0].
            y: labels [B] or regression targets [B, n_L].
            update: the method's update of this minibatch for the alignment group (None:
                recompute it with the logger's method).
        """
        cfg = self.cfg
        n = x.shape[0] if cfg.max_samples is None else min(cfg.max_samples, x.shape[0])
        xs, ys = x[:n], y[:n]
        parts: list[xr.Dataset] = []
        if update is None and ("alignment" in cfg.metrics or "nullspace" in cfg.metrics):
            update = self.method.update(system, x, y, generator=self.generator)
        if "alignment" in cfg.metrics:
            parts.append(
                alignment(
                    system,
                    x,
                    y,
                    update,
                    against=cfg.against,
                    gamma=cfg.gamma,
                    mn_rule=cfg.mn_rule,
                    ssa_rates=cfg.ssa_rates,
                    generator=self.generator,
                )
            )
        if "nullspace" in cfg.metrics and update is not None:
            parts.append(nullspace(system, x, update.grad_W))
        if "conditions" in cfg.metrics:
            parts.append(summarize(conditions(system, xs, ys, gammas=cfg.gammas)))
        if "stability" in cfg.metrics:
            at = cfg.stability_at
            if at == "auto":
                at = "simulated" if self.method.simulates else "analytic"
            st = stability(system, xs, ys, at=at, full_spectrum=False, generator=self.generator)
            parts.append(summarize(st.drop_vars("status", errors="ignore")))
        if "convergence" in cfg.metrics:
            parts.append(summarize(convergence(system, xs, ys, generator=self.generator)))
        # keep every variable's long_name / units; the parts' dataset attributes are dropped
        ds = xr.merge(parts, combine_attrs="drop_conflicts") if parts else xr.Dataset()
        ds.attrs = {}
        return ds

    def log(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        update: Update | None,
        *,
        epoch: int,
        batch: int,
        batches_per_epoch: int,
    ) -> None:
        """Measure and store one record.

        Args:
            system: the DFC system being trained; never modified.
            x: inputs [B, n_0].
            y: labels [B] or regression targets [B, n_L].
            update: the method's update of this minibatch; the alignment uses the gradients
                stored in the parameters' ``.grad`` (the clipped update) when present, else
                ``update``.
            epoch: training epoch (1-based).
            batch: minibatch index within the epoch (0-based).
            batches_per_epoch: minibatches per epoch (for the global index ``step``).
        """
        net = system.network
        if update is not None and all(w.grad is not None for w in net.W):
            gb = (
                [b.grad if b.grad is not None else torch.zeros_like(b) for b in net.b]
                if net.has_bias
                else update.grad_b
            )
            update = Update(
                grad_W=[w.grad.detach().clone() for w in net.W if w.grad is not None],
                grad_b=[g.detach().clone() for g in gb],
                loss=update.loss,
                output=update.output,
            )
        ds = self.measure(system, x, y, update)
        step = (epoch - 1) * batches_per_epoch + batch
        ds = ds.expand_dims(step=[step]).assign_coords(
            step_epoch=("step", [epoch]), step_batch=("step", [batch])
        )
        self.records.append(ds)

    def to_dataset(self) -> xr.Dataset | None:
        """All records stacked along ``step`` (None before the first record)."""
        if not self.records:
            return None
        ds = xr.concat(self.records, dim="step", combine_attrs="drop_conflicts")
        ds.attrs = {"analysis_config": self.cfg.model_dump_json()}
        for name, long in (
            ("step", "global minibatch index (0-based)"),
            ("step_epoch", "training epoch of the step (1-based)"),
            ("step_batch", "minibatch index within the epoch (0-based)"),
        ):
            ds[name].attrs["long_name"] = long
        return ds

    def state(self) -> list[xr.Dataset]:
        """The records, for checkpoints."""
        return list(self.records)

    def load(self, records: list[xr.Dataset] | None) -> None:
        """Restore the ``records`` returned by :meth:`state` (None: no records)."""
        self.records = list(records or [])


def batches_per_epoch(n_samples: int, batch_size: int) -> int:
    """Number of minibatches of ``batch_size`` in an epoch of ``n_samples`` (the last one may
    be smaller).

    Examples:
        >>> batches_per_epoch(1000, 128)
        8
    """
    return math.ceil(n_samples / batch_size)
