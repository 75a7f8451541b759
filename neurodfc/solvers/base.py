"""The solver interface: a :class:`Problem` in, a :class:`~neurodfc.core.solution.Solution`
out, solvers registered by name (the values of ``simulation.solver``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from neurodfc.components.controller import Controller, PIController
from neurodfc.components.neurons import NeuronLayer
from neurodfc.config import SimulationConfig
from neurodfc.core.loop import ClosedLoop
from neurodfc.core.noise import GaussianNoise, NoiseSource
from neurodfc.core.solution import Solution
from neurodfc.network import DFCNetwork


@dataclass
class Problem:
    """One simulation request, resolved (see :func:`neurodfc.solve.simulate` for the fields)."""

    net: DFCNetwork
    x: torch.Tensor
    r_target: torch.Tensor
    sim: SimulationConfig
    alpha: float
    """Leak of the PI controller and of the convergence criterion."""
    k_p: float
    tau_ratio: float
    leak: str
    apical_tau: float | None
    controller: Controller | None = None
    """A custom controller (None: the PI controller of ``alpha``, ``k_p``, ``leak``)."""
    neurons: list[NeuronLayer] | None = None
    """Custom neuron layers (None: the network's activations)."""
    record: bool = True
    record_v: bool = False
    record_apical: bool = False
    accumulate: str | None = None
    accumulate_feedback: bool = False
    noise: tuple[float, float] = (0.0, 0.0)
    noise_source: NoiseSource | None = None
    generator: torch.Generator | None = None
    error: str = "difference"
    """``difference`` (``e = r* - r_L``) or ``softmax`` (``e = r* - softmax(r_L)``)."""
    noise_tau: float | None = None
    """Ornstein-Uhlenbeck apical noise of this time constant (None: white noise)."""

    @property
    def pi(self) -> PIController:
        """The controller as a PI controller when it is one (the default included)."""
        if isinstance(self.controller, PIController):
            return self.controller
        return PIController(k_p=self.k_p, alpha=self.alpha, leak=self.leak)

    @property
    def builtin(self) -> bool:
        """Whether the assembly is the built-in one (PI controller, the network's neurons),
        which the fused paths specialise."""
        return self.neurons is None and (
            self.controller is None or isinstance(self.controller, PIController)
        )

    @property
    def noisy(self) -> bool:
        """Whether apical noise is injected."""
        return self.noise[0] > 0 or self.noise[1] > 0

    def noise_normals(self) -> NoiseSource:
        """The standard normals of the problem's noise: ``noise_source``, else drawn from
        ``generator`` as [B, N] per step for the ``n_steps - 1`` steps."""
        if self.noise_source is not None:
            return self.noise_source
        shape = (self.x.shape[0], sum(self.net.sizes[1:]))  # [B, N]
        steps = self.sim.n_steps - 1
        return GaussianNoise(shape, self.x.dtype, self.x.device, self.generator, steps)

    def loop(self) -> ClosedLoop:
        """The assembled :class:`ClosedLoop`."""
        ctrl = self.controller if self.controller is not None else self.pi
        return ClosedLoop(
            self.net,
            self.x,
            self.r_target,
            ctrl,
            self.tau_ratio,
            self.apical_tau,
            self.neurons,
            self.error,
        )


class Batcher(Protocol):
    """Solves a system's problems together with other systems' (an ensemble's members)."""

    def solve(self, problem: Problem) -> Solution:
        """Simulate ``problem`` (possibly batched with other members' problems)."""
        ...


class Solver(Protocol):
    """A registered solver."""

    def solve(self, problem: Problem) -> Solution:
        """Simulate ``problem``; diverging samples get a status, never an exception."""
        ...


SOLVERS: dict[str, Solver] = {}
"""The registry: ``simulation.solver`` name -> solver."""


def register_solver(name: str, solver: Solver) -> None:
    """Register ``solver`` under ``name`` (replacing any previous one).

    Args:
        name: the ``simulation.solver`` value that selects it.
        solver: the solver object.
    """
    SOLVERS[name] = solver


def get_solver(name: str) -> Solver:
    """The solver registered under ``name``.

    Args:
        name: a ``simulation.solver`` value.
    """
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; registered: {sorted(SOLVERS)}") from None
