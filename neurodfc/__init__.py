"""Deep Feedback Control (Meulemans et al., NeurIPS 2021) in PyTorch.

The most used names are available at the top level (``import neurodfc as nd``;
``nd.load_config``, ``nd.DFCSystem``, ``nd.simulate``, ``nd.lemma1``, ``nd.train``,
``nd.load_run`` ..., imported on first use), and the subpackages
``nd.analysis``, ``nd.methods``, ``nd.data``, ``nd.strong``. Everything lives in the modules:

* :mod:`neurodfc.config`: typed, frozen experiment configs (``load_config``);
* :mod:`neurodfc.network` and :mod:`neurodfc.components`: the network and the equations of
  the closed loop (neurons, output target, controller, feedback initialisation);
* :mod:`neurodfc.system`: ``DFCSystem``, the output Jacobian, Lemma 1, the linearised
  closed loop;
* :mod:`neurodfc.solve`: ``simulate`` with the reference Euler scheme or continuous-time
  solvers; :mod:`neurodfc.results`: simulations as ``xarray.Dataset``;
* :mod:`neurodfc.methods`: BP, DFA, DFC, DFC-SS, DFC-SSA, MN, GN and feedback learning;
  :mod:`neurodfc.training` and :mod:`neurodfc.sweep`: training runs and sweeps;
* :mod:`neurodfc.analysis`: alignment, Conditions 1-3, stability and convergence;
  :mod:`neurodfc.report` and :mod:`neurodfc.figures`: reports and figures of results;
* :mod:`neurodfc.strong`: Strong-DFC; :mod:`neurodfc.data`: the data sets.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ExperimentConfig": "neurodfc.config",
    "ConfigError": "neurodfc.config",
    "load_config": "neurodfc.config",
    "config_from_dict": "neurodfc.config",
    "to_toml": "neurodfc.config",
    "DFCNetwork": "neurodfc.network",
    "DFCSystem": "neurodfc.system",
    "VectorField": "neurodfc.system",
    "lemma1": "neurodfc.system",
    "jacobian": "neurodfc.system",
    "closed_loop_matrices": "neurodfc.system",
    "Controller": "neurodfc.components.controller",
    "PIController": "neurodfc.components.controller",
    "simulate": "neurodfc.solve",
    "Solution": "neurodfc.solve",
    "Status": "neurodfc.solve",
    "solution_to_xarray": "neurodfc.results",
    "write_netcdf": "neurodfc.results",
    "load_data": "neurodfc.experiment",
    "simulate_experiment": "neurodfc.experiment",
    "get_method": "neurodfc.methods",
    "train": "neurodfc.training",
    "train_ensemble": "neurodfc.ensemble",
    "load_run": "neurodfc.training",
}
_SUBPACKAGES = ("analysis", "methods", "data", "strong", "components")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a top-level name (or subpackage) on first use (PEP 562)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"neurodfc.{name}")
    raise AttributeError(f"module 'neurodfc' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The exported names and subpackages."""
    return sorted({*globals(), *_EXPORTS, *_SUBPACKAGES})
