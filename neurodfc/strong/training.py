"""Training of the Strong-DFC methods: a thin wrapper around :func:`neurodfc.training.train`.

:class:`neurodfc.training.Trainer` runs both strong methods with the successor's schedule:
``feedback_learning.pretrain_epochs`` feedback-only passes through the method's own sleep phase
(strong target, OU noise, high-pass filtered control; optimiser ``lr_init``), then per epoch:
two-phase: one feedback-only pass, one forward pass, ``extra_epochs`` feedback-only passes;
single-phase: one pass updating W and Q together from the same simulation
(``StrongUpdate.grad_Q``), then ``extra_epochs`` feedback-only passes. Q gradients are clipped as
``strong.feedback_clip`` says. Checkpoints, resume, ``metrics.nc`` and analysis logging are the
Trainer's. :func:`train_strong` adds config overrides, a run without a folder and a check that
the config names a strong method.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from neurodfc.config import ExperimentConfig, config_from_dict, load_config
from neurodfc.training import RunResult, train

STRONG_METHODS = ("strong_dfc", "strong_dfc_single")
"""The methods :func:`train_strong` accepts (``method.name``)."""


def train_strong(
    cfg: ExperimentConfig | str | Path,
    out: str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train a ``strong_dfc`` or ``strong_dfc_single`` config with
    :func:`neurodfc.training.train` (see the module docstring).

    Args:
        cfg: a validated config or the path of a TOML config.
        out: run folder (``config.toml``, ``metrics.nc``, ``checkpoint.pt``); None: a temporary
            folder, removed afterwards (the result keeps the metrics and the trained system).
        overrides: ``section.field=value`` overrides applied to ``cfg``.
        resume: continue the run in ``out`` (see :func:`neurodfc.training.train`).
        log: receives the progress and one summary line per epoch.

    Returns:
        The :class:`~neurodfc.training.RunResult` (metrics with dim ``epoch``, trained system).
    """
    if not isinstance(cfg, ExperimentConfig):
        cfg = load_config(cfg, overrides)
    elif overrides:
        cfg = config_from_dict(cfg.model_dump(mode="json"), overrides)
    if cfg.method.name not in STRONG_METHODS:
        raise ValueError(
            f"method.name = {cfg.method.name!r}: train_strong trains {STRONG_METHODS} "
            "(use neurodfc.training.train for the others)"
        )
    if out is not None:
        return train(cfg, out, resume=resume, log=log)
    with tempfile.TemporaryDirectory(prefix="neurodfc_strong_") as tmp:
        res = train(cfg, Path(tmp) / "run", log=log)
        return RunResult(path=res.path, metrics=res.metrics.load(), system=res.system)


train_single_phase = train_strong
"""Alias: the same loop serves the single-phase and the two-phase method."""
