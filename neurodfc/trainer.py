"""The training loop: epochs, the feedback-learning schedule, checkpoints, training faults.

:class:`Trainer` runs one run into a run folder (layout: :mod:`neurodfc.runs.folder`); the
entry point that opens the folder, locks it and resumes is :func:`neurodfc.training.train`.
The loop takes its callbacks (:class:`~neurodfc.callbacks.TrainingCallback`: analysis
logging) and its progress reporter (:class:`~neurodfc.callbacks.ProgressReporter`) from the
caller; it imports nothing above the methods.

Schedule (reference code): ``feedback_learning.pretrain_epochs`` sleep-only epochs, then per
epoch one sleep pass, one forward pass and ``extra_epochs`` further sleep passes (sleep passes
only when ``feedback.learned``; single-phase methods learn Q in the forward pass).

After every epoch (pre-training epochs included) the checkpoint (weights, optimisers, RNG
states, metrics so far, callback states) and ``metrics.nc`` are written atomically, so a run
killed at any moment resumes bit-identical to the uninterrupted run. Faults stop the run with a
:class:`TrainingStopped` (exit status 1 in the CLI) whose message names the last good
checkpoint: a non-finite loss or update (:class:`NonFiniteError`, raised before the update
touches the weights), an epoch whose share of non-finite or diverged samples exceeds
``training.max_bad_fraction`` (:class:`DivergedError`; that epoch is not saved), weights that
became non-finite (never saved), and a checkpoint that cannot be written (:class:`RunWriteError`,
full disk or read-only folder; the previous checkpoint stays intact).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from neurodfc.callbacks import Batch, NoProgress, ProgressReporter, TqdmProgress, TrainingCallback
from neurodfc.config import ExperimentConfig, TrainingConfig
from neurodfc.data import DataSplits
from neurodfc.epoch import (
    batches,
    clip_gradients,
    epoch_row,
    forward_lr,
    make_optimizer,
    metrics_dataset,
)
from neurodfc.experiment import load_data
from neurodfc.faults import DivergedError as DivergedError
from neurodfc.faults import NonFiniteError as NonFiniteError
from neurodfc.faults import RunWriteError as RunWriteError
from neurodfc.faults import TrainingStopped as TrainingStopped
from neurodfc.methods import Method, feedback_gradients, get_method
from neurodfc.methods.dfc import LR_FALLBACK_KEY
from neurodfc.results import write_netcdf
from neurodfc.runs.checkpoint import write_checkpoint
from neurodfc.runs.folder import CHECKPOINT, METRICS
from neurodfc.solve import Status
from neurodfc.solvers.base import Batcher
from neurodfc.system import DFCSystem

STATUS_KEYS = [f"n_{s.name.lower()}" for s in Status]
"""Names of the per-epoch sample counts of each simulation status (``n_converged`` ...)."""
BAD_KEYS = ("n_nonfinite", "n_diverged")
"""The status counts that :attr:`TrainingConfig.max_bad_fraction` limits."""
CHECKPOINT_KEYS = ("system", "opt", "batch_gen", "noise_gen", "epochs_done", "rows", "config")
"""Keys every checkpoint holds (a torch file without them is not a neurodfc checkpoint)."""


@dataclass
class RunResult:
    """What a training returns: the run folder, its metrics and the trained system."""

    path: Path
    metrics: xr.Dataset
    system: DFCSystem


@dataclass
class _State:
    pretrain_done: int = 0
    epochs_done: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """The training loop of one run (see the module docstring).

    Args:
        cfg: the experiment config.
        out: the run folder (checkpoint and metrics are written there after every epoch).
        quiet: no progress bars (when ``progress`` is not given).
        log: receives one line per epoch.
        callbacks: called during training (analysis logging); their states go into the
            checkpoint, their Datasets into ``metrics.nc``.
        progress: reports the passes (default: tqdm bars, none when ``quiet``).
        batcher: solves the run's simulations together with other runs' (an ensemble member,
            :func:`neurodfc.ensemble.train_ensemble`; None: on their own).
        data: the data splits (None: loaded from ``cfg``; an ensemble shares them between
            members whose data settings agree).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: Path,
        *,
        quiet: bool = False,
        log: Callable[[str], None] = print,
        callbacks: Sequence[TrainingCallback] = (),
        progress: ProgressReporter | None = None,
        batcher: Batcher | None = None,
        data: DataSplits | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = out
        self.log = log
        self.callbacks = list(callbacks)
        self.progress: ProgressReporter = progress or (NoProgress() if quiet else TqdmProgress())
        self.data: DataSplits = data if data is not None else load_data(cfg)
        self.system = DFCSystem.from_config(cfg)
        self.system.batcher = batcher
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
        self.saved: tuple[int, int] | None = None
        """(pre-training, training) epochs of the checkpoint on disk; None before the first."""

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
            "callbacks": {cb.name: cb.state() for cb in self.callbacks},
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Load the dict ``ckpt`` written by :meth:`checkpoint`.

        Args:
            ckpt: the checkpoint (read with :func:`neurodfc.runs.checkpoint.read_checkpoint`).
        """
        self.system.load_state_dict(ckpt["system"])
        self.opt.load_state_dict(ckpt["opt"])
        if self.learn_fb:  # with frozen feedback these optimisers are placeholders
            self.fb_opt_init.load_state_dict(ckpt["fb_opt_init"])
            self.fb_opt.load_state_dict(ckpt["fb_opt"])
        self.batch_gen.set_state(ckpt["batch_gen"])
        self.noise_gen.set_state(ckpt["noise_gen"])
        self.state = _State(ckpt.get("pretrain_done", 0), ckpt["epochs_done"], list(ckpt["rows"]))
        states = ckpt.get("callbacks", {"analysis": ckpt.get("analysis")})  # older: "analysis"
        for cb in self.callbacks:
            cb.load(states.get(cb.name))
        self.saved = (self.state.pretrain_done, self.state.epochs_done)

    def last_good(self) -> str:
        """Where the run can continue from, for the messages of faults."""
        if self.saved is None:
            return "no checkpoint was written yet (fix the config and start again)"
        pre, ep = self.saved
        return (
            f"last good checkpoint: {self.out / CHECKPOINT} ({pre} feedback pre-training and "
            f"{ep} training epochs)"
        )

    def save(self) -> None:
        """Write the checkpoint and the metrics (atomically); refuse non-finite weights."""
        for name, t in self.system.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise NonFiniteError(
                    f"the weights {name} became non-finite (the optimiser step overflowed); "
                    f"not saved, {self.last_good()}"
                )
        try:
            write_checkpoint(self.checkpoint(), self.out / CHECKPOINT)
            self.saved = (self.state.pretrain_done, self.state.epochs_done)
            self.write_metrics()
        except OSError as err:
            raise self.write_failed(err) from None

    def write_failed(self, err: OSError) -> RunWriteError:
        """The error to raise when writing into the run folder failed with ``err``.

        Args:
            err: the error of the write (full disk, read-only folder ...).
        """
        what = f"cannot write {err.filename or self.out}: {err.strerror or err}"
        fix = "free space or fix the folder's permissions, then run again"
        if self.saved is None:
            return RunWriteError(f"{what}; nothing was saved yet: {fix}")
        return RunWriteError(f"{what}; {self.last_good()}, is intact: {fix} with --resume")

    def write_metrics(self) -> None:
        """Write ``metrics.nc`` from the state (atomically)."""
        write_netcdf(self.metrics(), self.out / METRICS)

    # ------------------------------------------------------------------ phases
    def sleep_pass(self, opt: torch.optim.Optimizer, label: str) -> None:
        """One epoch of feedback-only updates over the training set.

        Args:
            opt: the optimiser of Q (pre-training or training).
            label: names the pass in the progress and in errors.
        """
        own = self.method.capabilities.own_sleep_phase  # strong methods: own sleep phase
        for k, (xb, yb) in enumerate(self._passes(label)):
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
                f"{where}: non-finite feedback update; weights left untouched, {self.last_good()}"
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
        n_batches = math.ceil(self.data.train.x.shape[0] / tc.batch_size)
        for k, (xb, yb) in enumerate(self._passes(f"epoch {epoch}", shuffle=tc.shuffle)):
            up = self.method.update(self.system, xb, yb, generator=self.noise_gen)
            if not up.is_finite():
                raise NonFiniteError(
                    f"epoch {epoch}, batch {k}: non-finite loss or update from method "
                    f"{self.method.name!r}; weights left untouched, {self.last_good()}"
                )
            net = self.system.network
            for w, g in zip(net.W, up.grad_W, strict=True):
                w.grad = g
            if net.has_bias:
                for b, g in zip(net.b, up.grad_b, strict=True):
                    b.grad = g
            clip_gradients(self.fwd_params, tc.clip_grad_norm, tc.clip_mode)
            for cb in self.callbacks:
                cb.on_batch(
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
            if LR_FALLBACK_KEY in up.info:  # only runs with the linear-response solver
                stats[LR_FALLBACK_KEY] = stats.get(LR_FALLBACK_KEY, 0.0) + up.info[LR_FALLBACK_KEY]
            self.progress.note(f"loss={loss_sum / n_seen:.4g}")
        stats["train_loss_running"] = loss_sum / max(n_seen, 1)
        stats["train_accuracy_running"] = (
            correct / max(n_seen, 1) if self.cfg.loss.loss == "cross_entropy" else math.nan
        )
        return stats

    def check_samples(self, epoch: int, stats: dict[str, float]) -> None:
        """Stop when the share of non-finite or diverged samples of the epoch exceeds
        ``training.max_bad_fraction`` (every sample of a simulating method counts once).

        Args:
            epoch: the epoch (1-based).
            stats: its status counts (:meth:`forward_pass`).

        Raises:
            DivergedError: the share is too high; the epoch is not saved.
        """
        total = sum(stats[k] for k in STATUS_KEYS)
        bad = sum(stats[k] for k in BAD_KEYS)
        limit = self.cfg.training.max_bad_fraction
        if total > 0 and bad / total > limit:
            raise DivergedError(
                f"epoch {epoch}: {bad:.0f} of {total:.0f} samples non-finite "
                f"({stats['n_nonfinite']:.0f}) or diverged ({stats['n_diverged']:.0f}), more "
                f"than training.max_bad_fraction = {limit:g}; the dynamics diverge (lower "
                f"controller.k_p or simulation.dt); this epoch was not saved, {self.last_good()}"
            )

    def _passes(self, label: str, shuffle: bool = True) -> Iterator[Batch]:
        bs = self.cfg.training.batch_size
        it = batches(self.data.train, bs, self.batch_gen if shuffle else None)
        return self.progress.track(it, math.ceil(self.data.train.x.shape[0] / bs), label)

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
                self.log(
                    f"feedback pre-training epoch {k}/{fl.pretrain_epochs} "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
        while self.state.epochs_done < self.cfg.training.epochs:
            epoch = self.state.epochs_done + 1
            t0 = time.perf_counter()
            if self.learn_fb and not self.method.capabilities.single_phase:
                self.sleep_pass(self.fb_opt, f"epoch {epoch} feedback")
            stats = self.forward_pass(epoch)
            self.check_samples(epoch, stats)
            if self.learn_fb:
                for j in range(fl.extra_epochs):
                    self.sleep_pass(self.fb_opt, f"epoch {epoch} extra feedback {j + 1}")
            wall = time.perf_counter() - t0
            row = epoch_row(self.system, self.data, epoch, stats, wall)
            self.state.rows.append(row)
            self.state.epochs_done = epoch
            self.save()
            self.log(self._summary(row))
        return RunResult(self.out, self.metrics(), self.system)

    def _summary(self, row: dict[str, float]) -> str:
        parts = [
            f"epoch {int(row['epoch'])}/{self.cfg.training.epochs}",
            f"train loss {row['train_loss']:.4g}",
            f"val loss {row['val_loss']:.4g}",
            f"test loss {row['test_loss']:.4g}",
        ]
        if not math.isnan(row["test_accuracy"]):
            parts.append(f"test acc {100 * row['test_accuracy']:.2f} %")
        if self.method.capabilities.reports_status:  # Strong-DFC simulates without a status
            parts.append(
                " / ".join(f"{k[2:]} {row.get(k, 0.0):.0f}" for k in STATUS_KEYS) + " samples"
            )
        parts.append(f"{row['wall_time']:.1f} s")
        return " | ".join(parts)

    def metrics(self) -> xr.Dataset:
        """The metrics so far as a Dataset with dim ``epoch`` (and the callbacks' dims)."""
        ds = metrics_dataset(self.cfg, self.state.rows, self.state.pretrain_done)
        for cb in self.callbacks:
            logged = cb.dataset()
            if logged is not None:
                extra = dict(logged.attrs)
                ds = xr.merge([ds, logged], combine_attrs="override")
                ds.attrs.update(extra)
        return ds
