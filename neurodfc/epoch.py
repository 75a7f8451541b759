"""The pieces of a training epoch: minibatches, optimisers, clipping, evaluation and the
per-epoch metrics (used by :class:`neurodfc.trainer.Trainer`)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import xarray as xr

from neurodfc.components.target import loss_value
from neurodfc.config import ExperimentConfig
from neurodfc.data import DataSplits, Split
from neurodfc.system import DFCSystem


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

    Args:
        cfg: the experiment config.

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
    or jointly (``"global"``).

    Args:
        params: the parameters whose ``.grad`` is clipped.
        max_norm: the largest norm (None or 0: no clipping).
        mode: ``per_parameter`` or ``global``.
    """
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

    Args:
        split: the samples.
        batch_size: samples per minibatch.
        generator: the shuffling generator (None: in order).

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
            out = system.output(x)
            total += float(loss_value(out, y, lc.loss, "sum"))
            if lc.loss == "cross_entropy":
                correct += int((out.argmax(1) == y).sum())
    per = n * (1 if lc.loss == "cross_entropy" else split.y[0].numel())
    res = {"loss": total / per}
    res["accuracy"] = correct / n if lc.loss == "cross_entropy" else math.nan
    return res


def epoch_row(
    system: DFCSystem, data: DataSplits, epoch: int, stats: dict[str, float], wall: float
) -> dict[str, float]:
    """The metrics of one finished epoch: losses and accuracies on every split, the wall
    time and the running train statistics.

    Args:
        system: the trained system (evaluated, never modified).
        data: the splits.
        epoch: the epoch (1-based).
        stats: the running statistics of the epoch's forward pass (status counts ...).
        wall: the epoch's wall time in seconds.
    """
    tr = evaluate(system, data.train)
    va = evaluate(system, data.val)
    te = evaluate(system, data.test)
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


def metrics_dataset(
    cfg: ExperimentConfig, rows: list[dict[str, float]], pretrain_done: int
) -> xr.Dataset:
    """The per-epoch ``rows`` (:func:`epoch_row`) as a Dataset with dim ``epoch``; the config,
    the method and the numbers at the best validation epoch in ``attrs``.

    Args:
        cfg: the run's config.
        rows: one dict per finished epoch.
        pretrain_done: feedback pre-training epochs done.
    """
    epochs = np.array([int(r["epoch"]) for r in rows], dtype=np.int64)
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    ds = xr.Dataset(
        {k: ("epoch", np.array([r[k] for r in rows], dtype=np.float64)) for k in keys},
        coords={"epoch": epochs},
    )
    ds.attrs["config"] = cfg.model_dump_json()
    ds.attrs["method"] = cfg.method.name
    ds.attrs["feedback_pretrain_epochs_done"] = pretrain_done
    if rows:
        classification = cfg.loss.loss == "cross_entropy"
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
    return ds
