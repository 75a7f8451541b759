"""The shared base of the config sections and the field types and bounds they share.

:class:`_Section` makes every section frozen and strict (``extra="forbid"``, TOML types
enforced, finite floats); :class:`ConfigError` is the error every bad config raises.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Activation = Literal["tanh", "linear", "relu", "sigmoid"]
Solver = Literal[
    "euler_reference",
    "euler",
    "midpoint",
    "rk4",
    "dopri5",
    "bosh3",
    "adaptive_heun",
    "etdrk4",
    "linear_response",
]
IntegratingSolver = Literal[
    "euler_reference", "euler", "midpoint", "rk4", "dopri5", "bosh3", "adaptive_heun", "etdrk4"
]
FIXED_STEP_SOLVERS = ("euler_reference", "euler", "midpoint", "rk4")
ETDRK4_TOLERANCES = (2e-4, 1e-12)
"""Default ``(rtol, atol)`` of the ``etdrk4`` solver (deviation-relative error norm)."""
ODEINT_TOLERANCES = (1e-7, 1e-9)
"""Default ``(rtol, atol)`` of torchdiffeq's adaptive solvers."""
MethodName = Literal[
    "bp", "dfa", "dfc", "dfc_ss", "dfc_ssa", "mn", "gn", "strong_dfc", "strong_dfc_single"
]


MAX_STEPS = 10_000_000
"""Most time points of one simulation (``simulation.steps``, ``t_max / dt``, sleep steps)."""
MAX_TIME = 1e6
"""Longest simulated time ``t_max`` (units of tau_u)."""
MAX_EPOCHS = 1_000_000
"""Most epochs of a training or its feedback pre-training."""
MAX_SEED = 2**63 - 1
"""Largest seed (torch and numpy take seeds in ``[0, 2**63 - 1]``)."""


class ConfigError(ValueError):
    """A configuration is invalid; the one-line message names the source, the field, its value
    and what is allowed; ``problems`` lists the bad fields one text each."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


# raised to users under its public name (tracebacks print ``neurodfc.config.ConfigError``)
ConfigError.__module__ = "neurodfc.config"


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


UnitFloat = Annotated[float, Field(ge=0, lt=1)]
"""A finite number in [0, 1) (Adam's betas, momentum)."""
Betas = Annotated[tuple[UnitFloat, UnitFloat], BeforeValidator(_as_tuple)]
"""Adam's ``(beta1, beta2)``, each in [0, 1); TOML writes it as a list of two numbers."""
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A seed: an integer in [0, 2**63 - 1]."""


def _plain(v: Any) -> Any:
    """numpy scalars and paths given from Python as plain int/float/bool/str (TOML and JSON
    never produce them; strict mode would refuse them)."""
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


class _Section(BaseModel):
    # strict: TOML types are enforced (no bool for a number, no string for a bool, an integer
    # field takes no float; an integer for a float field is fine); every float is finite
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        strict=True,
        allow_inf_nan=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _plain(v) for k, v in data.items()}
        return data
