"""Helpers shared by the analysis modules: angles, numpy conversion, Dataset attributes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from neurodfc.system import DFCSystem

DEGREE = "degree"


def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between two tensors of the same number of elements, both flattened:
    ``degrees(arccos(<a, b> / (|a| |b|)))`` in [0, 180]; NaN if either is zero (a 0-dim
    tensor). The cosine is clamped to [-1, 1] against rounding."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.numel() != b.numel():
        raise ValueError(f"angle needs tensors of equal size, got {a.numel()} and {b.numel()}")
    return batched_angle(a.unsqueeze(0), b.unsqueeze(0))[0]


def batched_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row angle in degrees between ``a`` [B, ...] and ``b`` [B, ...] (each row flattened)
    -> [B]; NaN where a row has zero norm."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    na = torch.linalg.vector_norm(a, dim=1)
    nb = torch.linalg.vector_norm(b, dim=1)
    cos = (a * b).sum(1) / (na * nb)
    cos = torch.where((na > 0) & (nb > 0), cos.clamp(-1.0, 1.0), torch.nan)
    return torch.rad2deg(torch.arccos(cos))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A detached CPU numpy copy of ``t``."""
    return t.detach().cpu().numpy()


def var(
    dims: tuple[str, ...], data: Any, long_name: str, units: str = "1", **attrs: Any
) -> xr.Variable:
    """An ``xr.Variable`` with ``long_name`` and ``units`` attributes."""
    arr = to_numpy(data) if isinstance(data, torch.Tensor) else np.asarray(data)
    return xr.Variable(dims, arr, {"long_name": long_name, "units": units, **attrs})


def finish(ds: xr.Dataset, system: DFCSystem, created_by: str, **attrs: Any) -> xr.Dataset:
    """Attach the run's config (JSON), the creating function and scalar attributes."""
    ds.attrs["config"] = system.cfg.model_dump_json()
    ds.attrs["created_by"] = created_by
    for k, v in attrs.items():
        ds.attrs[k] = v if not isinstance(v, bool) else int(v)
    return ds


def layer_coord(depth: int) -> np.ndarray:
    """Layer numbers 1..L (the paper's indexing)."""
    return np.arange(1, depth + 1)


def nan_if_none(x: float | None) -> float:
    """``x`` or NaN."""
    return math.nan if x is None else float(x)
