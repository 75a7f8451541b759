"""Noise sources of the closed loop: standard normals ``xi[t]`` [B, N] per Euler step.

The simulation scales them (white apical noise: ``sigma_i sqrt(dt) / tau_A xi_i[t]``); a source
only supplies the normals, columns in layer order (layer 1's units first). Pass one to
:func:`neurodfc.solve.simulate` as ``noise_source=`` to replay recorded noise
(:class:`ReplayNoise`) or to keep what was drawn (:class:`RecordingNoise`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

NOISE_BLOCK = 64
"""Steps of noise :class:`GaussianNoise` draws at once (fixed: the realisation depends on it)."""


@runtime_checkable
class NoiseSource(Protocol):
    """Anything that yields one step's standard normals."""

    def next(self) -> torch.Tensor:
        """The next step's normals [B, N] (any floating dtype; added with type promotion)."""
        ...


class GaussianNoise:
    """Standard normals ``[B, N]`` per step for ``n_steps`` steps, drawn in float32 blocks of
    ``min(NOISE_BLOCK, steps left)`` steps (torch's float64 sampler is about 8x slower on CPU;
    added to the simulation's tensors with type promotion, no conversion pass).

    Args:
        shape: ``(B, N)`` of one step's noise.
        dtype: the simulation's dtype (the noise itself stays float32).
        device: where the noise is drawn (on CUDA by a device generator seeded from
            ``generator``).
        generator: CPU random generator (None: torch's default).
        n_steps: number of steps that will be drawn (sizes the last block).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        n_steps: int = NOISE_BLOCK,
    ) -> None:
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.left = n_steps
        if device.type != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            self.gen: torch.Generator | None = torch.Generator(device=device).manual_seed(seed)
        else:
            self.gen = generator
        self.block: list[torch.Tensor] = []
        self.k = 0

    def next(self) -> torch.Tensor:
        """The next step's normals [B, N] (float32)."""
        if self.k == len(self.block):
            size = max(1, min(NOISE_BLOCK, self.left))
            raw = torch.randn(
                (size, *self.shape), generator=self.gen, dtype=torch.float32, device=self.device
            )
            self.block = list(raw.unbind(0))
            self.left -= size
            self.k = 0
        xi = self.block[self.k]
        self.k += 1
        return xi


class ReplayNoise:
    """Replays given normals ``xi`` [T - 1, B, N], one step per :meth:`next`.

    Args:
        xi: the normals, one [B, N] slice per Euler step.

    Example:
        >>> import torch
        >>> src = ReplayNoise(torch.ones(2, 1, 3))
        >>> src.next().shape
        torch.Size([1, 3])
    """

    def __init__(self, xi: torch.Tensor) -> None:
        self.xi = xi
        self.k = 0

    def next(self) -> torch.Tensor:
        """The next recorded step [B, N]; ``IndexError`` once they are used up."""
        if self.k >= self.xi.shape[0]:
            raise IndexError(f"ReplayNoise: only {self.xi.shape[0]} steps of noise were given")
        self.k += 1
        return self.xi[self.k - 1]


class RecordingNoise:
    """Wraps a source and keeps every step it yields (:meth:`recorded`: [steps, B, N]).

    Args:
        source: the source to draw from.
    """

    def __init__(self, source: NoiseSource) -> None:
        self.source = source
        self.steps: list[torch.Tensor] = []

    def next(self) -> torch.Tensor:
        """The next step of ``source`` (kept)."""
        xi = self.source.next()
        self.steps.append(xi.clone())
        return xi

    def recorded(self) -> torch.Tensor:
        """Everything drawn so far, stacked [steps, B, N]."""
        return torch.stack(self.steps)


class ApicalNoise:
    """White apical noise (Euler-Maruyama): ``a_i += sigma_i sqrt(dt) / tau_A xi_i`` per step,
    ``sigma_i = sigma`` for hidden layers and ``sigma_output`` for the output layer
    (``tau_A = dt`` for an instantaneous apical compartment).

    Args:
        sigma: noise std of the hidden layers (>= 0).
        sigma_output: noise std of the output layer (>= 0).
    """

    def __init__(self, sigma: float, sigma_output: float) -> None:
        self.sigma = sigma
        self.sigma_output = sigma_output

    @property
    def active(self) -> bool:
        """Whether any noise is injected."""
        return self.sigma > 0 or self.sigma_output > 0

    def scales(self, sizes: list[int], dt: float, tau_a: float, like: torch.Tensor) -> torch.Tensor:
        """Per-unit factor [N] multiplying the normals of one step.

        Args:
            sizes: layer sizes ``n_1..n_L``.
            dt: Euler step.
            tau_a: apical time constant (``dt`` when instantaneous).
            like: a tensor giving the dtype and device.
        """
        sig = torch.full((sum(sizes),), self.sigma, dtype=like.dtype, device=like.device)
        sig[sum(sizes[:-1]) :] = self.sigma_output
        return sig * (dt**0.5 / tau_a)
