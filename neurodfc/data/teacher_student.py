"""Synthetic teacher-student regression (Meulemans et al. 2021, toy experiments).

Inputs are uniform on ``[-1, 1]^n_in``; targets are the outputs of a random teacher MLP
``n_in -> hidden... -> n_out`` with ReLU hidden layers, a linear output layer, Xavier-normal
weights with gain 3 and zero biases. All random numbers come from one ``torch.Generator`` seeded
by ``seed`` (the global RNG is never touched); the math is float64 on the CPU, cast at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from neurodfc.data.splits import DataSplits, Split

__all__ = ["random_inputs", "teacher_student"]


def _uniform(n: int, n_in: int, gen: torch.Generator) -> torch.Tensor:
    """``[n, n_in]`` float64 samples of U[-1, 1] drawn from ``gen`` (CPU)."""
    return torch.rand(n, n_in, generator=gen, dtype=torch.float64).mul_(2.0).sub_(1.0)


def _check(arg: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")


def random_inputs(
    n: int,
    n_in: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw ``[n, n_in]`` inputs uniformly from ``[-1, 1]`` with a private generator.

    Args:
        n: number of samples (>= 0).
        n_in: input dimension (>= 1).
        seed: seed of the ``torch.Generator`` (same seed, same samples on every device).
        dtype: dtype of the result (sampled in float64, then cast).
        device: device of the result.

    Examples:
        >>> x = random_inputs(4, 3, seed=1)
        >>> tuple(x.shape), x.dtype, bool(x.abs().max() <= 1)
        ((4, 3), torch.float64, True)
    """
    _check("n", n, 0)
    _check("n_in", n_in, 1)
    gen = torch.Generator().manual_seed(seed)
    return _uniform(n, n_in, gen).to(device=device, dtype=dtype)


def teacher_student(
    n_in: int = 15,
    n_out: int = 5,
    n_train: int = 5000,
    n_val: int = 1000,
    n_test: int = 1000,
    *,
    hidden: Sequence[int] = (1000, 1000, 1000, 1000),
    gain: float = 3.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> DataSplits:
    """Build a teacher-student regression data set.

    Draw order from ``torch.Generator().manual_seed(seed)``: the teacher weights layer by layer,
    then the train, validation and test inputs. Weights ``W_l`` of shape ``[fan_out, fan_in]``
    are normal with std ``gain * sqrt(2 / (fan_in + fan_out))`` (Xavier normal); biases are zero.

    Args:
        n_in: input dimension.
        n_out: output (target) dimension.
        n_train: training samples (>= 1).
        n_val: validation samples (may be 0).
        n_test: test samples (may be 0).
        hidden: widths of the teacher's ReLU hidden layers (may be empty: linear teacher).
        gain: Xavier gain of the teacher weights (> 0).
        seed: seed of the generator.
        dtype: floating dtype of x and y.
        device: device of the tensors.

    Returns:
        :class:`DataSplits` with task ``"regression"``; x ``[N, n_in]`` in ``[-1, 1]``, y
        ``[N, n_out]``. With the defaults the targets have a standard deviation of about 5.

    Examples:
        >>> splits = teacher_student(n_in=3, n_out=2, n_train=8, n_val=0, n_test=4, hidden=(5,))
        >>> splits.task, tuple(splits.train.x.shape), tuple(splits.test.y.shape), len(splits.val)
        ('regression', (8, 3), (4, 2), 0)
        >>> bool(splits.train.x.abs().max() <= 1)
        True
        >>> again = teacher_student(n_in=3, n_out=2, n_train=8, n_val=0, n_test=4, hidden=(5,))
        >>> bool((again.train.y == splits.train.y).all())  # same seed, same data
        True
    """
    _check("n_in", n_in, 1)
    _check("n_out", n_out, 1)
    _check("n_train", n_train, 1)
    _check("n_val", n_val, 0)
    _check("n_test", n_test, 0)
    for i, width in enumerate(hidden):
        _check(f"hidden[{i}]", width, 1)
    if not (isinstance(gain, int | float) and math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a finite number > 0, got {gain!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")

    gen = torch.Generator().manual_seed(seed)
    sizes = [n_in, *hidden, n_out]
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        weights.append(torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64) * std)

    def teacher(x: torch.Tensor) -> torch.Tensor:
        for w in weights[:-1]:
            x = torch.relu(x @ w.T)
        return x @ weights[-1].T

    splits = []
    for n in (n_train, n_val, n_test):
        x = _uniform(n, n_in, gen)
        y = teacher(x)
        splits.append(Split(x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)))
    return DataSplits(
        train=splits[0],
        val=splits[1],
        test=splits[2],
        task="regression",
        n_in=n_in,
        n_out=n_out,
        name="teacher_student",
    )
