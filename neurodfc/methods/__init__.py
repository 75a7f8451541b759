"""Learning methods: one small module each, one interface (:class:`Method`)."""

from neurodfc.methods.base import Method, Update
from neurodfc.methods.bp import BP
from neurodfc.methods.dfa import DFA
from neurodfc.methods.dfc import DFC, DFCSS
from neurodfc.methods.dfc_ssa import DFCSSA
from neurodfc.methods.feedback_learning import feedback_gradients
from neurodfc.methods.mn import GN, MN, gauss_newton_step, min_norm_dv
from neurodfc.strong.methods import StrongDFC, StrongDFCSingle

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (BP, DFA, DFC, DFCSS, DFCSSA, MN, GN, StrongDFC, StrongDFCSingle)
}
"""Every method class by its name (the config's ``method.name``)."""


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
        >>> get_method("dfc").simulates
        True
    """
    try:
        return METHODS[name]()
    except KeyError:
        raise ValueError(f"unknown method {name!r}; allowed: {sorted(METHODS)}") from None


__all__ = [
    "BP",
    "DFA",
    "DFC",
    "DFCSS",
    "DFCSSA",
    "GN",
    "MN",
    "METHODS",
    "Method",
    "Update",
    "feedback_gradients",
    "gauss_newton_step",
    "get_method",
    "min_norm_dv",
]
