"""What the training loop is handed by its caller: callbacks and a progress reporter.

:class:`~neurodfc.trainer.Trainer` calls every :class:`TrainingCallback` once per minibatch
(the analysis logging of :mod:`neurodfc.training` is one), checkpoints their states and merges
their Datasets into ``metrics.nc``; it reports its passes to a :class:`ProgressReporter`
(:class:`TqdmProgress` bars, or :class:`NoProgress`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
import xarray as xr

from neurodfc.methods import Update
from neurodfc.system import DFCSystem

Batch = tuple[torch.Tensor, torch.Tensor]
"""A minibatch ``(x, y)``."""


class TrainingCallback(Protocol):
    """What the loop calls during training (e.g. analysis logging); its state is
    checkpointed under :attr:`name` and its Dataset merged into ``metrics.nc``."""

    name: str
    """Key of the callback's state in the checkpoint."""

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
        """Called after the update of a minibatch is in the parameters' ``.grad`` (clipped),
        before the optimiser step.

        Args:
            system: the system being trained (read only).
            x: the minibatch inputs.
            y: the minibatch labels or targets.
            update: the method's update of the minibatch.
            epoch: training epoch (1-based).
            batch: minibatch index within the epoch (0-based).
            batches_per_epoch: minibatches per epoch.
        """

    def state(self) -> Any:
        """The callback's state for the checkpoint."""

    def load(self, state: Any) -> None:
        """Restore a state returned by :meth:`state`.

        Args:
            state: the saved state (None: the checkpoint had none).
        """

    def dataset(self) -> xr.Dataset | None:
        """What the callback adds to ``metrics.nc`` (None: nothing yet)."""


class ProgressReporter(Protocol):
    """Shows the progress of the passes over the training set."""

    def track(self, items: Iterator[Batch], total: int, label: str) -> Iterator[Batch]:
        """The minibatches ``items`` of one pass, reported as they go.

        Args:
            items: the minibatches.
            total: their number.
            label: the pass (``epoch 3``, ``feedback pre-training 1`` ...).
        """
        ...

    def note(self, text: str) -> None:
        """Show ``text`` (the running loss) beside the current pass.

        Args:
            text: a short status.
        """


class NoProgress:
    """A :class:`ProgressReporter` that shows nothing."""

    def track(self, items: Iterator[Batch], total: int, label: str) -> Iterator[Batch]:
        """``items`` unchanged.

        Args:
            items: the minibatches.
            total: unused.
            label: unused.
        """
        return items

    def note(self, text: str) -> None:
        """Nothing.

        Args:
            text: unused.
        """


class TqdmProgress:
    """A :class:`ProgressReporter` with one transient tqdm bar per pass."""

    def __init__(self) -> None:
        self.bar: Any = None

    def track(self, items: Iterator[Batch], total: int, label: str) -> Iterator[Batch]:
        """``items`` behind a tqdm bar.

        Args:
            items: the minibatches.
            total: their number.
            label: the bar's description.
        """
        from tqdm import tqdm

        self.bar = tqdm(items, total=total, desc=label, leave=False, dynamic_ncols=True)
        return iter(self.bar)

    def note(self, text: str) -> None:
        """Show ``text`` as the bar's postfix.

        Args:
            text: a short status.
        """
        if self.bar is not None:
            self.bar.set_postfix_str(text)
