"""``[components]``: user-defined closed-loop components named by import path.

A config may replace the paper's PI controller and the network's rate neurons by components
written outside the package (see the tutorial ``docs/tutorials/06_pid_controller.md``)::

    [components.controller]
    factory = "my_pid:make_controller"   # "module:callable"
    kwargs = { k_d = 0.4 }               # optional keyword arguments

    [components.neurons]
    factory = "my_layers:softplus_layers"
    kwargs = { tau = [0.1, 0.3] }

Each factory is called once per system as ``factory(cfg, **kwargs)`` with the validated
:class:`~neurodfc.config.ExperimentConfig`: the controller factory returns one
:class:`~neurodfc.components.controller.Controller`, the neurons factory a list of one
:class:`~neurodfc.components.neurons.NeuronLayer` per layer. The module is looked up first in
``search_dir`` (default: the folder of the config file; a relative path is taken relative to
that folder, stored as an absolute path) as ``module.py`` or ``module/__init__.py``, then on
``sys.path``. Loading a config imports the module, checks that the callable exists, calls it
and checks the shape of what it returns (duck-typed: this layer knows no torch), so that a bad
path is answered with one line before anything is computed or written.

Left out (the default), the built-in components run, exactly as without the section.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from neurodfc.config.base import _Section

FACTORY_PATTERN = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*:[A-Za-z_][A-Za-z0-9_]*")
"""The shape of a factory path, ``module:callable`` (``module`` may be dotted)."""
ALLOWED = (
    '"module:callable", a callable in a module found in the config file\'s folder (or '
    "components.*.search_dir) or on sys.path"
)
CONTROLLER_METHODS = ("initial_state", "output", "rates")
"""What a controller component must have (the ``Controller`` protocol)."""
NEURON_METHODS = ("phi", "phi_prime", "increment", "tau")
"""What a neuron-layer component must have (the ``NeuronLayer`` protocol)."""


class ComponentSpec(_Section):
    """One user component: the factory that builds it and its keyword arguments."""

    search_dir: str | None = Field(default=None, validate_default=True)
    """Folder searched first for the factory's module (default: the config file's folder;
    relative: to that folder); stored absolute."""
    factory: str
    """``module:callable``, called as ``callable(cfg, **kwargs)``."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the factory (any TOML values)."""

    @field_validator("search_dir")
    @classmethod
    def _absolute(cls, v: str | None, info: ValidationInfo) -> str | None:
        base = (info.context or {}).get("config_dir")
        if v is None:
            return None if base is None else str(Path(base).resolve())
        p = Path(v).expanduser()
        if not p.is_absolute():
            p = Path(base or ".") / p
        if not p.is_dir():
            raise ValueError(
                f"{json.dumps(v)} is not a folder; must be a folder holding the module (relative: "
                "to the config file's folder)"
            )
        return str(p.resolve())

    def build(self, cfg: Any) -> Any:
        """``factory(cfg, **kwargs)``: the component.

        Args:
            cfg: the experiment config passed to the factory.
        """
        return load_factory(self.factory, self.search_dir)(cfg, **self.kwargs)


class ComponentsConfig(_Section):
    """User-defined closed-loop components (both left out: the built-in ones)."""

    controller: ComponentSpec | None = None
    """Factory of a controller replacing the PI controller of ``[controller]``."""
    neurons: ComponentSpec | None = None
    """Factory of the neuron layers (one per layer) replacing the network's activations."""

    @model_validator(mode="after")
    def _importable(self) -> ComponentsConfig:
        for name in self.custom:
            spec: ComponentSpec = getattr(self, name)
            try:
                load_factory(spec.factory, spec.search_dir)
            except ValueError as err:
                raise ValueError(
                    f"components.{name}.factory = {json.dumps(spec.factory)}: {err}"
                ) from None
        return self

    @property
    def custom(self) -> list[str]:
        """Names of the components set (``controller``, ``neurons``)."""
        return [n for n in ("controller", "neurons") if getattr(self, n) is not None]


def load_factory(path: str, search_dir: str | None = None) -> Callable[..., Any]:
    """The callable named by ``module:callable``; raises ``ValueError`` with one line saying
    what is wrong and what is allowed.

    Args:
        path: ``module:callable``.
        search_dir: folder searched first for ``module.py`` / ``module/__init__.py``.

    Examples:
        >>> load_factory("math:sqrt")(4.0)
        2.0
        >>> load_factory("math:nope")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: module 'math' (...) has no 'nope'; must be "module:callable", ...
    """
    if not FACTORY_PATTERN.fullmatch(path):
        raise ValueError(f"must be {ALLOWED}")
    name, attr = path.split(":")
    module = _import(name, search_dir)
    where = getattr(module, "__file__", None) or name
    if not hasattr(module, attr):
        raise ValueError(f"module {name!r} ({where}) has no {attr!r}; must be {ALLOWED}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ValueError(f"{attr!r} in {where} is a {type(fn).__name__}, not callable")
    return fn


def _import(name: str, search_dir: str | None) -> ModuleType:
    """``name`` from ``search_dir`` (as a file) if it is there, else from ``sys.path``."""
    if search_dir is not None:
        stem = Path(search_dir, *name.split("."))
        for file in (stem.with_suffix(".py"), stem / "__init__.py"):
            if file.is_file():
                return _from_file(name, file)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and name.startswith(err.name):
            where = f"in {search_dir} nor " if search_dir else ""
            raise ValueError(
                f"module {name!r} is found neither {where}on sys.path; must be {ALLOWED}"
            ) from None
        raise ValueError(f"importing {name!r} failed: {err}") from None
    except Exception as err:
        raise ValueError(f"importing {name!r} failed: {type(err).__name__}: {err}") from None


def _from_file(name: str, file: Path) -> ModuleType:
    """Import ``file`` as the module ``name`` (once: a module of that file already imported
    is reused, so the components' classes stay the same objects)."""
    known = sys.modules.get(name)
    if known is not None and getattr(known, "__file__", None) == str(file):
        return known
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ValueError(f"{file} cannot be imported as module {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ValueError(f"importing {file} failed: {type(err).__name__}: {err}") from None
    return module


def check_components(cfg: Any) -> None:
    """Build the components of ``cfg.components`` once and check what the factories return
    (duck-typed); raises ``ValueError`` naming the field.

    Args:
        cfg: the experiment config (its ``components`` and ``network.sizes``).
    """
    comps: ComponentsConfig = cfg.components
    if comps.controller is not None:
        ctrl = _built(comps.controller, "controller", cfg)
        missing = [m for m in CONTROLLER_METHODS if not hasattr(ctrl, m)]
        if missing:
            raise ValueError(
                f"components.controller.factory = {json.dumps(comps.controller.factory)} "
                f"returned a {type(ctrl).__name__} without {', '.join(missing)}; must return a "
                f"Controller ({', '.join(CONTROLLER_METHODS)})"
            )
    if comps.neurons is not None:
        layers = _built(comps.neurons, "neurons", cfg)
        depth = len(cfg.network.sizes) - 1
        ok = isinstance(layers, list | tuple) and len(layers) == depth
        if not ok or any(not hasattr(lay, m) for lay in layers for m in NEURON_METHODS):
            raise ValueError(
                f"components.neurons.factory = {json.dumps(comps.neurons.factory)} returned "
                f"{_describe(layers)}; must return a list of {depth} NeuronLayer objects (one "
                f"per layer of network.sizes, each with {', '.join(NEURON_METHODS)})"
            )


def _built(spec: ComponentSpec, field: str, cfg: Any) -> Any:
    try:
        return spec.build(cfg)
    except Exception as err:
        raise ValueError(
            f"components.{field}.factory = {json.dumps(spec.factory)} failed when called with "
            f"the config and kwargs = {json.dumps(spec.kwargs)}: {type(err).__name__}: {err}"
        ) from None


def _describe(value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
