"""The common interface of learning methods: a batch in, forward-weight gradients out.

A method declares what it can do in its :class:`Capabilities` (a frozen class attribute); the
training loop reads them instead of probing the method's attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from neurodfc.system import DFCSystem

__all__ = ["Capabilities", "Method", "Update"]


@dataclass(frozen=True)
class Capabilities:
    """What a learning method does besides returning forward-weight gradients.

    Attributes:
        simulates: :meth:`Method.update` simulates the closed loop (with the ``[simulation]``
            settings).
        reports_status: its :class:`Update` carries the per-sample convergence ``status`` of
            that simulation (the DFC family; the Strong-DFC loop does not report one).
            Requires ``simulates``.
        own_sleep_phase: the method brings its own feedback-learning rule: it overrides
            :meth:`Method.feedback_gradients` (Strong-DFC), whose default is DFC's sleep phase
            (:func:`neurodfc.methods.feedback_learning.feedback_gradients`). The Strong-DFC
            clipping option ``strong.feedback_clip`` applies to such methods.
        feedback_in_update: :meth:`Method.update` also returns the feedback gradients
            ``Update.grad_Q`` from the same simulation (learned output feedback).
        single_phase: no separate sleep phase before each epoch's forward pass: the feedback
            weights learn from ``Update.grad_Q`` (pre-training and extra feedback epochs
            still use the sleep phase). Requires ``feedback_in_update``.

    Examples:
        >>> Capabilities(simulates=True).single_phase
        False
        >>> Capabilities(single_phase=True, feedback_in_update=True).simulates
        False
    """

    simulates: bool = False
    reports_status: bool = False
    own_sleep_phase: bool = False
    feedback_in_update: bool = False
    single_phase: bool = False

    def __post_init__(self) -> None:
        if self.reports_status and not self.simulates:
            raise ValueError(
                "Capabilities: reports_status = True needs simulates = True (the status is "
                "the simulation's)"
            )
        if self.single_phase and not self.feedback_in_update:
            raise ValueError(
                "Capabilities: single_phase = True needs feedback_in_update = True (the "
                "feedback weights of a single-phase method learn from its update's grad_Q)"
            )


@dataclass
class Update:
    """What a method produces for one minibatch.

    ``grad_W[i]`` [n_i, n_{i-1}] and ``grad_b[i]`` [n_i] follow PyTorch's sign convention: the
    optimiser subtracts them (``W <- W - lr grad``). ``loss`` is the batch loss of the
    feedforward pass; ``output`` the feedforward output ``r_L^-`` [B, n_L]; ``status`` the
    per-sample :class:`~neurodfc.solve.Status` for methods whose :class:`Capabilities` have
    ``reports_status`` (else None);
    ``grad_Q[i]`` [n_i, n_L] the feedback gradients of every layer from the same simulation
    (only methods whose :class:`Capabilities` have ``feedback_in_update``; empty otherwise),
    in the same sign convention (``Q <- Q - lr grad``); ``info`` cheap diagnostics by name.
    """

    grad_W: list[torch.Tensor]
    grad_b: list[torch.Tensor]
    loss: torch.Tensor
    output: torch.Tensor
    status: torch.Tensor | None = None
    info: dict[str, float] = field(default_factory=dict)
    grad_Q: list[torch.Tensor] = field(default_factory=list)

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
        """Whether the loss and every gradient (forward and feedback) are finite."""
        ok = bool(torch.isfinite(self.loss).all())
        grads = [*self.grad_W, *self.grad_b, *self.grad_Q]
        return ok and all(bool(torch.isfinite(g).all()) for g in grads)


class Method(ABC):
    """A learning method. Subclasses implement :meth:`update` for one minibatch; they read the
    system's config (``system.cfg.method``, ``.loss``, ``.simulation`` ...) and never change
    the weights themselves.

    Class attributes: ``name`` (the config's ``method.name``) and ``capabilities`` (what the
    method does besides forward gradients, see :class:`Capabilities`; default: nothing).
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    @property
    def simulates(self) -> bool:
        """Whether :meth:`update` simulates the closed loop (``capabilities.simulates``)."""
        return self.capabilities.simulates

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

    def feedback_gradients(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Sleep-phase feedback gradients ``grad Q_i`` [n_i, n_L] of every layer.

        The default is DFC's noise-driven sleep phase
        (:func:`neurodfc.methods.feedback_learning.feedback_gradients`, which needs no
        labels); methods whose capabilities have ``own_sleep_phase`` override it.

        Args:
            system: the DFC system; never modified.
            x: inputs [B, n_0].
            y: labels [B] or regression targets [B, n_L] (unused by the default).
            generator: random generator of the sleep-phase noise.
        """
        del y  # DFC's sleep phase is driven by noise alone
        from neurodfc.methods.feedback_learning import feedback_gradients

        return feedback_gradients(system, x, generator)
