"""Typed configuration of a DFC experiment (pydantic v2, frozen, ``extra="forbid"``).

Every field documents its paper symbol and unit. Time is measured in units of the controller
time constant ``tau_u`` (``tau_u = 1``). A TOML file in ``models/`` maps one-to-one onto
:class:`ExperimentConfig`: one table per section (``[network]``, ``[controller]``, ...).

Validation is strict: TOML types are enforced (no bool for a number, no string for a bool, an
integer field takes no float; an integer for a float field is fine), every float is finite, and
each field declares its range. Cross-field rules (checked before any compute starts) live in
:meth:`ExperimentConfig._check_consistency` and :meth:`ExperimentConfig._check_strong`. A bad
config raises :class:`ConfigError` with one line naming the file, each bad field, its value and
what it allows (``neurodfc.config_errors``); what a config needs from the machine (device,
memory, data, output paths) is checked by ``neurodfc.preflight``.

Every name below is importable from ``neurodfc.config``; the modules hold, by concern:

* :mod:`neurodfc.config.base`: the strict base of every section, :class:`ConfigError`, the
  shared field types (solver and method names, seeds, Adam's betas) and bounds;
* :mod:`neurodfc.config.system`: ``[network]``, ``[controller]``, ``[feedback]``,
  ``[apical]``, ``[noise]``;
* :mod:`neurodfc.config.simulation`: ``[simulation]``;
* :mod:`neurodfc.config.learning`: ``[loss]``, ``[data]``, ``[method]``, ``[training]``,
  ``[feedback_learning]``;
* :mod:`neurodfc.config.analysis`: ``[analysis]``;
* :mod:`neurodfc.config.strong`: ``[strong]``;
* :mod:`neurodfc.config.components`: ``[components]`` (user-defined controller and neurons
  named by import path);
* :mod:`neurodfc.config.experiment`: :class:`ExperimentConfig` and its cross-section rules;
* :mod:`neurodfc.config.io`: :func:`load_config`, :func:`config_from_dict`, ``--set``
  parsing (:func:`parse_override`), :func:`to_toml`.
"""

from __future__ import annotations

from neurodfc.config.analysis import AlignmentReference, AnalysisConfig, AnalysisMetric
from neurodfc.config.base import (
    ETDRK4_TOLERANCES,
    FIXED_STEP_SOLVERS,
    MAX_EPOCHS,
    MAX_SEED,
    MAX_STEPS,
    MAX_TIME,
    ODEINT_TOLERANCES,
    Activation,
    Betas,
    ConfigError,
    IntegratingSolver,
    MethodName,
    Seed,
    Solver,
    UnitFloat,
)
from neurodfc.config.components import ComponentsConfig, ComponentSpec
from neurodfc.config.experiment import ExperimentConfig
from neurodfc.config.io import config_from_dict, load_config, load_toml, parse_override, to_toml
from neurodfc.config.learning import (
    DataConfig,
    FeedbackLearningConfig,
    LossConfig,
    MethodConfig,
    TrainingConfig,
)
from neurodfc.config.simulation import SimulationConfig
from neurodfc.config.strong import StrongConfig
from neurodfc.config.system import (
    ApicalConfig,
    ControllerConfig,
    FeedbackConfig,
    NetworkConfig,
    NoiseConfig,
)

__all__ = [
    "ETDRK4_TOLERANCES",
    "FIXED_STEP_SOLVERS",
    "MAX_EPOCHS",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_TIME",
    "ODEINT_TOLERANCES",
    "Activation",
    "AlignmentReference",
    "AnalysisConfig",
    "AnalysisMetric",
    "ApicalConfig",
    "ComponentSpec",
    "ComponentsConfig",
    "Betas",
    "ConfigError",
    "ControllerConfig",
    "DataConfig",
    "ExperimentConfig",
    "FeedbackConfig",
    "FeedbackLearningConfig",
    "IntegratingSolver",
    "LossConfig",
    "MethodConfig",
    "MethodName",
    "NetworkConfig",
    "NoiseConfig",
    "Seed",
    "SimulationConfig",
    "Solver",
    "StrongConfig",
    "TrainingConfig",
    "UnitFloat",
    "config_from_dict",
    "load_config",
    "load_toml",
    "parse_override",
    "to_toml",
]
