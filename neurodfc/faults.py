"""The faults that stop a training (:class:`TrainingStopped` and its kinds); raised by
:class:`neurodfc.trainer.Trainer`, which re-exports them, and reported by the CLI with exit
status 1 and the last good checkpoint."""

from __future__ import annotations


class TrainingStopped(RuntimeError):
    """A fault stopped the training; the last checkpoint is intact (CLI exit status 1)."""


class NonFiniteError(TrainingStopped):
    """A loss, an update or the weights became NaN/inf; nothing non-finite was saved."""


class DivergedError(NonFiniteError):
    """An epoch's share of non-finite or diverged samples exceeded
    ``training.max_bad_fraction``; the epoch was not saved."""


class RunWriteError(TrainingStopped):
    """A checkpoint or metrics file could not be written (full disk, read-only folder)."""
