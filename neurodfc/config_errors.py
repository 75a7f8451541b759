"""One-line messages for invalid configurations.

A pydantic :class:`~pydantic.ValidationError` lists its problems with pydantic's own words
("Input should be greater than 0"). :func:`describe_validation_error` turns it into one line
that names the source (file), each bad field, its value written as in TOML, and what the field
allows, derived from the field's declaration (type and bounds), so that every message states
the allowed values without a hand-written text per field::

    models/x.toml: controller.alpha = -0.1: must be a finite number >= 0

This module sits at the config layer: it knows pydantic models, nothing of neurodfc.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

MAX_SHOWN = 4
"""Problems spelled out in one message (the rest are counted)."""
MAX_VALUE_CHARS = 60
"""Longest value written into a message (longer ones are cut with ``...``)."""

_NOUNS = {
    bool: ("true or false", "booleans (true or false)"),
    int: ("an integer", "integers"),
    float: ("a finite number", "finite numbers"),
    str: ("a string", "strings"),
}


def toml_repr(value: Any) -> str:
    """``value`` written as a TOML literal (``true``, ``"text"``, ``inf``, ``[1, 2]``), cut to
    :data:`MAX_VALUE_CHARS` characters.

    Args:
        value: a value read from TOML or given on the command line.

    Examples:
        >>> toml_repr(True), toml_repr("yes"), toml_repr(float("nan")), toml_repr([1, 2.5])
        ('true', '"yes"', 'nan', '[1, 2.5]')
    """
    text = _repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text


def _repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"{value:.3e} (an integer)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        tail = ", ...]" if len(value) > 12 else "]"
        return "[" + ", ".join(_repr(v) for v in value[:12]) + tail
    if isinstance(value, dict):
        return "a table {" + ", ".join(str(k) for k in list(value)[:6]) + "}"
    return repr(value)


# ----------------------------------------------------------------------- allowed values
def _number(v: Any) -> str:
    if isinstance(v, int):
        return "2**63 - 1" if v == 2**63 - 1 else str(v)
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)


def _bounds(metadata: Iterable[Any]) -> str:
    lo: tuple[str, str, Any] | None = None
    hi: tuple[str, str, Any] | None = None
    for m in metadata:
        if isinstance(m, Gt):
            lo = ("(", ">", m.gt)
        elif isinstance(m, Ge):
            lo = ("[", ">=", m.ge)
        elif isinstance(m, Lt):
            hi = (")", "<", m.lt)
        elif isinstance(m, Le):
            hi = ("]", "<=", m.le)
    if lo and hi:
        return f" in {lo[0]}{_number(lo[2])}, {_number(hi[2])}{hi[0]}"
    if lo:
        return f" {lo[1]} {_number(lo[2])}"
    if hi:
        return f" {hi[1]} {_number(hi[2])}"
    return ""


def _length(metadata: Iterable[Any]) -> str:
    lo = next((m.min_length for m in metadata if isinstance(m, MinLen)), None)
    hi = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    if lo is not None and lo == hi:
        return f"{lo} "
    return f"at least {lo} " if lo else ""


def describe_type(tp: Any, metadata: Sequence[Any] = (), plural: bool = False) -> str:
    """What a field of type ``tp`` with constraints ``metadata`` allows, in words.

    Args:
        tp: the annotation (``float``, ``list[int]``, ``Literal[...]``, ``X | None`` ...).
        metadata: constraint objects (``annotated_types.Gt``, ``Ge``, ``Lt``, ``Le``,
            ``MinLen``, ...), as pydantic keeps them in ``FieldInfo.metadata``.
        plural: describe several values (the items of a list).

    Examples:
        >>> from annotated_types import Ge, Lt
        >>> describe_type(float, [Ge(0), Lt(1)])
        'a finite number in [0, 1)'
        >>> describe_type(Literal["mse", "cross_entropy"])
        'one of "mse", "cross_entropy"'
    """
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        return describe_type(base, [*metadata, *_flatten(meta)], plural)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        text = " or ".join(describe_type(a, metadata, plural) for a in args)
        return text + (" (or left out)" if len(args) < len(get_args(tp)) else "")
    if origin is Literal:
        return "one of " + ", ".join(_repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        n = f"{len(args)} " if origin is tuple else _length(metadata)
        return f"{'lists' if plural else 'a list'} of {n}{describe_type(args[0], (), True)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a table of settings"
    if origin is dict:
        return "a table"
    if tp in _NOUNS:
        noun = _NOUNS[tp][1 if plural else 0]
        return noun + (_bounds(metadata) if tp in (int, float) else "")
    return getattr(tp, "__name__", str(tp))


def _flatten(meta: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for m in meta:
        out.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return out


def _item_type(tp: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """The type of one item of the list/tuple type ``tp`` (optional and annotated unwrapped)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *meta = get_args(tp)
            metadata = [*metadata, *_flatten(meta)]
        elif origin in (Union, types.UnionType):
            seq = [a for a in get_args(tp) if get_origin(a) in (list, tuple, Annotated)]
            if not seq:
                return tp, metadata
            tp = seq[0]
        elif origin in (list, tuple):
            return get_args(tp)[0], []
        else:
            return tp, metadata


# ----------------------------------------------------------------------- the message
def _locate(model: type[BaseModel], loc: Sequence[Any]) -> tuple[str, str | None, list[str]]:
    """``(field path, allowed values, keys of the innermost section)`` of an error location.

    The path walks section names and the field name, then list indices as ``[i]`` (union
    member tags that pydantic adds are dropped); allowed is ``None`` for an unknown key."""
    cur: type[BaseModel] | None = model
    parts: list[str] = []
    for i, part in enumerate(loc):
        if cur is None or not isinstance(part, str) or part not in cur.model_fields:
            keys = list(cur.model_fields) if cur is not None else []
            return ".".join([*parts, str(part)]), None, keys
        info = cur.model_fields[part]
        parts.append(part)
        ann = _optional_model(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cur = ann
            continue
        tp, meta = ann, list(info.metadata)
        path = ".".join(parts)
        for rest in loc[i + 1 :]:
            if isinstance(rest, int):
                path += f"[{rest}]"
                tp, meta = _item_type(tp, meta)
        return path, describe_type(tp, meta), []
    return ".".join(parts), "a table of settings", list(cur.model_fields) if cur else []


def _optional_model(ann: Any) -> Any:
    """The model class of an optional section (``X | None`` with ``X`` a model), else
    ``ann``."""
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0]
    return ann


def _problem(model: type[BaseModel], e: Any, marks: Sequence[str]) -> tuple[str, str]:
    """``(field path, one-line text)`` of one pydantic error."""
    loc, kind = tuple(e["loc"]), e["type"]
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a list too short: the list
        loc = loc[:-1]
    path, allowed, keys = _locate(model, loc)
    mark = " (from the command line)" if any(_under(path, m) for m in marks) else ""
    if kind == "extra_forbidden":
        where = f"[{path.rsplit('.', 1)[0]}]" if "." in path else "the top level"
        return path, f"{path}{mark}: unknown key ({where} has {', '.join(keys)})"
    if kind == "missing" and not (loc and isinstance(loc[-1], int)):
        return path, f"{path}{mark}: missing; must be {allowed}"
    msg = str(e["msg"]).replace("\n", " ")
    if kind in ("value_error", "assertion_error"):
        if msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        if not loc or path.split(".")[-1] in msg:
            return path, msg + mark
        return path, f"{path} = {toml_repr(e.get('input'))}{mark}: {msg}"
    return path, f"{path} = {toml_repr(e.get('input'))}{mark}: must be {allowed or msg}"


def _under(path: str, key: str) -> bool:
    """Whether ``path`` lies under the dotted ``key`` or ``key`` under ``path``."""
    return path == key or path.startswith((key + ".", key + "[")) or key.startswith(path + ".")


def validation_problems(
    err: ValidationError, model: type[BaseModel], marks: Sequence[str] = ()
) -> list[str]:
    """One text per bad field of ``err``: ``field = value: must be <allowed>`` (a field that
    fails several ways, e.g. both members of a union, is listed once).

    Args:
        err: the validation error of ``model``.
        model: the model class that was validated (to look up each field's declaration).
        marks: dotted keys set on the command line; problems under them say so.
    """
    seen: dict[str, str] = {}
    for e in err.errors():
        path, text = _problem(model, e, marks)
        seen.setdefault(path, text)
    return list(seen.values())


def one_line(source: str, problems: Sequence[str]) -> str:
    """``source: problem; problem ...`` with at most :data:`MAX_SHOWN` problems spelled out.

    Args:
        source: where the values came from (a file name), put first.
        problems: the texts of :func:`validation_problems`.
    """
    shown = "; ".join(problems[:MAX_SHOWN])
    more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
    return f"{source}: {shown}{more}"
