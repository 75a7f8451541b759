"""Training: epochs, the feedback-learning schedule, checkpoints, resume, metrics.

``train(cfg, out)`` writes into ``out``:

* ``config.toml``: the fully resolved config;
* ``metrics.nc``: an xarray Dataset with dim ``epoch`` (losses, accuracies, wall time, sample
  status counts; the config and the test value at the best validation epoch in ``attrs``);
* ``checkpoint.pt``: weights, feedback weights, optimiser and RNG states after every epoch
  (pre-training epochs included), so an interrupted run loses at most one epoch and
  ``resume=True`` reproduces the uninterrupted run exactly.

Every file is written atomically (temp file + rename). A non-finite loss or update stops the
run with :class:`NonFiniteError` before it touches the weights; the last checkpoint stays.

Schedule (reference code): ``feedback_learning.pretrain_epochs`` sleep-only epochs, then per
epoch one sleep pass, one forward pass and ``extra_epochs`` further sleep passes (sleep passes
only when ``feedback.learned``).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr

from neurodfc.components.target import loss_value
from neurodfc.config import (
    ExperimentConfig,
    FeedbackLearningConfig,
    SimulationConfig,
    TrainingConfig,
    load_config,
    to_toml,
)
from neurodfc.data import DataSplits, Split
from neurodfc.experiment import load_data
from neurodfc.methods import Method, feedback_gradients, get_method
from neurodfc.results import write_netcdf
from neurodfc.solve import Status
from neurodfc.system import DFCSystem

if TYPE_CHECKING:  # analysis sits above training: imported lazily when logging is on
    from neurodfc.analysis.monitor import AnalysisLogger

CHECKPOINT = "checkpoint.pt"
"""File name of a run's checkpoint (weights, optimisers, RNG states, metrics so far)."""
METRICS = "metrics.nc"
"""File name of a run's metrics (dim ``epoch``, and ``step`` with analysis logging)."""
CONFIG = "config.toml"
"""File name of a run's resolved config."""
STATUS_KEYS = [f"n_{s.name.lower()}" for s in Status]
"""Names of the per-epoch sample counts of each simulation status (``n_converged`` ...)."""


class NonFiniteError(RuntimeError):
    """A loss or an update was NaN/inf; the weights were left untouched."""


class RunDirError(ValueError):
    """The output folder cannot be used (exists without --resume, or holds another config)."""


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder, its metrics and the trained system."""

    path: Path
    metrics: xr.Dataset
    system: DFCSystem


@dataclass
class _State:
    pretrain_done: int = 0
    epochs_done: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def make_optimizer(
    params: list[torch.nn.Parameter],
    kind: str,
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam (coupled L2 weight decay, as the reference code) or SGD.

    Args:
        params: the parameters to optimise.
        kind: ``adam``, else SGD.
        lr: learning rate.
        betas: Adam's ``(beta_1, beta_2)``.
        eps: Adam's epsilon.
        weight_decay: coupled L2 weight decay (added to the gradient).
        momentum: SGD momentum.
    """
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def forward_lr(cfg: ExperimentConfig) -> float:
    """The forward learning rate of ``cfg``: ``training.lr``, divided by the target step
    ``loss.lam`` when ``training.normalize_lr``.

    Examples:
        >>> from neurodfc.config import config_from_dict
        >>> cfg = config_from_dict({"training": {"lr": 0.001, "normalize_lr": True},
        ...                         "loss": {"lam": 0.05}})
        >>> round(forward_lr(cfg), 12)
        0.02
    """
    tc = cfg.training
    return tc.lr / cfg.loss.lam if tc.normalize_lr else tc.lr


def clip_gradients(params: list[torch.nn.Parameter], max_norm: float | None, mode: str) -> None:
    """Clip the ``.grad`` of ``params`` in place to the norm ``max_norm`` (None or 0: no
    clipping), each parameter on its own (``mode = "per_parameter"``, the reference code's)
    or jointly (``"global"``)."""
    if not max_norm:
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], max_norm)


def batches(
    split: Split, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches ``(x, y)`` of ``split`` of ``batch_size`` samples (the last one smaller),
    shuffled with ``generator`` when given, else in order.

    Examples:
        >>> import torch
        >>> from neurodfc.data import Split
        >>> split = Split(torch.arange(5.0)[:, None], torch.arange(5))
        >>> [y.tolist() for _, y in batches(split, 2, None)]
        [[0, 1], [2, 3], [4]]
    """
    n = split.x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(split.x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield split.x[idx], split.y[idx]


def evaluate(system: DFCSystem, split: Split, batch_size: int = 1000) -> dict[str, float]:
    """Feedforward loss and accuracy of ``system`` on ``split``.

    Args:
        system: the system (its network and ``cfg.loss``); never modified.
        split: the samples to evaluate.
        batch_size: evaluation batch size (the result does not depend on it).

    Returns:
        ``{"loss": ..., "accuracy": ...}``: the mean per-sample loss (MSE: per output unit,
        as PyTorch's mean) and the fraction of correct labels (NaN for regression; both NaN
        for an empty split).
    """
    lc = system.cfg.loss
    n = split.x.shape[0]
    if n == 0:
        return {"loss": math.nan, "accuracy": math.nan}
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
            out = system.network(x)
            total += float(loss_value(out, y, lc.loss, "sum"))
            if lc.loss == "cross_entropy":
                correct += int((out.argmax(1) == y).sum())
    per = n * (1 if lc.loss == "cross_entropy" else split.y[0].numel())
    res = {"loss": total / per}
    res["accuracy"] = correct / n if lc.loss == "cross_entropy" else math.nan
    return res


class Trainer:
    """The training loop of one run (see the module docstring); :func:`train` builds it.

    Args:
        cfg: the experiment config.
        out: the run folder (checkpoint and metrics are written there after every epoch).
        quiet: no progress bars.
        log: receives one line per epoch.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: Path,
        *,
        quiet: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.out = out
        self.quiet = quiet
        self.log = log
        self.data: DataSplits = load_data(cfg)
        self.system = DFCSystem.from_config(cfg)
        self.method: Method = get_method(cfg.method.name)
        net = self.system.network
        tc: TrainingConfig = cfg.training
        self.fwd_params = [*net.W, *(net.b if net.has_bias else [])]
        self.opt = make_optimizer(
            self.fwd_params,
            tc.optimizer,
            forward_lr(cfg),
            betas=tc.betas,
            eps=tc.eps,
            weight_decay=tc.weight_decay,
            momentum=tc.momentum,
        )
        fl = cfg.feedback_learning
        self.learn_fb = cfg.feedback.learned
        n_q = net.depth if cfg.feedback.train_output else net.depth - 1
        self.q_params = list(net.Q)[:n_q] if self.learn_fb else []
        kw: dict[str, Any] = {"betas": fl.betas, "eps": fl.eps, "weight_decay": fl.weight_decay}
        # with frozen feedback these optimisers hold no parameters and are never stepped
        q_or_dummy = self.q_params or [torch.nn.Parameter(torch.zeros(1))]
        self.fb_opt_init = make_optimizer(q_or_dummy, fl.optimizer, fl.lr_init, **kw)
        self.fb_opt = make_optimizer(q_or_dummy, fl.optimizer, fl.lr, **kw)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
        self.state = _State()
        # analysis logging (issue 4); None when off, so the loop pays one comparison
        self.analysis_logger: AnalysisLogger | None = None
        if cfg.analysis.log_interval > 0:
            from neurodfc.analysis.monitor import AnalysisLogger

            self.analysis_logger = AnalysisLogger(cfg.analysis, self.method, seed=cfg.seed)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly."""
        return {
            "system": self.system.state_dict(),
            "opt": self.opt.state_dict(),
            "fb_opt_init": self.fb_opt_init.state_dict(),
            "fb_opt": self.fb_opt.state_dict(),
            "batch_gen": self.batch_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "pretrain_done": self.state.pretrain_done,
            "epochs_done": self.state.epochs_done,
            "rows": self.state.rows,
            "config": self.cfg.model_dump_json(),
            "analysis": None if self.analysis_logger is None else self.analysis_logger.state(),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Load the dict ``ckpt`` written by :meth:`checkpoint`."""
        self.system.load_state_dict(ckpt["system"])
        self.opt.load_state_dict(ckpt["opt"])
        if self.learn_fb:  # with frozen feedback these optimisers are placeholders
            self.fb_opt_init.load_state_dict(ckpt["fb_opt_init"])
            self.fb_opt.load_state_dict(ckpt["fb_opt"])
        self.batch_gen.set_state(ckpt["batch_gen"])
        self.noise_gen.set_state(ckpt["noise_gen"])
        self.state = _State(ckpt["pretrain_done"], ckpt["epochs_done"], list(ckpt["rows"]))
        if self.analysis_logger is not None:
            self.analysis_logger.load(ckpt.get("analysis"))

    def save(self) -> None:
        """Write the checkpoint and the metrics (atomically)."""
        _atomic_torch_save(self.checkpoint(), self.out / CHECKPOINT)
        write_netcdf(self.metrics(), self.out / METRICS)

    # ------------------------------------------------------------------ phases
    def sleep_pass(self, opt: torch.optim.Optimizer, label: str) -> None:
        """One epoch of feedback-only updates over the training set with the optimiser
        ``opt`` (``label`` names the progress bar and errors)."""
        own = self.method.capabilities.own_sleep_phase  # strong methods: own sleep phase
        for k, (xb, yb) in enumerate(self._progress(label)):
            if own:
                grads = self.method.feedback_gradients(self.system, xb, yb, self.noise_gen)
            else:
                grads = feedback_gradients(self.system, xb, self.noise_gen)
            self._step_feedback(grads, opt, f"{label}, batch {k}")

    def _step_feedback(
        self, grads: list[torch.Tensor], opt: torch.optim.Optimizer, where: str
    ) -> None:
        """Apply one feedback update ``grads`` (one per layer) with ``opt``."""
        fl = self.cfg.feedback_learning
        grads = grads[: len(self.q_params)]
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            raise NonFiniteError(
                f"{where}: non-finite feedback update; weights left untouched, "
                f"last good checkpoint: {self.out / CHECKPOINT}"
            )
        for q, g in zip(self.q_params, grads, strict=True):
            q.grad = g
        if fl.clip_grad_norm:
            per_layer = self.method.capabilities.own_sleep_phase and (
                self.cfg.strong.feedback_clip == "per_parameter"
            )
            for group in [[q] for q in self.q_params] if per_layer else [self.q_params]:
                torch.nn.utils.clip_grad_norm_(group, fl.clip_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def forward_pass(self, epoch: int) -> dict[str, float]:
        """Epoch ``epoch`` (1-based) of forward-weight updates; returns the running train
        statistics (loss, accuracy and status counts)."""
        tc = self.cfg.training
        stats = {k: 0.0 for k in STATUS_KEYS}
        loss_sum, n_seen, correct = 0.0, 0, 0
        bar = self._progress(f"epoch {epoch}", shuffle=tc.shuffle)
        for k, (xb, yb) in enumerate(bar):
            up = self.method.update(self.system, xb, yb, generator=self.noise_gen)
            if not up.is_finite():
                raise NonFiniteError(
                    f"epoch {epoch}, batch {k}: non-finite loss or update from method "
                    f"{self.method.name!r}; weights left untouched, last good checkpoint: "
                    f"{self.out / CHECKPOINT}"
                )
            net = self.system.network
            for w, g in zip(net.W, up.grad_W, strict=True):
                w.grad = g
            if net.has_bias:
                for b, g in zip(net.b, up.grad_b, strict=True):
                    b.grad = g
            clip_gradients(self.fwd_params, tc.clip_grad_norm, tc.clip_mode)
            if self.analysis_logger is not None and self.analysis_logger.due(k):
                n_batches = math.ceil(self.data.train.x.shape[0] / tc.batch_size)
                self.analysis_logger.log(
                    self.system, xb, yb, up, epoch=epoch, batch=k, batches_per_epoch=n_batches
                )
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if self.learn_fb and self.method.capabilities.feedback_in_update:
                # Q from the same simulation
                self._step_feedback(up.grad_Q, self.fb_opt, f"epoch {epoch}, batch {k}")
            bs = xb.shape[0]
            loss_sum += float(up.loss) * (bs if self.cfg.loss.reduction == "mean" else 1)
            n_seen += bs
            if self.cfg.loss.loss == "cross_entropy":
                correct += int((up.output.argmax(1) == yb).sum())
            for key in STATUS_KEYS:
                stats[key] += up.info.get(key, 0.0)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4g}")
        stats["train_loss_running"] = loss_sum / max(n_seen, 1)
        stats["train_accuracy_running"] = (
            correct / max(n_seen, 1) if self.cfg.loss.loss == "cross_entropy" else math.nan
        )
        return stats

    def _progress(self, label: str, shuffle: bool = True) -> Any:
        it = batches(
            self.data.train, self.cfg.training.batch_size, self.batch_gen if shuffle else None
        )
        if self.quiet:
            return it
        from tqdm import tqdm

        n = math.ceil(self.data.train.x.shape[0] / self.cfg.training.batch_size)
        return tqdm(it, total=n, desc=label, leave=False, dynamic_ncols=True)

    # ------------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        """Pre-train the feedback (if learned), then train for ``training.epochs`` epochs."""
        fl = self.cfg.feedback_learning
        if self.learn_fb:
            while self.state.pretrain_done < fl.pretrain_epochs:
                k = self.state.pretrain_done + 1
                t0 = time.perf_counter()
                self.sleep_pass(self.fb_opt_init, f"feedback pre-training {k}")
                self.state.pretrain_done = k
                self.save()
                self._say(
                    f"feedback pre-training epoch {k}/{fl.pretrain_epochs} "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
        while self.state.epochs_done < self.cfg.training.epochs:
            epoch = self.state.epochs_done + 1
            t0 = time.perf_counter()
            if self.learn_fb and not self.method.capabilities.single_phase:
                self.sleep_pass(self.fb_opt, f"epoch {epoch} feedback")
            stats = self.forward_pass(epoch)
            if self.learn_fb:
                for j in range(fl.extra_epochs):
                    self.sleep_pass(self.fb_opt, f"epoch {epoch} extra feedback {j + 1}")
            wall = time.perf_counter() - t0
            row = self._epoch_row(epoch, stats, wall)
            self.state.rows.append(row)
            self.state.epochs_done = epoch
            self.save()
            self._say(self._summary(row))
        return RunResult(self.out, self.metrics(), self.system)

    def _epoch_row(self, epoch: int, stats: dict[str, float], wall: float) -> dict[str, float]:
        tr = evaluate(self.system, self.data.train)
        va = evaluate(self.system, self.data.val)
        te = evaluate(self.system, self.data.test)
        row = {
            "epoch": float(epoch),
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "val_loss": va["loss"],
            "val_accuracy": va["accuracy"],
            "test_loss": te["loss"],
            "test_accuracy": te["accuracy"],
            "wall_time": wall,
        }
        row.update(stats)
        return row

    def _summary(self, row: dict[str, float]) -> str:
        parts = [
            f"epoch {int(row['epoch'])}/{self.cfg.training.epochs}",
            f"train loss {row['train_loss']:.4g}",
            f"val loss {row['val_loss']:.4g}",
            f"test loss {row['test_loss']:.4g}",
        ]
        if not math.isnan(row["test_accuracy"]):
            parts.append(f"test acc {100 * row['test_accuracy']:.2f} %")
        if self.method.simulates:
            parts.append(
                "converged {:.0f} / diverged {:.0f} / max_steps {:.0f}".format(
                    row["n_converged"], row["n_diverged"], row["n_max_steps"]
                )
            )
        parts.append(f"{row['wall_time']:.1f} s")
        return " | ".join(parts)

    def _say(self, msg: str) -> None:
        self.log(msg)

    def metrics(self) -> xr.Dataset:
        """The metrics so far as a Dataset with dim ``epoch``."""
        rows = self.state.rows
        epochs = np.array([int(r["epoch"]) for r in rows], dtype=np.int64)
        keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
        ds = xr.Dataset(
            {k: ("epoch", np.array([r[k] for r in rows], dtype=np.float64)) for k in keys},
            coords={"epoch": epochs},
        )
        ds.attrs["config"] = self.cfg.model_dump_json()
        ds.attrs["method"] = self.cfg.method.name
        ds.attrs["feedback_pretrain_epochs_done"] = self.state.pretrain_done
        if rows:
            classification = self.cfg.loss.loss == "cross_entropy"
            if classification and not np.all(np.isnan(ds["val_accuracy"].values)):
                best = int(np.nanargmax(ds["val_accuracy"].values))
            elif not np.all(np.isnan(ds["val_loss"].values)):
                best = int(np.nanargmin(ds["val_loss"].values))
            else:
                best = len(rows) - 1
            ds.attrs["best_val_epoch"] = int(epochs[best])
            ds.attrs["test_loss_at_best_val"] = float(ds["test_loss"].values[best])
            if classification:
                ds.attrs["test_accuracy_at_best_val"] = float(ds["test_accuracy"].values[best])
                ds.attrs["test_error_percent_at_best_val"] = 100 * (
                    1 - float(ds["test_accuracy"].values[best])
                )
        for k, unit in (("wall_time", "s"), ("train_loss", "1"), ("test_loss", "1")):
            if k in ds:
                ds[k].attrs["units"] = unit
        logged = None if self.analysis_logger is None else self.analysis_logger.to_dataset()
        if logged is not None:  # analysis metrics with dim step (see neurodfc.analysis.monitor)
            ds = xr.merge([ds, logged], combine_attrs="override")
            ds.attrs["analysis_config"] = logged.attrs["analysis_config"]
        return ds


def _resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as the run sees it, so that a run folder saved before a default changed still
    resumes: defaults that mean the same run written out (``simulation.steps`` and the solver
    tolerances), and the sections that cannot act on the run replaced by their defaults
    (``[feedback_learning]`` with frozen feedback; ``[simulation]`` for a method that does not
    simulate, when no analysis metrics are logged)."""
    sim = cfg.simulation
    rtol, atol = sim.tolerances
    steps = sim.n_steps if sim.t_max is None else sim.steps
    update: dict[str, Any] = {
        "simulation": sim.model_copy(update={"steps": steps, "rtol": rtol, "atol": atol})
    }
    if not cfg.feedback.learned:
        update["feedback_learning"] = FeedbackLearningConfig()
    if not get_method(cfg.method.name).simulates and cfg.analysis.log_interval == 0:
        update["simulation"] = SimulationConfig()
    return cfg.model_copy(update=update)


def _same_run(saved_json: str, cfg: ExperimentConfig) -> bool:
    """Whether a checkpoint's config equals ``cfg`` up to ``training.epochs`` (a resumed run
    may be extended) and up to defaults that resolve to the same values."""
    saved = ExperimentConfig.model_validate_json(saved_json)
    epochs = cfg.training.epochs
    saved = saved.model_copy(
        update={"training": saved.training.model_copy(update={"epochs": epochs})}
    )
    return saved == cfg or _resolved(saved) == _resolved(cfg)


def load_run(path: str | Path, *, map_location: str | None = None) -> RunResult:
    """Open a run folder written by :func:`train`: its config and the weights of its last
    checkpoint rebuilt into a :class:`~neurodfc.system.DFCSystem`, and its ``metrics.nc``.

    Args:
        path: the run folder (holds ``checkpoint.pt``, ``config.toml``, ``metrics.nc``).
        map_location: device to load the weights on (default: the config's ``device``).

    Returns:
        A :class:`RunResult` (``metrics`` loaded into memory, the file closed).

    Raises:
        RunDirError: the folder holds no checkpoint.
    """
    path = Path(path)
    ckpt_path = path / CHECKPOINT
    if not ckpt_path.is_file():
        raise RunDirError(f"{path} holds no run ({CHECKPOINT} not found)")
    ckpt = torch.load(ckpt_path, map_location=map_location or "cpu", weights_only=False)
    cfg = ExperimentConfig.model_validate_json(ckpt["config"])
    if map_location is not None:
        cfg = cfg.model_copy(update={"device": map_location})
    system = DFCSystem.from_config(cfg)
    system.load_state_dict(ckpt["system"])
    with xr.open_dataset(path / METRICS) as ds:
        metrics = ds.load()
    return RunResult(path=path, metrics=metrics, system=system)


def train(
    cfg: ExperimentConfig | str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``cfg`` into the run folder ``out`` (see the module docstring).

    Args:
        cfg: a validated config or the path of a TOML config.
        out: the run folder (created if missing); receives ``config.toml``, ``metrics.nc`` and
            ``checkpoint.pt``.
        resume: continue the ``checkpoint.pt`` in ``out`` (the config must be the same up to
            ``training.epochs``); without it, an ``out`` that holds a checkpoint is refused.
        quiet: no progress bars.
        log: receives one summary line per epoch.

    Returns:
        The :class:`RunResult` (folder, metrics Dataset with dim ``epoch``, trained system).

    Raises:
        RunDirError: ``out`` holds a run and ``resume`` is False, or holds another config.
        NonFiniteError: a loss or update was not finite (the last checkpoint stays).

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
    ckpt_path = path / CHECKPOINT
    ckpt = None
    if ckpt_path.exists():
        if not resume:
            raise RunDirError(
                f"{path} already holds a run ({CHECKPOINT}); pass --resume to continue it or "
                "choose another --out"
            )
        ckpt = torch.load(ckpt_path, map_location=cfg.device, weights_only=False)
        if not _same_run(ckpt["config"], cfg):
            raise RunDirError(
                f"{ckpt_path} was made with a different config; resume needs the same one "
                f"(see {path / CONFIG})"
            )
    path.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(to_toml(cfg), path / CONFIG)
    trainer = Trainer(cfg, path, quiet=quiet, log=log)
    if ckpt is not None:
        trainer.restore(ckpt)
        log(
            f"resuming {path}: {trainer.state.pretrain_done} feedback pre-training and "
            f"{trainer.state.epochs_done} training epochs done"
        )
    return trainer.run()
