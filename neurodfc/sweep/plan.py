"""Planning a sweep: named axes, explicit seeds, one task per (grid point x seed).

A :class:`SweepPlan` holds the sweep folder, its axes (for ``neurodfc sweep`` the grid keys
``section.field``; :mod:`analyses.table1` uses ``dataset`` and ``method``), the seeds and one
:class:`SweepTask` per (point, seed) with its validated config and its run folder
(``SWEEP_DIR/runs/<point>/seed_<s>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurodfc.config import ConfigError, ExperimentConfig, load_config, parse_override

MANIFEST = "sweep.json"
"""File name of the plan, written before any task runs."""


class InvalidGridError(ValueError):
    """A ``--grid`` or ``--seeds`` argument cannot be parsed."""


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
