"""Every public function and class of neurodfc has a docstring that names its arguments.

ruff's D1 rules (pyproject.toml) only check that a docstring exists. This test walks the public
API, i.e. every public module of the package (``__main__`` excluded) and in each the names of
its ``__all__``, or else the public names it defines, and checks:

* every public function, class, method and property has a non-empty docstring;
* every parameter of a function or method (``self``/``cls`` excluded, ``*args``/``**kwargs``
  included) appears as a word in its docstring (a method without its own docstring may rely on
  the one it overrides);
* every parameter of a class's own ``__init__`` appears in the class or ``__init__``
  docstring. Dataclasses and pydantic models are exempt from this check (their constructor
  arguments are their fields, documented as attributes: ``Attributes:`` or a docstring below
  the field, which the API reference renders), and so are protocols (no constructor).

``EXEMPT`` lists objects that need not pass, each with its reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pydantic
import pytest

import neurodfc

# "module.qualname" -> reason (empty: every public object documents its arguments). An entry
# added here must say why; test_exemptions_are_still_needed fails once it is documented.
EXEMPT: dict[str, str] = {}


def public_modules() -> list[ModuleType]:
    """neurodfc and its public submodules (no ``_private`` modules, no ``__main__``)."""
    mods = [neurodfc]
    for info in pkgutil.walk_packages(neurodfc.__path__, prefix="neurodfc."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts):
            continue
        mods.append(importlib.import_module(info.name))
    return mods


def public_names(mod: ModuleType) -> list[str]:
    """``__all__``, else the public functions and classes defined in ``mod`` itself."""
    names = getattr(mod, "__all__", None)
    if names is not None:
        return list(names)
    return [
        n
        for n, obj in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == mod.__name__
    ]


def parameters(fn: Callable[..., Any]) -> list[str]:
    """Parameter names of ``fn`` without ``self`` and ``cls``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        return []
    return [p for p in sig.parameters if p not in ("self", "cls")]


def mentions(doc: str, name: str) -> bool:
    """Whether ``name`` appears in ``doc`` as a word (``x`` does not match ``x0`` or ``max``)."""
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", doc) is not None


Problem = tuple[str, str]  # (module.qualname, what is wrong)


def check_callable(fn: Callable[..., Any], where: str, own_doc: str | None) -> Iterator[Problem]:
    doc = own_doc if own_doc and own_doc.strip() else inspect.getdoc(fn)
    if not doc or not doc.strip():
        yield where, "no docstring"
        return
    missing = [p for p in parameters(fn) if not mentions(doc, p)]
    if missing:
        yield where, f"docstring does not mention {missing}"


def is_record(cls: type) -> bool:
    """Dataclasses and pydantic models (constructor arguments are documented fields) and
    protocols (no constructor of their own)."""
    return (
        dataclasses.is_dataclass(cls)
        or issubclass(cls, pydantic.BaseModel)
        or bool(getattr(cls, "_is_protocol", False))
    )


def check_class(cls: type, where: str) -> Iterator[Problem]:
    doc = cls.__doc__ or ""
    if not doc.strip():
        yield where, "no docstring"
    init = vars(cls).get("__init__")
    if init is not None and inspect.isfunction(init) and not is_record(cls):
        text = doc + (init.__doc__ or "")
        missing = [p for p in parameters(init) if not mentions(text, p)]
        if missing:
            yield where, f"class docstring does not mention constructor arguments {missing}"
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        target = f"{where}.{name}"
        if isinstance(member, property):
            if not (member.__doc__ or "").strip():
                yield target, "property without docstring"
            continue
        fn = member.__func__ if isinstance(member, classmethod | staticmethod) else member
        if not inspect.isfunction(fn):
            continue
        if getattr(fn, "__module__", None) != cls.__module__:
            continue  # generated or borrowed (pydantic, dataclasses)
        yield from check_callable(getattr(cls, name), target, fn.__doc__)


def api_problems() -> dict[str, list[str]]:
    """Problems per function, class, method or module, keyed by ``module.qualname``; objects
    re-exported by several modules are checked once, under their defining module."""
    seen: set[str] = set()
    problems: dict[str, list[str]] = {}
    for mod in public_modules():
        if not (mod.__doc__ or "").strip():
            problems.setdefault(mod.__name__, []).append("no module docstring")
        for name in public_names(mod):
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants: documented by attribute docstrings (mkdocs --strict)
            key = f"{obj.__module__}.{obj.__qualname__}"
            if key in seen:
                continue
            seen.add(key)
            found = (
                check_class(obj, key) if inspect.isclass(obj) else check_callable(obj, key, None)
            )
            for where, what in found:
                problems.setdefault(where, []).append(what)
    return problems


def test_every_public_function_and_class_documents_its_arguments() -> None:
    problems = api_problems()
    unexpected = {k: v for k, v in problems.items() if k not in EXEMPT}
    assert not unexpected, "undocumented public API:\n" + "\n".join(
        f"{where}: {what}" for where, whats in unexpected.items() for what in whats
    )


def test_exemptions_are_still_needed() -> None:
    problems = api_problems()
    stale = [k for k in EXEMPT if k not in problems]
    assert not stale, f"these objects are documented now; remove them from EXEMPT: {stale}"


@pytest.mark.parametrize(
    ("doc", "name", "expected"),
    [("x: inputs [B, n_0]", "x", True), ("the maximum", "max", False), ("x0 only", "x", False)],
)
def test_mentions_matches_whole_words(doc: str, name: str, expected: bool) -> None:
    assert mentions(doc, name) is expected


def test_top_level_names_resolve_to_their_module_objects() -> None:
    """``import neurodfc as nd``: every exported name is the object of its module (and stays so
    after the defining modules are imported), subpackages are reachable, unknown names raise."""
    import neurodfc.report  # noqa: F401  (a submodule import must not shadow an export)

    for name in neurodfc.__all__:
        obj = getattr(neurodfc, name)
        module = importlib.import_module(neurodfc._EXPORTS[name])
        assert obj is getattr(module, name)
        assert getattr(neurodfc, name) is obj
    assert neurodfc.analysis.__name__ == "neurodfc.analysis"
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = neurodfc.no_such_name  # type: ignore[attr-defined]
