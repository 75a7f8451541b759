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


class BlockGaussianNoise:
    """Standard normals [B, N] per step, drawn as float32 blocks of exactly ``block`` steps
    into a preallocated buffer (Strong-DFC's realisation: it depends on the block size).

    Args:
        shape: ``(B, N)`` of one step.
        dtype: the simulation's dtype (the block is converted once per draw).
        device: where the noise is drawn (on CUDA by a device generator seeded from
            ``generator``).
        generator: CPU random generator (None: torch's default).
        block: steps per draw.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        block: int = 16,
    ) -> None:
        self.gen = generator
        if device.type != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            self.gen = torch.Generator(device=device).manual_seed(seed)
        self.n = block
        self.raw = torch.empty((block, *shape), dtype=torch.float32, device=device)
        self.block = self.raw if dtype == torch.float32 else torch.empty_like(self.raw, dtype=dtype)
        self.k = block

    def next(self) -> torch.Tensor:
        """The next step's normals [B, N] (in the simulation's dtype)."""
        if self.k == self.n:
            torch.randn(self.raw.shape, generator=self.gen, out=self.raw)
            if self.block is not self.raw:
                self.block.copy_(self.raw)
            self.k = 0
        self.k += 1
        return self.block[self.k - 1]


class ApicalNoise:
    """Apical noise of the reference scheme, ``sigma_i`` for hidden layers and
    ``sigma_output`` for the output layer:

    * white (Euler-Maruyama, ``tau_noise`` None): ``a_i += sigma_i sqrt(dt) / tau_A xi_i``
      per step (``tau_A = dt`` for an instantaneous apical compartment);
    * Ornstein-Uhlenbeck (Strong-DFC, ``tau_noise`` set):
      ``eps[t+1] = (1 - dt/tau_noise) eps[t] + (dt/tau_noise)/sqrt(dt) xi[t]``,
      ``a_i += sigma_i eps_i[t+1]`` (unit white-noise intensity below ``1/tau_noise``).

    Args:
        sigma: noise std of the hidden layers (>= 0).
        sigma_output: noise std of the output layer (>= 0).
        tau_noise: OU time constant (None: white noise).
    """

    def __init__(self, sigma: float, sigma_output: float, tau_noise: float | None = None) -> None:
        self.sigma = sigma
        self.sigma_output = sigma_output
        self.tau_noise = tau_noise
        self.eps: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        """Whether any noise is injected."""
        return self.sigma > 0 or self.sigma_output > 0

    def sigmas(self, sizes: list[int], like: torch.Tensor) -> torch.Tensor:
        """``sigma_i`` per unit [N].

        Args:
            sizes: layer sizes ``n_1..n_L``.
            like: a tensor giving the dtype and device.
        """
        sig = torch.full((sum(sizes),), self.sigma, dtype=like.dtype, device=like.device)
        sig[sum(sizes[:-1]) :] = self.sigma_output
        return sig

    def scales(self, sizes: list[int], dt: float, tau_a: float, like: torch.Tensor) -> torch.Tensor:
        """Per-unit factor [N] of white noise's normals: ``sigma_i sqrt(dt) / tau_A``.

        Args:
            sizes: layer sizes ``n_1..n_L``.
            dt: Euler step.
            tau_a: apical time constant (``dt`` when instantaneous).
            like: a tensor giving the dtype and device.
        """
        return self.sigmas(sizes, like) * (dt**0.5 / tau_a)

    def term(
        self, xi: torch.Tensor, sizes: list[int], dt: float, tau_a: float, like: torch.Tensor
    ) -> torch.Tensor:
        """This step's additive term [B, N] from the normals ``xi`` (advances the OU state).

        Args:
            xi: standard normals [B, N].
            sizes: layer sizes ``n_1..n_L``.
            dt: Euler step.
            tau_a: apical time constant (``dt`` when instantaneous).
            like: a tensor of the simulation's dtype and device.
        """
        xi = xi.to(like.dtype)  # float32 normals: no product in float32
        if self.tau_noise is None:
            return xi * self.scales(sizes, dt, tau_a, like)
        a_n = dt / self.tau_noise
        if self.eps is None:
            self.eps = torch.zeros(xi.shape, dtype=like.dtype, device=xi.device)
        self.eps = (1.0 - a_n) * self.eps + (a_n / dt**0.5) * xi
        return self.eps * self.sigmas(sizes, like)
