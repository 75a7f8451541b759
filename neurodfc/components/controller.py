"""The PI controller (paper eq. 3-4): ``u = u_int + k_p e``, ``e = r_L* - r_L``.

Two leak conventions (``ControllerConfig.leak``):

* ``reference`` (official code): ``tau_u du_int/dt = e - alpha u``
* ``paper``: ``tau_u du_int/dt = e - alpha u_int``

Time is in units of ``tau_u``.

The continuous-time closed loop (:class:`neurodfc.system.VectorField`) talks to its controller
through the small :class:`Controller` protocol: a controller owns a tuple of state tensors
(each [B, n_L]), turns the error ``e`` and its state into the control ``u`` and gives the time
derivative of its state. :class:`PIController` is the paper's controller in that form; a new
controller (a PID, say; see the tutorial ``docs/tutorials/06_pid_controller.md``) is any object
with the same three methods, passed as ``VectorField(system, x, r_target, controller=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from neurodfc.config import ControllerConfig

ControllerState = tuple[torch.Tensor, ...]
"""The state variables of a controller, each [B, n_L]."""


def control_signal(u_int: torch.Tensor, e: torch.Tensor, k_p: float) -> torch.Tensor:
    """``u = u_int + k_p e`` ([B, n_L]).

    Args:
        u_int: integral state ``u_int`` [B, n_L].
        e: control error ``e = r_L* - r_L`` [B, n_L].
        k_p: proportional gain ``k_p`` (dimensionless).
    """
    return u_int + k_p * e if k_p != 0.0 else u_int


def integral_rate(
    e: torch.Tensor, u: torch.Tensor, u_int: torch.Tensor, alpha: float, leak: str
) -> torch.Tensor:
    """``du_int/dt`` ([B, n_L]) in units of 1/tau_u for the chosen leak convention.

    Args:
        e: control error ``e = r_L* - r_L`` [B, n_L].
        u: control signal ``u`` [B, n_L] (read by the ``reference`` leak).
        u_int: integral state ``u_int`` [B, n_L] (read by the ``paper`` leak).
        alpha: leak ``alpha`` (dimensionless).
        leak: ``reference`` (``e - alpha u``) or ``paper`` (``e - alpha u_int``).
    """
    if leak == "paper":
        return e - alpha * u_int
    return e - alpha * u


def leak_residual(
    r_target: torch.Tensor, u: torch.Tensor, u_int: torch.Tensor, alpha: float, leak: str
) -> torch.Tensor:
    """The output the controller settles on: ``r_L* - alpha u`` (reference) or
    ``r_L* - alpha u_int`` (paper); used by the convergence criterion.

    Args:
        r_target: output target ``r_L*`` [B, n_L].
        u: control signal ``u`` [B, n_L].
        u_int: integral state ``u_int`` [B, n_L].
        alpha: leak ``alpha`` (dimensionless).
        leak: ``reference`` or ``paper``.
    """
    return r_target - alpha * (u_int if leak == "paper" else u)


@runtime_checkable
class Controller(Protocol):
    """What :class:`neurodfc.system.VectorField` needs from a controller.

    The controller's state is a tuple of tensors, each [B, n_L]; it sits at the end of the
    closed loop's state tuple. Convention: the **last** entry is the integral state ``u_int``
    (what the leak and the convergence criterion of :mod:`neurodfc.solve` read), so that a
    controller with extra states keeps ``state[-1]`` meaningful.
    """

    def initial_state(self, e0: torch.Tensor) -> ControllerState:
        """The state at ``t = 0``, given the initial error ``e0 = r_L* - r_L^-`` [B, n_L]."""
        ...

    def output(self, e: torch.Tensor, state: ControllerState) -> torch.Tensor:
        """The control signal ``u`` [B, n_L] for the error ``e`` and the state."""
        ...

    def rates(self, e: torch.Tensor, u: torch.Tensor, state: ControllerState) -> ControllerState:
        """``d state/dt`` (one tensor per state entry) in units of 1/tau_u, given the error
        ``e`` and the control ``u = output(e, state)``."""
        ...


@runtime_checkable
class LinearizedController(Protocol):
    """Optional: what an exponential integrator (``etdrk4``) needs beyond :class:`Controller`.

    The stiff linear part is integrated exactly: each state entry ``k`` decays as
    ``d s_k/dt = d_k s_k + ...`` with a constant ``d_k`` (``stiff_diagonal``), and the output
    feeds the error through ``du/de = feedthrough`` (which makes the output layer's
    proportional loop stiff: ``-(1 + feedthrough q_LL phi_L') / tau_L``). A controller without
    these methods runs too, with its whole rate treated explicitly (smaller steps when stiff).
    """

    def stiff_diagonal(self) -> tuple[float, ...]:
        """The constant ``d_k`` of each state entry (0.0: none)."""
        ...

    def feedthrough(self) -> float:
        """The direct gain ``du/de`` of the output on the error."""
        ...


@dataclass(frozen=True)
class PIController:
    """The paper's leaky PI controller as a :class:`Controller`: state ``(u_int,)``,
    ``u = u_int + k_p e``, ``du_int/dt = e - alpha u`` (``reference`` leak) or
    ``e - alpha u_int`` (``paper`` leak); ``u_int(0) = 0``.

    Example:
        >>> import torch
        >>> pi = PIController(k_p=2.0, alpha=0.1)
        >>> e = torch.tensor([[0.5]])
        >>> state = pi.initial_state(e)  # (u_int = 0,)
        >>> u = pi.output(e, state)  # u_int + k_p e
        >>> u
        tensor([[1.]])
        >>> pi.rates(e, u, state)  # e - alpha u
        (tensor([[0.4000]]),)
    """

    k_p: float
    """Proportional gain ``k_p`` (>= 0)."""
    alpha: float
    """Leak ``alpha`` (>= 0)."""
    leak: str = "reference"
    """``reference`` or ``paper`` (see the module docstring)."""

    @classmethod
    def from_config(cls, cfg: ControllerConfig) -> PIController:
        """The controller of a ``[controller]`` config section ``cfg`` (its ``k_p``,
        ``alpha`` and ``leak``; ``tau_ratio`` belongs to the network dynamics)."""
        return cls(k_p=cfg.k_p, alpha=cfg.alpha, leak=cfg.leak)

    def initial_state(self, e0: torch.Tensor) -> ControllerState:
        """``(u_int = 0,)``, shaped like the initial error ``e0`` [B, n_L]."""
        return (torch.zeros_like(e0),)

    def output(self, e: torch.Tensor, state: ControllerState) -> torch.Tensor:
        """``u = u_int + k_p e`` for the error ``e`` and the state ``(u_int,)``."""
        return control_signal(state[-1], e, self.k_p)

    def rates(self, e: torch.Tensor, u: torch.Tensor, state: ControllerState) -> ControllerState:
        """``(du_int/dt,)`` for the leak convention, from the error ``e``, the control ``u``
        and the state ``(u_int,)``."""
        return (integral_rate(e, u, state[-1], self.alpha, self.leak),)

    def stiff_diagonal(self) -> tuple[float, ...]:
        """``(-alpha,)`` for the ``paper`` leak (``e - alpha u_int``), ``(0.0,)`` for the
        ``reference`` leak (its ``-alpha u`` is integrated explicitly)."""
        return (-self.alpha if self.leak == "paper" else 0.0,)

    def feedthrough(self) -> float:
        """``du/de = k_p``."""
        return self.k_p
