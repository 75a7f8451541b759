"""The common interface of learning methods: a batch in, forward-weight gradients out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from neurodfc.system import DFCSystem


@dataclass
class Update:
    """What a method produces for one minibatch.

    ``grad_W[i]`` [n_i, n_{i-1}] and ``grad_b[i]`` [n_i] follow PyTorch's sign convention: the
    optimiser subtracts them (``W <- W - lr grad``). ``loss`` is the batch loss of the
    feedforward pass; ``output`` the feedforward output ``r_L^-`` [B, n_L]; ``status`` the
    per-sample :class:`~neurodfc.solve.Status` for simulated methods (else None).
    """

    grad_W: list[torch.Tensor]
    grad_b: list[torch.Tensor]
    loss: torch.Tensor
    output: torch.Tensor
    status: torch.Tensor | None = None
    info: dict[str, float] = field(default_factory=dict)

    def flat(self, include_bias: bool = True) -> torch.Tensor:
        """All gradients concatenated into one vector (layer order, W then b per layer).

        Args:
            include_bias: also concatenate ``grad_b`` (else the weights only).

        Returns:
            [sum_i n_i n_{i-1}] or, with the biases, [sum_i n_i (n_{i-1} + 1)].

        Examples:
            >>> import torch
            >>> up = Update(grad_W=[torch.ones(2, 3)], grad_b=[torch.zeros(2)],
            ...             loss=torch.tensor(0.0), output=torch.zeros(1, 2))
            >>> up.flat().shape, up.flat(include_bias=False).shape
            (torch.Size([8]), torch.Size([6]))
        """
        parts: list[torch.Tensor] = []
        for w, b in zip(self.grad_W, self.grad_b, strict=True):
            parts.append(w.reshape(-1))
            if include_bias:
                parts.append(b.reshape(-1))
        return torch.cat(parts)

    def is_finite(self) -> bool:
        """Whether the loss and every gradient are finite."""
        ok = bool(torch.isfinite(self.loss).all())
        return ok and all(bool(torch.isfinite(g).all()) for g in [*self.grad_W, *self.grad_b])


class Method(ABC):
    """A learning method. Subclasses implement :meth:`update` for one minibatch; they read the
    system's config (``system.cfg.method``, ``.loss``, ``.simulation`` ...) and never change
    the weights themselves.

    Class attributes: ``name`` (the config's ``method.name``) and ``simulates`` (whether
    :meth:`update` simulates the closed loop, so that its :class:`Update` carries a
    ``status``).
    """

    name: ClassVar[str]
    simulates: ClassVar[bool] = False

    @abstractmethod
    def update(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Update:
        """Gradients of the forward weights for one minibatch.

        Args:
            system: the DFC system (weights, feedback, controller, loss and method settings
                from ``system.cfg``); its weights are never modified.
            x: inputs [B, n_0].
            y: labels [B] (cross-entropy) or regression targets [B, n_L] (MSE).
            generator: random generator of the simulation noise (used only by simulating
                methods when the config has noise).

        Returns:
            The :class:`Update` (PyTorch's sign convention: ``W <- W - lr grad_W``).
        """
