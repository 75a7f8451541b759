"""Training runs: ``train(cfg, out)`` and ``load_run(out)``.

``train`` opens the run folder ``out`` and runs the loop of :mod:`neurodfc.trainer` in it,
writing:

* ``config.toml``: the fully resolved config;
* ``metrics.nc``: an xarray Dataset with dim ``epoch`` (losses, accuracies, wall time, sample
  status counts; the config and the test value at the best validation epoch in ``attrs``), and
  the analysis metrics with dim ``step`` when ``analysis.log_interval > 0``;
* ``checkpoint.pt``: weights, feedback weights, optimiser and RNG states after every epoch
  (pre-training epochs included) with a SHA-256 content digest, so an interrupted run loses at
  most one epoch and ``resume=True`` reproduces the uninterrupted run exactly.

Every file is written atomically (:mod:`neurodfc.runs.files`). While it trains, ``train``
holds the folder's lock: a second process training into the same folder is refused. Temp files
of a killed writer are removed at the start; a damaged or altered checkpoint is refused
(:class:`~neurodfc.runs.checkpoint.CheckpointError`). Faults stop the run with a
:class:`~neurodfc.trainer.TrainingStopped` naming the last good checkpoint.

This module composes the layers: the loop (:mod:`neurodfc.trainer`) knows nothing of the
analysis layer; ``train`` passes it the analysis-logging callback (:class:`AnalysisCallback`)
built from the config's ``[analysis]`` section.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from neurodfc.analysis.monitor import AnalysisLogger
from neurodfc.callbacks import ProgressReporter, TrainingCallback
from neurodfc.config import ExperimentConfig, load_config, to_toml
from neurodfc.data import DataSplits
from neurodfc.epoch import batches, clip_gradients, evaluate, forward_lr, make_optimizer
from neurodfc.methods import Update, get_method
from neurodfc.preflight import preflight
from neurodfc.runs.checkpoint import CheckpointError, read_checkpoint
from neurodfc.runs.files import RunDirError, atomic_write_text, clean_temp_files, hold_lock
from neurodfc.runs.folder import (
    CHECKPOINT,
    CONFIG,
    LOCK,
    METRICS,
    RUN_FILES,
    check_out,
    read_results,
    same_run,
)
from neurodfc.solvers.base import Batcher
from neurodfc.system import DFCSystem
from neurodfc.trainer import (
    CHECKPOINT_KEYS,
    STATUS_KEYS,
    DivergedError,
    NonFiniteError,
    RunResult,
    RunWriteError,
    Trainer,
    TrainingStopped,
)

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "STATUS_KEYS",
    "AnalysisCallback",
    "CheckpointError",
    "DivergedError",
    "NonFiniteError",
    "RunDirError",
    "RunResult",
    "RunWriteError",
    "Trainer",
    "TrainingStopped",
    "batches",
    "clip_gradients",
    "default_callbacks",
    "evaluate",
    "forward_lr",
    "load_run",
    "make_optimizer",
    "train",
]


class AnalysisCallback:
    """Logs the ``[analysis]`` metrics of every ``log_interval``-th minibatch during training
    (a :class:`~neurodfc.callbacks.TrainingCallback` around
    :class:`~neurodfc.analysis.monitor.AnalysisLogger`).

    Args:
        cfg: the experiment config (its ``analysis`` section, method and seed).
    """

    name = "analysis"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.logger = AnalysisLogger(cfg.analysis, get_method(cfg.method.name), seed=cfg.seed)

    def on_batch(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        update: Update,
        *,
        epoch: int,
        batch: int,
        batches_per_epoch: int,
    ) -> None:
        """Log the minibatch when it is due.

        Args:
            system: the system being trained (read only).
            x: the minibatch inputs.
            y: the minibatch labels or targets.
            update: the method's update of the minibatch.
            epoch: training epoch (1-based).
            batch: minibatch index within the epoch (0-based).
            batches_per_epoch: minibatches per epoch.
        """
        if self.logger.due(batch):
            self.logger.log(
                system, x, y, update, epoch=epoch, batch=batch, batches_per_epoch=batches_per_epoch
            )

    def state(self) -> Any:
        """The records logged so far."""
        return self.logger.state()

    def load(self, state: Any) -> None:
        """Restore the records of a checkpoint.

        Args:
            state: what :meth:`state` returned (None: none).
        """
        self.logger.load(state)

    def dataset(self) -> Any:
        """The records stacked along ``step`` (None before the first)."""
        return self.logger.to_dataset()


def default_callbacks(cfg: ExperimentConfig) -> list[TrainingCallback]:
    """The callbacks ``cfg`` asks for: analysis logging when ``analysis.log_interval > 0``.

    Args:
        cfg: the experiment config.
    """
    return [AnalysisCallback(cfg)] if cfg.analysis.log_interval > 0 else []


def load_run(path: str | Path, *, map_location: str | None = None) -> RunResult:
    """Open a run folder written by :func:`train`: its config and the weights of its last
    checkpoint rebuilt into a :class:`~neurodfc.system.DFCSystem`, and its ``metrics.nc``.

    Args:
        path: the run folder (holds ``checkpoint.pt``, ``config.toml``, ``metrics.nc``).
        map_location: device to load the weights on (default: the config's ``device``).

    Returns:
        A :class:`RunResult` (``metrics`` loaded into memory, the file closed).

    Raises:
        RunDirError: the folder holds no checkpoint, or a damaged one
            (:class:`~neurodfc.runs.checkpoint.CheckpointError`).
    """
    path = Path(path)
    ckpt_path = path / CHECKPOINT
    if not ckpt_path.exists():
        raise RunDirError(f"{path} holds no run ({CHECKPOINT} not found)")
    ckpt = read_checkpoint(ckpt_path, required=CHECKPOINT_KEYS, map_location=map_location or "cpu")
    cfg = ExperimentConfig.model_validate_json(ckpt["config"])
    if map_location is not None:
        cfg = cfg.model_copy(update={"device": map_location})
    system = DFCSystem.from_config(cfg)
    system.load_state_dict(ckpt["system"])
    return RunResult(path=path, metrics=read_results(path / METRICS), system=system)


@contextlib.contextmanager
def _open_run_dir(path: Path) -> Iterator[None]:
    """Create (if missing) and lock the run folder ``path`` while in the block; a folder
    created here and left empty by a refusal is removed again."""
    check_out(path)
    created = not path.exists()
    with contextlib.ExitStack() as stack:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if created:  # runs after the lock's release (the stack unwinds in reverse)
                stack.callback(_remove_if_empty, path)
            stack.enter_context(hold_lock(path / LOCK))
        except OSError as err:
            raise RunDirError(
                f"cannot write into {path}: {err.strerror or err}; choose another --out or "
                "fix its permissions"
            ) from None
        yield


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if not any(path.iterdir()):
            path.rmdir()


def _load_for_resume(path: Path, cfg: ExperimentConfig, log: Callable[[str], None]) -> Any:
    """The verified checkpoint of the run in ``path`` for ``cfg`` (refused if another run)."""
    ckpt_path = path / CHECKPOINT
    ckpt = read_checkpoint(ckpt_path, required=CHECKPOINT_KEYS, map_location=cfg.device, warn=log)
    if not same_run(ckpt["config"], cfg):
        raise RunDirError(
            f"{ckpt_path} was made with a different config; resume needs the same one "
            f"(see {path / CONFIG})"
        )
    return ckpt


def train(
    cfg: ExperimentConfig | str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    callbacks: Sequence[TrainingCallback] | None = None,
    progress: ProgressReporter | None = None,
    batcher: Batcher | None = None,
    data: DataSplits | None = None,
) -> RunResult:
    """Train ``cfg`` into the run folder ``out`` (see the module docstring).

    Args:
        cfg: a validated config or the path of a TOML config.
        out: the run folder (created if missing); receives ``config.toml``, ``metrics.nc`` and
            ``checkpoint.pt``.
        resume: continue the ``checkpoint.pt`` in ``out`` (the config must be the same run,
            :func:`neurodfc.runs.folder.same_run`); without it, an ``out`` that holds a
            checkpoint is refused.
        quiet: no progress bars.
        log: receives one summary line per epoch (and the warnings).
        callbacks: the loop's callbacks (default: :func:`default_callbacks` of ``cfg``).
        progress: reports the passes (default: tqdm bars unless ``quiet``).
        batcher: solve the simulations together with other runs' (an ensemble member; see
            :func:`neurodfc.ensemble.train_ensemble`); None: on their own.
        data: the data splits of ``cfg`` (None: loaded from its ``[data]`` section).

    Returns:
        The :class:`RunResult` (folder, metrics Dataset with dim ``epoch``, trained system).

    Raises:
        RunDirError: ``out`` holds a run and ``resume`` is False, holds another config or a
            damaged checkpoint, is locked by another training, or cannot be written.
        TrainingStopped: a fault stopped the run (non-finite values, diverging dynamics, a
            full disk); the last checkpoint stays.

    Examples:
        >>> import os, tempfile
        >>> from neurodfc.config import config_from_dict
        >>> cfg = config_from_dict({
        ...     "network": {"sizes": [15, 10, 1]},
        ...     "method": {"name": "dfc_ssa"},
        ...     "data": {"n_train": 64, "n_val": 16, "n_test": 16},
        ...     "training": {"epochs": 1, "batch_size": 32},
        ... })
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     res = train(cfg, tmp, quiet=True, log=lambda line: None)
        ...     files = sorted(os.listdir(tmp))
        >>> files
        ['checkpoint.pt', 'config.toml', 'metrics.nc']
        >>> res.metrics["epoch"].values.tolist(), res.metrics.attrs["method"]
        ([1], 'dfc_ssa')
    """
    if not isinstance(cfg, ExperimentConfig):
        cfg = load_config(cfg)
    path = Path(out)
    preflight(cfg, "train", out=path)  # device, data, memory, out: before anything is written
    with _open_run_dir(path):
        clean_temp_files(path, RUN_FILES)
        ckpt = None
        if (path / CHECKPOINT).exists() or (path / CHECKPOINT).is_symlink():
            if not resume:
                raise RunDirError(
                    f"{path} already holds a run ({CHECKPOINT}); pass --resume to continue it "
                    "or choose another --out"
                )
            ckpt = _load_for_resume(path, cfg, log)
        cbs = default_callbacks(cfg) if callbacks is None else callbacks
        trainer = Trainer(
            cfg,
            path,
            quiet=quiet,
            log=log,
            callbacks=cbs,
            progress=progress,
            batcher=batcher,
            data=data,
        )
        if ckpt is not None:
            trainer.restore(ckpt)
        try:
            atomic_write_text(to_toml(cfg), path / CONFIG)
            if ckpt is not None:
                trainer.write_metrics()  # the checkpoint is the truth: metrics may lag
        except OSError as err:
            raise trainer.write_failed(err) from None
        if ckpt is not None:
            log(
                f"resuming {path}: {trainer.state.pretrain_done} feedback pre-training and "
                f"{trainer.state.epochs_done} training epochs done"
            )
        return trainer.run()
