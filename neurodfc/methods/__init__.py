"""Learning methods: one small module each, one interface (:class:`Method`).

The registry :data:`METHODS` maps each config name to the import path of its class; a class is
imported when first asked for (:func:`method_class`), so this package imports none of the
modules it lists. That keeps the dependencies one-way: :mod:`neurodfc.strong.methods` builds on
:mod:`neurodfc.methods.base` and is found here by name only.
"""

from __future__ import annotations

import importlib

from neurodfc.methods.base import Capabilities, Method, Update
from neurodfc.methods.bp import BP
from neurodfc.methods.dfa import DFA
from neurodfc.methods.dfc import DFC, DFCSS
from neurodfc.methods.dfc_ssa import DFCSSA
from neurodfc.methods.feedback_learning import feedback_gradients
from neurodfc.methods.mn import GN, MN, gauss_newton_step, min_norm_dv

METHODS: dict[str, str] = {
    "bp": "neurodfc.methods.bp:BP",
    "dfa": "neurodfc.methods.dfa:DFA",
    "dfc": "neurodfc.methods.dfc:DFC",
    "dfc_ss": "neurodfc.methods.dfc:DFCSS",
    "dfc_ssa": "neurodfc.methods.dfc_ssa:DFCSSA",
    "mn": "neurodfc.methods.mn:MN",
    "gn": "neurodfc.methods.mn:GN",
    "strong_dfc": "neurodfc.strong.methods:StrongDFC",
    "strong_dfc_single": "neurodfc.strong.methods:StrongDFCSingle",
}
"""Every method by its name (the config's ``method.name``): ``"module:Class"`` of its class."""


def method_class(name: str) -> type[Method]:
    """The class of the method called ``name``, imported on first use.

    Args:
        name: a key of :data:`METHODS` (the config's ``method.name``).

    Raises:
        ValueError: for any other name (the message lists the allowed names).

    Examples:
        >>> method_class("dfc_ss").__name__, method_class("strong_dfc").capabilities.simulates
        ('DFCSS', True)
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {sorted(METHODS)}")
    module, _, cls_name = METHODS[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Method) and cls.name == name):
        raise TypeError(f"METHODS[{name!r}] = {METHODS[name]!r} is not a Method named {name!r}")
    return cls


def get_method(name: str) -> Method:
    """A new instance of the method called ``name``.

    Args:
        name: one of ``bp``, ``dfa``, ``dfc``, ``dfc_ss``, ``dfc_ssa``, ``mn``, ``gn``,
            ``strong_dfc``, ``strong_dfc_single`` (the config's ``method.name``).

    Raises:
        ValueError: for any other name.

    Examples:
        >>> m = get_method("dfc_ssa")
        >>> m.name, m.simulates
        ('dfc_ssa', False)
        >>> get_method("strong_dfc_single").capabilities.feedback_in_update
        True
    """
    return method_class(name)()


__all__ = [
    "BP",
    "DFA",
    "DFC",
    "DFCSS",
    "DFCSSA",
    "GN",
    "MN",
    "METHODS",
    "Capabilities",
    "Method",
    "Update",
    "feedback_gradients",
    "gauss_newton_step",
    "get_method",
    "method_class",
    "min_norm_dv",
]
