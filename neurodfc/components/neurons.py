"""Rate neurons: the nonlinearity ``r_i = phi(v_i)``, its derivative ``phi'(v_i)``, and the
neuron-layer component of the closed loop (:class:`NeuronLayer`, built in: :class:`RateNeurons`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from neurodfc.increments import RateIncrement

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


Increment = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``inc(z, out, work) -> out``: writes ``phi(a + z) - phi(a)`` for a fixed ``a`` into ``out``."""


@runtime_checkable
class NeuronLayer(Protocol):
    """What the closed loop needs from one layer of rate neurons.

    A layer has a somatic voltage ``v_i`` driven by its basal input ``W_i r_{i-1} + b_i`` and its
    apical (feedback) input, ``tau_i dv_i/dt = -v_i + v_i^b + v_i^fb``, and a rate
    ``r_i = phi(v_i)``. ``tau`` is ``tau_i / tau_u`` (None: the controller config's
    ``tau_ratio``). The exponential integrator works on deviations from the feedforward state
    and asks for ``increment(a)``, a function computing ``phi(a + z) - phi(a)``; write it
    without cancellation if the layer is to be simulated in float32 (see
    :mod:`neurodfc.increments`), or use :func:`direct_increment`.
    """

    @property
    def tau(self) -> float | None:
        """``tau_i / tau_u`` of this layer (None: the controller config's ``tau_ratio``)."""
        ...

    def phi(self, v: torch.Tensor) -> torch.Tensor:
        """The rate ``phi(v)`` of voltages ``v`` [B, n]."""
        ...

    def phi_prime(self, v: torch.Tensor) -> torch.Tensor:
        """The derivative ``phi'(v)`` at voltages ``v`` [B, n]."""
        ...

    def increment(self, a: torch.Tensor) -> Increment:
        """The increment ``z -> phi(a + z) - phi(a)`` around the fixed voltages ``a`` [B, n]."""
        ...


def direct_increment(phi_fn: Fn, a: torch.Tensor) -> Increment:
    """``phi(a + z) - phi(a)`` evaluated as written (loses the digits of ``phi(a)``: fine in
    float64 for a prototype, not for float32 at small deviations).

    Args:
        phi_fn: the nonlinearity.
        a: the fixed voltages [B, n].
    """
    base = phi_fn(a)

    def inc(z: torch.Tensor, out: torch.Tensor, work: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sub(phi_fn(a + z), base, out=out)

    return inc


@dataclass(frozen=True)
class RateNeurons:
    """A built-in layer of rate neurons (``tanh``, ``sigmoid``, ``relu`` or ``linear``), the
    :class:`NeuronLayer` every config builds.

    Example:
        >>> import torch
        >>> layer = RateNeurons("tanh")
        >>> float(layer.phi(torch.tensor(0.0))), float(layer.phi_prime(torch.tensor(0.0)))
        (0.0, 1.0)
    """

    activation: str
    """Name of the nonlinearity (tanh | linear | relu | sigmoid)."""
    tau: float | None = None
    """``tau_i / tau_u`` (None: the controller config's ``tau_ratio``)."""

    def __post_init__(self) -> None:
        """Check the activation name."""
        phi(self.activation)

    def phi(self, v: torch.Tensor) -> torch.Tensor:
        """``phi(v)`` of voltages ``v``."""
        return _PHI[self.activation][0](v)

    def phi_prime(self, v: torch.Tensor) -> torch.Tensor:
        """``phi'(v)`` at voltages ``v``."""
        return _PHI[self.activation][1](v)

    def increment(self, a: torch.Tensor) -> Increment:
        """Cancellation-free ``phi(a + z) - phi(a)`` (:class:`neurodfc.increments.RateIncrement`)
        around the fixed voltages ``a``."""
        return RateIncrement(self.activation, a)


def default_layers(activations: list[str], tau: float | None = None) -> list[NeuronLayer]:
    """One :class:`RateNeurons` per activation name, all with time constant ``tau``.

    Args:
        activations: activation name of each layer 1..L.
        tau: ``tau_v / tau_u`` of every layer (None: the controller config's).
    """
    return [RateNeurons(a, tau) for a in activations]
