"""Train/val/test splits for MNIST, Fashion-MNIST, the MNIST autoencoder and teacher-student.

Preprocessing follows the reference code of Meulemans et al. (2021): images are flattened to 784
features and scaled to [0, 1] (x/255); MNIST (and the MNIST autoencoder) is then standardised
with the usual constants ``(x/255 - 0.1307) / 0.3081``; Fashion-MNIST is x/255 only.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch

from neurodfc.data.errors import DatasetError
from neurodfc.data.idx import PathLike, file_key, read_idx
from neurodfc.data.sources import find_files, locate
from neurodfc.data.splits import DataSplits, Split
from neurodfc.data.teacher_student import teacher_student

__all__ = [
    "NAMES",
    "load_dataset",
    "split_indices",
    "MNIST_MEAN",
    "MNIST_STD",
]

DatasetName = Literal["mnist", "fashion_mnist", "mnist_autoencoder", "teacher_student"]
NAMES: tuple[str, ...] = ("mnist", "fashion_mnist", "mnist_autoencoder", "teacher_student")
"""The data sets :func:`load_dataset` knows (the config's ``data.dataset``, with ``random``)."""
MNIST_MEAN = 0.1307
"""Mean of the MNIST pixels scaled to [0, 1] (standardisation of MNIST inputs)."""
MNIST_STD = 0.3081
"""Standard deviation of the MNIST pixels scaled to [0, 1]."""


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Decoded IDX array, cached per (path, mtime, size); read-only to protect the cache."""
    del mtime_ns, size  # only part of the cache key
    arr = read_idx(path)
    arr.flags.writeable = False
    return arr


def _load_raw(name: str, data_dir: PathLike | None, download: bool) -> dict[str, np.ndarray]:
    """Locate, verify and decode the four IDX files: stem -> uint8 array."""
    folder = locate(name, data_dir, download=download)
    files = find_files(folder)
    if files is None:  # removed between locate() and now
        raise DatasetError(f"{folder}: data files disappeared while loading {name}")
    out = {stem: _read_cached(*file_key(path)) for stem, path in files.items()}
    for part in ("train", "t10k"):
        imgs, labels = out[f"{part}-images-idx3-ubyte"], out[f"{part}-labels-idx1-ubyte"]
        if imgs.dtype != np.uint8 or imgs.ndim != 3 or labels.shape != imgs.shape[:1]:
            raise DatasetError(
                f"{files[f'{part}-images-idx3-ubyte']}: unexpected images {imgs.shape} "
                f"{imgs.dtype} with labels {labels.shape}"
            )
    return out


def _images(
    imgs: np.ndarray, standardise: bool, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> ``[N, 784]`` float: x/255, then MNIST-standardised if asked."""
    x = torch.tensor(imgs.reshape(len(imgs), -1), device=device).to(dtype).div_(255.0)
    if standardise:
        x.sub_(MNIST_MEAN).div_(MNIST_STD)
    return x


def _check_count(arg: str, value: int | None, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{arg} must be an int >= {low}{upper}, got {value!r}")


def _truncate(splits: DataSplits, max_train: int | None, max_test: int | None) -> DataSplits:
    def head(split: Split, n: int | None) -> Split:
        return split if n is None else Split(split.x[:n], split.y[:n])

    return replace(splits, train=head(splits.train, max_train), test=head(splits.test, max_test))


def split_indices(n_total: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random train/validation partition of ``range(n_total)``.

    Args:
        n_total: number of samples (>= 1).
        val_size: validation samples, ``0 <= val_size < n_total``.
        seed: seed of the permutation.

    Returns:
        ``(train_idx, val_idx)``, int64 tensors of lengths ``n_total - val_size`` and
        ``val_size``: the first and last part of
        ``torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))``, the same
        indices as ``torch.utils.data.random_split`` with that generator.
    """
    _check_count("n_total", n_total, 1)
    _check_count("val_size", val_size, 0, n_total - 1)
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return perm[: n_total - val_size], perm[n_total - val_size :]


def load_dataset(
    name: DatasetName,
    *,
    data_dir: PathLike | None = None,
    seed: int = 42,
    val_size: int | None = None,
    max_train_samples: int | None = None,
    max_test_samples: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    download: bool = True,
    **teacher_student_kwargs: Any,
) -> DataSplits:
    """Load a benchmark as train/val/test splits.

    Image data sets (``"mnist"``, ``"fashion_mnist"``, ``"mnist_autoencoder"``): x is
    ``[N, 784]``; the validation split is the last ``val_size`` entries of
    ``torch.randperm(60000, generator=torch.Generator().manual_seed(seed))`` over the official
    training set and train is the rest in permutation order (identical to
    ``torch.utils.data.random_split(range(60000), [60000 - val_size, val_size], generator)``);
    test is the official 10k test set in file order. Splits: 55000/5000/10000 by default.
    ``"mnist_autoencoder"`` is a regression task with ``y = x`` (the *same* tensor; do not modify
    it in place) and n_out = 784. Classification targets are int64 labels ``[N]``, n_out = 10.

    ``"teacher_student"`` calls :func:`neurodfc.data.teacher_student.teacher_student` with
    ``seed``, ``dtype``, ``device``, ``n_val=val_size`` (when given) and
    ``teacher_student_kwargs`` (e.g. ``n_in``, ``n_train``, ``hidden``, ``gain``).

    Args:
        name: data set (``"fashion-mnist"`` is accepted as an alias).
        data_dir: folder searched first for the IDX files (see :func:`neurodfc.data.locate`).
        seed: seed of the validation split (teacher-student: of the whole data set).
        val_size: validation samples, ``0 <= val_size < 60000``; default 5000 for images and
            the teacher-student default (1000) otherwise.
        max_train_samples: keep at most the first N training samples (after the split; the
            validation split is unaffected). None keeps all.
        max_test_samples: keep at most the first N test samples. None keeps all.
        dtype: floating dtype of x (and of y for regression).
        device: device of all tensors.
        download: allow downloading into the user cache when no local copy is found (never
            when a data folder is given: ``data_dir`` or ``$NEURODFC_DATA``).
        **teacher_student_kwargs: only for ``"teacher_student"``.

    Returns:
        The :class:`DataSplits`.

    Raises:
        ValueError: for an unknown name or an argument out of range (the message names it).
        DatasetError: if a file is missing (one line naming the folder and the file) and
            cannot be downloaded, or fails verification.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in NAMES:
        raise ValueError(f"name must be one of {list(NAMES)}, got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    _check_count("val_size", val_size, 0)
    _check_count("max_train_samples", max_train_samples, 1)
    _check_count("max_test_samples", max_test_samples, 1)

    if key == "teacher_student":
        if val_size is not None:
            if "n_val" in teacher_student_kwargs:
                raise ValueError("give either val_size or n_val for teacher_student, not both")
            teacher_student_kwargs["n_val"] = val_size
        splits = teacher_student(seed=seed, dtype=dtype, device=device, **teacher_student_kwargs)
        return _truncate(splits, max_train_samples, max_test_samples)
    if teacher_student_kwargs:
        raise ValueError(
            f"unexpected arguments {sorted(teacher_student_kwargs)} for {key!r} "
            "(only 'teacher_student' takes extra keyword arguments)"
        )

    raw = _load_raw("fashion_mnist" if key == "fashion_mnist" else "mnist", data_dir, download)
    train_imgs, train_labels = raw["train-images-idx3-ubyte"], raw["train-labels-idx1-ubyte"]
    n_total = len(train_imgs)
    val = 5000 if val_size is None else val_size
    _check_count("val_size", val, 0, n_total - 1)

    train_idx, val_idx = (i.numpy() for i in split_indices(n_total, val, seed))
    train_idx = train_idx[:max_train_samples]
    test_imgs = raw["t10k-images-idx3-ubyte"][:max_test_samples]
    test_labels = raw["t10k-labels-idx1-ubyte"][:max_test_samples]
    parts = (
        (train_imgs[train_idx], train_labels[train_idx]),
        (train_imgs[val_idx], train_labels[val_idx]),
        (test_imgs, test_labels),
    )

    standardise = key != "fashion_mnist"
    out: list[Split] = []
    for imgs, labels in parts:
        x = _images(imgs, standardise, dtype, device)
        if key == "mnist_autoencoder":
            out.append(Split(x, x))
        else:
            out.append(Split(x, torch.tensor(labels, dtype=torch.int64, device=device)))
    autoencoder = key == "mnist_autoencoder"
    return DataSplits(
        train=out[0],
        val=out[1],
        test=out[2],
        task="regression" if autoencoder else "classification",
        n_in=784,
        n_out=784 if autoencoder else 10,
        name=key,
    )
