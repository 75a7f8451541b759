"""The data containers every loader returns: :class:`Split` and :class:`DataSplits`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["DataSplits", "Split", "Task"]

Task = Literal["classification", "regression"]
"""The kind of target: int64 class labels or floating-point regression targets."""


@dataclass(frozen=True)
class Split:
    """One split of a data set.

    Attributes:
        x: inputs, ``[N, n_in]`` floating point.
        y: targets, ``[N]`` int64 class labels (classification) or ``[N, n_out]`` floating point
            (regression, autoencoder).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise ValueError(f"Split.x must be 2-D [N, n_in], got shape {tuple(self.x.shape)}")
        if self.y.shape[:1] != self.x.shape[:1]:
            raise ValueError(
                f"Split.y has {self.y.shape[0]} rows but Split.x has {self.x.shape[0]}"
            )

    def __len__(self) -> int:
        """Number of samples N."""
        return int(self.x.shape[0])


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test splits plus the metadata a model needs.

    Attributes:
        train: the training split.
        val: the validation split (may be empty, N = 0).
        test: the test split.
        task: ``"classification"`` (y int64 labels in ``[0, n_out)``) or ``"regression"``.
        n_in: input dimension (784 for images).
        n_out: number of classes (classification) or output dimension (regression).
        name: data set name, e.g. ``"mnist"``.
    """

    train: Split
    val: Split
    test: Split
    task: Task
    n_in: int
    n_out: int
    name: str

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        for part, split in (("train", self.train), ("val", self.val), ("test", self.test)):
            if split.x.shape[1] != self.n_in:
                raise ValueError(f"{part}.x has {split.x.shape[1]} columns, n_in={self.n_in}")
            if self.task == "classification":
                ok = split.y.ndim == 1 and split.y.dtype == torch.int64
            else:
                ok = split.y.ndim == 2 and split.y.shape[1] == self.n_out
            if not ok:
                raise ValueError(
                    f"{part}.y has shape {tuple(split.y.shape)} and dtype {split.y.dtype}, "
                    f"inconsistent with task={self.task!r}, n_out={self.n_out}"
                )
