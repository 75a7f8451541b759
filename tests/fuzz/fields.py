"""Field-type helpers shared by the in-suite config fuzzing (``tests/unit/test_config_fuzz.py``)
and the standalone harness (``tests/fuzz/fuzz_cli.py``)."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin


def unwrap(tp: Any, meta: list[Any]) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` (collecting its constraints into ``meta``) and ``| None``.

    Args:
        tp: a field's annotation.
        meta: the constraints collected so far (e.g. the field's ``metadata``).

    Returns:
        The bare type and all constraints.
    """
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *more = get_args(tp)
            meta = [*meta, *(m for x in more for m in getattr(x, "metadata", [x]))]
        elif origin in (Union, types.UnionType) and type(None) in get_args(tp):
            args = [a for a in get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
        else:
            return tp, meta
