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
    """Angle in degrees between two tensors of the same number of elements, both flattened.

    ``degrees(arccos(<a, b> / (|a| |b|)))`` in [0, 180]; the cosine is clamped to [-1, 1]
    against rounding.

    Args:
        a: any shape.
        b: any shape with ``b.numel() == a.numel()``.

    Returns:
        A 0-dim tensor (degrees); NaN if ``a`` or ``b`` is zero.

    Examples:
        >>> import torch
        >>> angle(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
        tensor(45.)
        >>> angle(torch.eye(2), -torch.eye(2))
        tensor(180.)
    """
    a, b = a.reshape(-1), b.reshape(-1)
    if a.numel() != b.numel():
        raise ValueError(f"angle needs tensors of equal size, got {a.numel()} and {b.numel()}")
    return batched_angle(a.unsqueeze(0), b.unsqueeze(0))[0]


def batched_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row angle in degrees, as :func:`angle` for each row (each row flattened).

    Args:
        a: [B, ...].
        b: [B, ...], the same number of elements per row as ``a``.

    Returns:
        [B] angles in [0, 180] degrees; NaN where a row of ``a`` or ``b`` has zero norm.

    Examples:
        >>> import torch
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> b = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
        >>> batched_angle(a, b)
        tensor([90., nan])
    """
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
    """An ``xr.Variable`` over ``dims`` holding ``data`` (a tensor or array-like) with
    ``long_name``, ``units`` and any further ``attrs``."""
    arr = to_numpy(data) if isinstance(data, torch.Tensor) else np.asarray(data)
    return xr.Variable(dims, arr, {"long_name": long_name, "units": units, **attrs})


def finish(ds: xr.Dataset, system: DFCSystem, created_by: str, **attrs: Any) -> xr.Dataset:
    """Attach the config of ``system`` (JSON), the creating function ``created_by`` and the
    scalar ``attrs`` (booleans stored as 0/1) to ``ds``; returns ``ds``."""
    ds.attrs["config"] = system.cfg.model_dump_json()
    ds.attrs["created_by"] = created_by
    for k, v in attrs.items():
        ds.attrs[k] = v if not isinstance(v, bool) else int(v)
    return ds


def layer_coord(depth: int) -> np.ndarray:
    """Layer numbers 1..L for ``depth`` = L layers (the paper's indexing)."""
    return np.arange(1, depth + 1)


def nan_if_none(x: float | None) -> float:
    """``x`` or NaN."""
    return math.nan if x is None else float(x)
