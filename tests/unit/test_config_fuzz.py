"""Generated bad values for every config field, through the ``neurodfc`` command in-process:
exit 2, one line on stderr naming the field, no traceback, nothing written (issue 13).

The fields and what each allows are read from :class:`~neurodfc.config.ExperimentConfig`
itself (type and bounds), so a field added later is fuzzed too. Values go in through a config
file (written with tomli-w, so ``nan`` and ``inf`` are TOML literals) or through ``--set``.
A second property: valid values generated within each field's bounds round-trip through
:func:`~neurodfc.config.to_toml` exactly.
"""

from __future__ import annotations

import math
import tempfile
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import tomli_w
from annotated_types import Ge, Gt, Le, Lt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from neurodfc.cli import main
from neurodfc.config import ConfigError, ExperimentConfig, config_from_dict, to_toml
from tests.fuzz.fields import unwrap as _unwrap

BASE: dict[str, Any] = {
    "name": "tiny",
    "network": {"sizes": [3, 4, 2]},
    "simulation": {"solver": "euler_reference", "dt": 0.05, "steps": 40},
    "data": {"n_train": 8, "n_val": 4, "n_test": 4},
    "training": {"epochs": 1, "batch_size": 4},
}
"""A tiny valid config: were a bad value accepted, the run would end in a second (and fail the
test) instead of training for minutes."""
NAN, INF = float("nan"), float("inf")


def _section(ann: Any) -> Any:
    """The model of an optional section (``X | None``, e.g. ``[components.controller]``)."""
    args = [a for a in get_args(ann) if a is not type(None)]
    if get_origin(ann) in (Union, types.UnionType) and len(args) == 1:
        if isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0]
    return ann


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, info in model.model_fields.items():
        ann = _section(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_leaves(ann, (*prefix, name)))
        else:
            out.append((*prefix, name))
    return out


def _info(path: tuple[str, ...]) -> FieldInfo:
    model: Any = ExperimentConfig
    for part in path[:-1]:
        model = _section(model.model_fields[part].annotation)
    return model.model_fields[path[-1]]


FIELDS = _leaves(ExperimentConfig)


def _bounds(meta: list[Any]) -> tuple[Any, Any, Any, Any]:
    """``(gt, ge, lt, le)`` of a field's constraints (None where absent)."""
    pick = {Gt: "gt", Ge: "ge", Lt: "lt", Le: "le"}
    found: dict[str, Any] = {}
    for m in meta:
        for cls, attr in pick.items():
            if isinstance(m, cls):
                found[attr] = getattr(m, attr)
    return found.get("gt"), found.get("ge"), found.get("lt"), found.get("le")


# ----------------------------------------------------------------------- invalid values
WRONG_FOR = {
    bool: [1, 0, "yes", "true", 1.0, [True]],
    int: [True, 2.5, 3.0, "3", [3], {"a": 1}],
    float: [True, False, "0.5", [0.5], {"a": 1}, NAN, INF, -INF],
    str: [1, True, 0.5, ["a"], {"a": "b"}],
}


def _numbers_out_of_range(tp: Any, meta: list[Any]) -> st.SearchStrategy[Any]:
    gt, ge, lt, le = _bounds(meta)
    outs: list[st.SearchStrategy[Any]] = []
    if tp is int:
        if ge is not None or gt is not None:
            lo = ge if ge is not None else gt + 1
            outs.append(st.integers(max_value=lo - 1, min_value=lo - 10**20))
        if le is not None or lt is not None:
            hi = le if le is not None else lt - 1
            outs.append(st.integers(min_value=hi + 1, max_value=hi + 10**20))
    else:
        finite = {"allow_nan": False, "allow_infinity": False}
        if gt is not None:
            outs.append(st.floats(max_value=gt, **finite))
        if ge is not None:
            outs.append(st.floats(max_value=ge, exclude_max=True, **finite))
        if lt is not None:
            outs.append(st.floats(min_value=lt, **finite))
        if le is not None:
            outs.append(st.floats(min_value=le, exclude_min=True, **finite))
    return st.one_of(outs) if outs else st.nothing()


def invalid_values(path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Values the field ``path`` must refuse."""
    info = _info(path)
    tp, meta = _unwrap(info.annotation, list(info.metadata))
    origin = get_origin(tp)
    if origin is Literal:
        return st.sampled_from(["no_such_option", 1, True, ["x"]])
    if origin in (Union, types.UnionType):  # str | list[str]: activations
        return st.sampled_from([1, True, [1], "no_such_option", {"a": 1}])
    if origin is dict:  # [components.*] kwargs: a table of any values
        return st.sampled_from([1, True, "x", [1]])
    if origin in (list, tuple):
        item, item_meta = _unwrap(get_args(tp)[0], [])
        bad_items = st.one_of(
            st.sampled_from(WRONG_FOR.get(item, [1.5])),
            _numbers_out_of_range(item, item_meta) if item in (int, float) else st.nothing(),
            st.sampled_from(["no_such_option"]) if get_origin(item) is Literal else st.nothing(),
        )
        good = 0.5 if item is float else 3
        n = 2 if origin is tuple else 1
        return st.one_of(
            st.sampled_from(["not a list", 1.5, {"a": 1}]),
            bad_items.map(lambda v: [v] + [good] * (n - 1)),
            st.just([good] * (n + 1)) if origin is tuple else st.nothing(),
        )
    if tp in (int, float):
        return st.one_of(st.sampled_from(WRONG_FOR[tp]), _numbers_out_of_range(tp, meta))
    return st.sampled_from(WRONG_FOR.get(tp, [object()]))


def _literal(v: Any) -> str:
    """``v`` as a TOML literal for ``--set``."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_literal(x)}" for k, x in v.items()) + "}"
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip().replace("\n", " ")


CASES = st.sampled_from(FIELDS).flatmap(lambda p: st.tuples(st.just(p), invalid_values(p)))


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=CASES, command=st.sampled_from(["simulate", "train"]), via=st.booleans())
def test_invalid_value_is_one_clean_line(
    capsys: pytest.CaptureFixture[str], case: tuple[tuple[str, ...], Any], command: str, via: bool
) -> None:
    path, value = case
    dotted = ".".join(path)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        tree = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
        cfg = Path(tmp) / "bad.toml"
        if via:  # in the config file
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
            extra = []
        else:
            extra = ["--set", f"{dotted}={_literal(value)}"]
        cfg.write_text(tomli_w.dumps(tree))
        argv = [command, str(cfg), "--out", str(out), *extra]
        capsys.readouterr()
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert dotted in err, (dotted, err)
        assert not out.exists()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    middle=st.integers(min_value=10**9, max_value=10**13),
    n_train=st.integers(min_value=10**11, max_value=10**18),
    which=st.sampled_from(["network.sizes", "data.n_train"]),
    command=st.sampled_from(["simulate", "train"]),
)
def test_huge_sizes_are_refused_with_the_memory_needed(
    capsys: pytest.CaptureFixture[str], middle: int, n_train: int, which: str, command: str
) -> None:
    item = f"network.sizes=[3, {middle}, 2]" if which == "network.sizes" else f"{which}={n_train}"
    with tempfile.TemporaryDirectory() as tmp:
        out, cfg = Path(tmp) / "out", Path(tmp) / "tiny.toml"
        cfg.write_text(tomli_w.dumps(BASE))
        capsys.readouterr()
        rc = main([command, str(cfg), "--out", str(out), "--set", item])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert which in err and "memory" in err and "available" in err, err
        assert not out.exists()


# ----------------------------------------------------------------------- valid round trip
def _valid_values(path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    info = _info(path)
    tp, meta = _unwrap(info.annotation, list(info.metadata))
    gt, ge, lt, le = _bounds(meta)
    if tp is float:
        lo = ge if ge is not None else gt
        hi = le if le is not None else lt
        return st.floats(
            min_value=lo,
            max_value=hi if hi is not None else 1e300,
            exclude_min=gt is not None,
            exclude_max=lt is not None,
            allow_nan=False,
        )
    if tp is bool:
        return st.booleans()
    if get_origin(tp) is Literal:
        return st.sampled_from(get_args(tp))
    return st.nothing()


ROUND_TRIP_FIELDS = [p for p in FIELDS if not _valid_values(p).is_empty]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_valid_values_round_trip_through_toml(data: st.DataObject) -> None:
    tree: dict[str, Any] = {}
    for path in data.draw(st.lists(st.sampled_from(ROUND_TRIP_FIELDS), max_size=6, unique=True)):
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = data.draw(_valid_values(path))
    try:
        cfg = config_from_dict(tree)
    except ConfigError:  # a cross-field rule (e.g. dt <= tau_ratio): not this test's subject
        return
    again = config_from_dict(tomllib.loads(to_toml(cfg)))
    assert again == cfg
    for path in ROUND_TRIP_FIELDS:  # floats bit-identical, not just equal after rounding
        a, b = cfg, again
        for part in path:
            a, b = getattr(a, part), getattr(b, part)
        if isinstance(a, float):
            assert math.copysign(1, a) == math.copysign(1, b) and a.hex() == b.hex()


def test_every_field_is_fuzzed() -> None:
    """Each leaf field yields invalid values (no field slips through the catalogue)."""
    for path in FIELDS:
        assert not invalid_values(path).is_empty, path
