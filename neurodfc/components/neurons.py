"""Rate neurons: the nonlinearity ``r_i = phi(v_i)`` and its derivative ``phi'(v_i)``."""

from __future__ import annotations

from collections.abc import Callable

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]


def _tanh_prime(v: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(v) ** 2


def _sigmoid_prime(v: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(v)
    return s * (1.0 - s)


def _identity(v: torch.Tensor) -> torch.Tensor:
    return v


def _ones(v: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(v)


def _relu_prime(v: torch.Tensor) -> torch.Tensor:
    return (v > 0).to(v.dtype)


_PHI: dict[str, tuple[Fn, Fn]] = {
    "tanh": (torch.tanh, _tanh_prime),
    "sigmoid": (torch.sigmoid, _sigmoid_prime),
    "linear": (_identity, _ones),
    "relu": (torch.relu, _relu_prime),
}


def phi(name: str) -> Fn:
    """The rate nonlinearity ``phi`` called ``name`` (tanh | linear | relu | sigmoid)."""
    try:
        return _PHI[name][0]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(_PHI)}") from None


def phi_prime(name: str) -> Fn:
    """The derivative ``phi'`` of the nonlinearity called ``name`` (elementwise)."""
    try:
        return _PHI[name][1]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(_PHI)}") from None
