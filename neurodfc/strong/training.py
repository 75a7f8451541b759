"""A training loop for the Strong-DFC methods that learns Q from the same simulation as W.

:class:`neurodfc.training.Trainer` learns Q only in its sleep passes (through
``neurodfc.methods.feedback_gradients``, target ``r_L^-``); the single-phase method needs Q
updated from every forward minibatch (``StrongUpdate.grad_Q``) and both strong methods need their
own sleep phase (strong target, OU noise, high-pass). :func:`train_strong` is that loop, with
the successor's schedule:

* ``feedback_learning.pretrain_epochs`` feedback-only passes (optimiser ``lr_init``);
* per epoch: two-phase: one feedback-only pass, one forward pass, ``extra_epochs`` feedback-only
  passes; single-phase: one pass updating W and Q together (same simulation), then
  ``extra_epochs`` feedback-only passes (0 in the successor's configs);
* after each epoch: feedforward loss / accuracy on train, validation and test
  (:func:`neurodfc.training.evaluate`), written to ``metrics.nc`` (xarray, dim ``epoch``).

Feedback updates go through ``feedback.learned`` / ``feedback.train_output`` and the
``[feedback_learning]`` optimiser; Q gradients are clipped per layer (``strong.feedback_clip``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from neurodfc.config import ExperimentConfig, load_config, to_toml
from neurodfc.data import Split
from neurodfc.experiment import load_data
from neurodfc.results import write_netcdf
from neurodfc.strong.methods import StrongDFC, StrongDFCSingle, StrongUpdate
from neurodfc.system import DFCSystem
from neurodfc.training import batches, clip_gradients, evaluate, forward_lr, make_optimizer

METHODS: dict[str, type[StrongDFC]] = {m.name: m for m in (StrongDFC, StrongDFCSingle)}
"""The methods :func:`train_strong` accepts, by ``method.name``."""


class StrongNonFiniteError(RuntimeError):
    """A loss or an update was NaN/inf; the weights were left untouched."""


@dataclass
class StrongRunResult:
    """What :func:`train_strong` returns: the metrics (dim ``epoch``) and the trained system."""

    metrics: xr.Dataset
    system: DFCSystem
    path: Path | None


class StrongTrainer:
    """The loop of :func:`train_strong` (see the module docstring).

    Args:
        cfg: a config with ``method.name`` ``strong_dfc`` or ``strong_dfc_single``.
        log: receives the progress and one summary line per epoch.
        progress_every: log every k minibatches (0: never).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        log: Callable[[str], None] = print,
        progress_every: int = 0,
    ) -> None:
        if cfg.method.name not in METHODS:
            raise ValueError(
                f"train_strong needs method.name in {sorted(METHODS)}, got {cfg.method.name!r}"
            )
        self.cfg = cfg
        self.log = log
        self.progress_every = progress_every
        self.data = load_data(cfg)
        self.system = DFCSystem.from_config(cfg)
        self.method = METHODS[cfg.method.name]()
        net = self.system.network
        tc, fl = cfg.training, cfg.feedback_learning
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
        self.learn_fb = cfg.feedback.learned
        n_q = net.depth if cfg.feedback.train_output else net.depth - 1
        self.q_params = list(net.Q)[:n_q] if self.learn_fb else []
        kw: dict[str, Any] = {"betas": fl.betas, "eps": fl.eps, "weight_decay": fl.weight_decay}
        q_or_dummy = self.q_params or [torch.nn.Parameter(torch.zeros(1))]
        self.fb_opt_init = make_optimizer(q_or_dummy, fl.optimizer, fl.lr_init, **kw)
        self.fb_opt = make_optimizer(q_or_dummy, fl.optimizer, fl.lr, **kw)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
        self.rows: list[dict[str, float]] = []
        self.pretrain_done = 0

    # ------------------------------------------------------------------ updates
    def _step_feedback(self, grads: list[torch.Tensor], opt: torch.optim.Optimizer) -> None:
        grads = grads[: len(self.q_params)]
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            raise StrongNonFiniteError("non-finite feedback update; weights left untouched")
        for q, g in zip(self.q_params, grads, strict=True):
            q.grad = g
        fl = self.cfg.feedback_learning
        if fl.clip_grad_norm:
            if self.cfg.strong.feedback_clip == "global":
                torch.nn.utils.clip_grad_norm_(self.q_params, fl.clip_grad_norm)
            else:
                for q in self.q_params:
                    torch.nn.utils.clip_grad_norm_([q], fl.clip_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _step_forward(self, up: StrongUpdate) -> None:
        net = self.system.network
        for w, g in zip(net.W, up.grad_W, strict=True):
            w.grad = g
        if net.has_bias:
            for b, g in zip(net.b, up.grad_b, strict=True):
                b.grad = g
        tc = self.cfg.training
        clip_gradients(self.fwd_params, tc.clip_grad_norm, tc.clip_mode)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ passes
    def _batches(self) -> Any:
        tc = self.cfg.training
        gen = self.batch_gen if tc.shuffle else None
        return batches(self.data.train, tc.batch_size, gen)

    def _n_batches(self) -> int:
        return math.ceil(self.data.train.x.shape[0] / self.cfg.training.batch_size)

    def _progress(self, label: str, k: int, t0: float, extra: str = "") -> None:
        if self.progress_every and (k + 1) % self.progress_every == 0:
            n = self._n_batches()
            el = time.perf_counter() - t0
            eta = el / (k + 1) * (n - k - 1)
            self.log(f"{label}: batch {k + 1}/{n}, {el:.0f} s, eta {eta:.0f} s{extra}")

    def sleep_pass(self, opt: torch.optim.Optimizer, label: str) -> None:
        """One feedback-only pass over the training set with the optimiser ``opt``
        (``label`` names the progress lines)."""
        t0 = time.perf_counter()
        for k, (xb, yb) in enumerate(self._batches()):
            grads = self.method.feedback_gradients(self.system, xb, yb, self.noise_gen)
            self._step_feedback(grads, opt)
            self._progress(label, k, t0)

    def forward_pass(self, epoch: int) -> dict[str, float]:
        """Epoch ``epoch`` (1-based) of forward updates (and Q updates for the single-phase
        method); returns the running train statistics."""
        t0 = time.perf_counter()
        loss_sum, n_seen, correct = 0.0, 0, 0
        e_sum, h_sum, n_b = 0.0, 0.0, 0
        classification = self.cfg.loss.loss == "cross_entropy"
        for k, (xb, yb) in enumerate(self._batches()):
            up = self.method.update(self.system, xb, yb, generator=self.noise_gen)
            if not up.is_finite():
                raise StrongNonFiniteError(
                    f"epoch {epoch}, batch {k}: non-finite loss or update; weights left untouched"
                )
            self._step_forward(up)
            if self.method.single_phase and self.learn_fb:
                self._step_feedback(up.grad_Q, self.fb_opt)
            bs = xb.shape[0]
            loss_sum += float(up.loss) * (bs if self.cfg.loss.reduction == "mean" else 1)
            n_seen += bs
            if classification:
                correct += int((up.output.argmax(1) == yb).sum())
            e_sum += up.info.get("e_final", math.nan)
            h_sum += up.info.get("H_final", math.nan)
            n_b += 1
            self._progress(f"epoch {epoch}", k, t0, f", running loss {loss_sum / n_seen:.4g}")
        return {
            "train_loss_running": loss_sum / max(n_seen, 1),
            "train_accuracy_running": correct / max(n_seen, 1) if classification else math.nan,
            "e_final": e_sum / max(n_b, 1),
            "H_final": h_sum / max(n_b, 1),
        }

    # ------------------------------------------------------------------ main loop
    def run(self, out: Path | None = None) -> StrongRunResult:
        """Pre-train Q, then train for ``training.epochs`` epochs; write ``metrics.nc`` and
        ``config.toml`` into ``out`` after every epoch when given."""
        fl = self.cfg.feedback_learning
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.toml").write_text(to_toml(self.cfg))
        if self.learn_fb:
            for k in range(fl.pretrain_epochs):
                t0 = time.perf_counter()
                self.sleep_pass(self.fb_opt_init, f"feedback pre-training {k + 1}")
                self.pretrain_done = k + 1
                self.log(
                    f"feedback pre-training epoch {k + 1}/{fl.pretrain_epochs} "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
        for epoch in range(1, self.cfg.training.epochs + 1):
            t0 = time.perf_counter()
            if self.learn_fb and not self.method.single_phase:
                self.sleep_pass(self.fb_opt, f"epoch {epoch} feedback")
            stats = self.forward_pass(epoch)
            if self.learn_fb:
                for j in range(fl.extra_epochs):
                    self.sleep_pass(self.fb_opt, f"epoch {epoch} extra feedback {j + 1}")
            wall = time.perf_counter() - t0
            row = {"epoch": float(epoch), **self._evaluate(), "wall_time": wall, **stats}
            self.rows.append(row)
            msg = f"epoch {epoch}/{self.cfg.training.epochs}: test loss {row['test_loss']:.4g}"
            if not math.isnan(row["test_accuracy"]):
                msg += f", test acc {100 * row['test_accuracy']:.2f} %"
                msg += f", val acc {100 * row['val_accuracy']:.2f} %"
            self.log(msg + f" ({wall:.1f} s)")
            if out is not None:
                write_netcdf(self.metrics(), out / "metrics.nc")
        return StrongRunResult(self.metrics(), self.system, out)

    def _evaluate(self) -> dict[str, float]:
        row: dict[str, float] = {}
        for name, split in (
            ("train", self.data.train),
            ("val", self.data.val),
            ("test", self.data.test),
        ):
            assert isinstance(split, Split)
            res = evaluate(self.system, split)
            row[f"{name}_loss"] = res["loss"]
            row[f"{name}_accuracy"] = res["accuracy"]
        return row

    def metrics(self) -> xr.Dataset:
        """The metrics so far (dim ``epoch``; the config in ``attrs``)."""
        rows = self.rows
        epochs = np.array([int(r["epoch"]) for r in rows], dtype=np.int64)
        keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
        ds = xr.Dataset(
            {k: ("epoch", np.array([r[k] for r in rows], dtype=np.float64)) for k in keys},
            coords={"epoch": epochs},
        )
        ds.attrs["config"] = self.cfg.model_dump_json()
        ds.attrs["method"] = self.cfg.method.name
        ds.attrs["feedback_pretrain_epochs_done"] = self.pretrain_done
        if "wall_time" in ds:
            ds["wall_time"].attrs["units"] = "s"
        return ds


def train_strong(
    cfg: ExperimentConfig | str | Path,
    out: str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    log: Callable[[str], None] = print,
    progress_every: int = 0,
) -> StrongRunResult:
    """Train a ``strong_dfc`` or ``strong_dfc_single`` config (see the module docstring).

    Args:
        cfg: a validated config or the path of a TOML config.
        out: optional run folder; receives ``config.toml`` and ``metrics.nc``.
        overrides: ``section.field=value`` overrides applied to ``cfg``.
        log: receives the progress and one summary line per epoch.
        progress_every: log every k minibatches (0: never).

    Returns:
        The :class:`StrongRunResult` (metrics with dim ``epoch``, trained system, folder).
    """
    if not isinstance(cfg, ExperimentConfig):
        cfg = load_config(cfg, overrides)
    elif overrides:
        from neurodfc.config import config_from_dict

        cfg = config_from_dict(cfg.model_dump(mode="json"), overrides)
    trainer = StrongTrainer(cfg, log=log, progress_every=progress_every)
    return trainer.run(Path(out) if out is not None else None)


train_single_phase = train_strong
"""Alias: the same loop serves the single-phase and the two-phase method."""
