"""The summary tables of a sweep: mean +- sample std (ddof = 1) over seeds per grid point."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

TABLE_MD = "table.md"
"""File name of the markdown summary table."""
TABLE_CSV = "table.csv"
"""File name of the CSV summary table."""
TABLE_STATS: tuple[tuple[str, str], ...] = (
    ("test_error_percent_at_best_val", "test error % (best val)"),
    ("test_loss_at_best_val", "test loss (best val)"),
    ("final_train_loss", "final train loss"),
)
"""The statistics of ``table.md`` / ``table.csv``: (variable, column title)."""


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
