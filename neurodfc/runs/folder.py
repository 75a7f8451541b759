"""The layout of a run folder and the "same run" decision.

A run folder (``neurodfc train ... --out RUN_DIR``, one per sweep task) holds::

    RUN_DIR/
      config.toml           # the resolved config, written before the first epoch
      checkpoint.pt         # weights, optimisers, RNG states, metrics so far (with a digest)
      metrics.nc            # per-epoch metrics (and analysis logs), rewritten every epoch
      .neurodfc-run.lock    # only while a process trains into the folder

:func:`same_run` is the one decision of whether a saved run belongs to a config: ``train
--resume`` refuses a checkpoint of another run, a sweep skips a finished run only when it is
the same run and merges only the same runs. Two configs are the same run when they are equal
after (1) setting ``training.epochs`` equal (a run may be extended), (2) writing out the
defaults that resolve to the same values (``simulation.steps`` from ``t_max / dt``, the solver
tolerances) and (3) replacing the sections that cannot act on the run by their defaults
(``[feedback_learning]`` when the feedback is frozen; ``[simulation]`` for a method that does
not simulate, when no analysis metrics are logged; the linear-response fields of
``[simulation]`` for the other solvers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from neurodfc.config import ExperimentConfig, FeedbackLearningConfig, SimulationConfig
from neurodfc.methods import get_method
from neurodfc.runs.files import NETCDF_LOCK, RunDirError

CHECKPOINT = "checkpoint.pt"
"""File name of a run's checkpoint (weights, optimisers, RNG states, metrics so far)."""
METRICS = "metrics.nc"
"""File name of a run's metrics (dim ``epoch``, and ``step`` with analysis logging)."""
CONFIG = "config.toml"
"""File name of a run's resolved config."""
LOCK = ".neurodfc-run.lock"
"""File name of the lock held by the process training into the folder."""
RUN_FILES = (CONFIG, CHECKPOINT, METRICS)
"""The files of a run folder written atomically (their temp files are cleaned at start)."""


LR_FIELDS = ("order", "discretisation", "linear_response_tol", "fallback_solver")
"""The ``[simulation]`` fields only the ``linear_response`` solver reads."""


class ResultsFileError(ValueError):
    """A results file (``metrics.nc``, ``sweep.nc``, any ``.nc``) cannot be read."""


def resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as the run sees it (steps (2) and (3) of the module docstring).

    Args:
        cfg: a validated config.

    Returns:
        The config with the defaults written out and the inert sections at their defaults.
    """
    sim = cfg.simulation
    rtol, atol = sim.tolerances
    steps = sim.n_steps if sim.t_max is None else sim.steps
    sim_update: dict[str, Any] = {"steps": steps, "rtol": rtol, "atol": atol}
    if sim.solver != "linear_response":
        sim_update.update({k: SimulationConfig.model_fields[k].default for k in LR_FIELDS})
    update: dict[str, Any] = {"simulation": sim.model_copy(update=sim_update)}
    if not cfg.feedback.learned:
        update["feedback_learning"] = FeedbackLearningConfig()
    if not get_method(cfg.method.name).simulates and cfg.analysis.log_interval == 0:
        update["simulation"] = SimulationConfig()
    return cfg.model_copy(update=update)


def parse_saved(saved: object) -> ExperimentConfig | None:
    """The config stored in a run's file (``checkpoint["config"]``, ``metrics.attrs["config"]``)
    as JSON, or None when it is missing or does not validate.

    Args:
        saved: the stored value (a JSON string, an :class:`ExperimentConfig`, or anything).
    """
    if isinstance(saved, ExperimentConfig):
        return saved
    if not isinstance(saved, str | bytes):
        return None
    try:
        return ExperimentConfig.model_validate_json(saved)
    except ValueError:
        return None


def same_run(saved: object, cfg: ExperimentConfig) -> bool:
    """Whether the config ``saved`` and ``cfg`` make the same run (see the module docstring).

    Args:
        saved: the config of the saved run (a config or its JSON); None or anything that does
            not validate is never the same run.
        cfg: the config about to run.

    Examples:
        >>> from neurodfc.config import config_from_dict
        >>> a = config_from_dict({"training": {"epochs": 3}})
        >>> same_run(a, config_from_dict({"training": {"epochs": 5}}))
        True
        >>> same_run(a.model_dump_json(), config_from_dict({"seed": 5}))
        False
    """
    old = parse_saved(saved)
    if old is None:
        return False
    old = old.model_copy(
        update={"training": old.training.model_copy(update={"epochs": cfg.training.epochs})}
    )
    return old == cfg or resolved(old) == resolved(cfg)


def read_results(path: str | Path) -> xr.Dataset:
    """Load the netCDF file ``path`` into memory (the file is closed).

    Args:
        path: a ``metrics.nc``, ``sweep.nc`` or other ``.nc`` file written by neurodfc.

    Raises:
        ResultsFileError: the file is missing, damaged or not netCDF (one line naming it).
    """
    p = Path(path)
    if not p.is_file():
        raise ResultsFileError(f"{p}: no such results file")
    try:
        with NETCDF_LOCK, xr.open_dataset(p) as ds:
            return ds.load()
    except Exception as err:
        text = str(err).strip()
        reason = text.splitlines()[0][:160] if text else type(err).__name__
        hint = (
            f"; `neurodfc train ... --out {p.parent} --resume` writes it again"
            if p.name == METRICS and (p.parent / CHECKPOINT).is_file()
            else ""
        )
        raise ResultsFileError(
            f"{p}: cannot read it as netCDF ({type(err).__name__}: {reason}); the file is "
            f"damaged or not a neurodfc results file{hint}"
        ) from None


def run_finished(run_dir: str | Path, cfg: ExperimentConfig) -> bool:
    """Whether ``run_dir`` holds a finished run of ``cfg``: its checkpoint exists and its
    readable ``metrics.nc`` holds at least ``cfg.training.epochs`` epochs of the same run
    (:func:`same_run`). Nothing is recomputed.

    Args:
        run_dir: the run folder.
        cfg: the config of the run.
    """
    run = Path(run_dir)
    if not (run / METRICS).is_file() or not (run / CHECKPOINT).is_file():
        return False
    try:
        ds = read_results(run / METRICS)
    except ResultsFileError:  # unreadable: let train() decide
        return False
    epochs = [int(e) for e in ds["epoch"].values] if "epoch" in ds.coords else []
    return (
        same_run(ds.attrs.get("config"), cfg)
        and len(epochs) > 0
        and max(epochs) >= cfg.training.epochs
    )


def check_out(path: Path) -> None:
    """Refuse an output path that exists but is not a folder.

    Args:
        path: the run folder (``--out``).

    Raises:
        RunDirError: ``path`` names a file (or something else that is not a folder).
    """
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a folder: choose another --out")
