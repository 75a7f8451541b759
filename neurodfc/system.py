"""The closed-loop DFC system: vector field, linearisation and the Lemma-1 steady state.

Conventions: tensors are batch-first; ``N = sum_i n_i`` is the number of controlled units;
``J`` [B, n_L, N] is the Jacobian of the output ``r_L`` w.r.t. every layer's voltage ``v_i``
(through all downstream layers, including the output's own ``phi'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from neurodfc.components.controller import Controller, PIController
from neurodfc.components.neurons import NeuronLayer
from neurodfc.components.target import output_target
from neurodfc.config import ExperimentConfig
from neurodfc.core.linalg import eigvals
from neurodfc.core.loop import ClosedLoop, feedforward
from neurodfc.network import DTYPES, DFCNetwork, jacobian  # jacobian: defined with the network

if TYPE_CHECKING:
    from neurodfc.solvers.base import Batcher


class DFCSystem(nn.Module):
    """A network with its controller, feedback, apical compartment and loss: the object every
    simulation, learning method and analysis works on.

    Build it from a config with :meth:`from_config`; ``cfg`` stays attached (frozen) so that
    results can record how they were made.
    """

    def __init__(self, network: DFCNetwork, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.network = network
        self.cfg = cfg
        # built once; a tuple, so that components that are modules stay out of the state dict
        self._components = _build_components(cfg)
        self.batcher: Batcher | None = None
        """Where :func:`neurodfc.solve.simulate` sends this system's simulations (None: solved
        at once; an ensemble member: :class:`neurodfc.solvers.batcher.SimulationBatcher`)."""

    @property
    def custom_controller(self) -> Controller | None:
        """The controller of ``[components]`` (None: the PI controller of ``[controller]``),
        to pass to :func:`neurodfc.solve.simulate` as ``controller=``."""
        return self._components[0]

    @property
    def custom_neurons(self) -> list[NeuronLayer] | None:
        """The neuron layers of ``[components]`` (None: the network's activations), to pass
        to :func:`neurodfc.solve.simulate` as ``neurons=``."""
        return self._components[1]

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The feedforward output ``r_L^-`` [B, n_L] for inputs ``x`` [B, n_0], through the
        custom neuron layers where ``[components]`` sets them (else ``network(x)``)."""
        if self.custom_neurons is None:
            return self.network(x)
        return feedforward(self.network, x, self.custom_neurons)[1][-1]

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> DFCSystem:
        """Initialise weights and feedback from ``cfg`` (seeded, on ``cfg.device``)."""
        net = DFCNetwork(
            cfg.network,
            cfg.feedback,
            seed=cfg.seed,
            dtype=DTYPES[cfg.dtype],
            device=cfg.device,
        )
        return cls(net, cfg)

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights."""
        return self.network.W[0].dtype

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.network.W[0].device

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Output target ``r_L*`` [B, n_L] for inputs ``x`` and labels/targets ``y``."""
        with torch.no_grad():
            return self.target_of(self.network(x), y)

    def target_of(self, r_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Output target ``r_L*`` for a feedforward output ``r_out`` [B, n_L] already computed
        and labels or targets ``y`` (the loss, ``lam`` and reduction of ``cfg.loss``)."""
        lc = self.cfg.loss
        return output_target(r_out, y, lc.loss, lc.lam, lc.reduction)


def _build_components(cfg: ExperimentConfig) -> tuple[Controller | None, list[NeuronLayer] | None]:
    """``(controller, neurons)`` built by the factories of ``cfg.components`` (None where
    left out); the config checked their shape at load time, the protocols are checked here."""
    comps = cfg.components
    ctrl = None if comps.controller is None else comps.controller.build(cfg)
    layers = None if comps.neurons is None else list(comps.neurons.build(cfg))
    if ctrl is not None and not isinstance(ctrl, Controller):
        raise ValueError(f"components.controller built a {type(ctrl).__name__}, not a Controller")
    if layers is not None and not all(isinstance(lay, NeuronLayer) for lay in layers):
        raise ValueError("components.neurons must build NeuronLayer objects")
    return ctrl, layers


# --------------------------------------------------------------------------- linear algebra
@dataclass(frozen=True)
class SteadyState:
    """Lemma-1 steady state of a batch: ``u`` [B, n_L], ``dv`` per layer [B, n_i] (= Q_i u),
    the resulting voltages ``v`` and rates ``r`` computed layer by layer, the feedforward
    voltages ``v_ff``/rates ``r_ff``, the target ``r_target`` and the Jacobian ``J``."""

    u: torch.Tensor
    dv: list[torch.Tensor]
    v: list[torch.Tensor]
    r: list[torch.Tensor]
    v_ff: list[torch.Tensor]
    r_ff: list[torch.Tensor]
    r_target: torch.Tensor
    J: torch.Tensor


def steady_state_control(
    J: torch.Tensor, Q: torch.Tensor, delta: torch.Tensor, alpha: float
) -> torch.Tensor:
    """``u_ss = (J Q + alpha I)^-1 delta`` [B, n_L] for ``J`` [B, n_L, N], ``Q`` [N, n_L] and
    the output error ``delta = r_L* - r_L^-`` [B, n_L] (batched solve)."""
    eye = torch.eye(J.shape[1], dtype=J.dtype, device=J.device)
    return torch.linalg.solve(J @ Q + alpha * eye, delta.unsqueeze(-1)).squeeze(-1)


def feedback_map(J: torch.Tensor, Q: torch.Tensor, alpha: float) -> torch.Tensor:
    """``Q (J Q + alpha I)^-1`` [B, N, n_L]: how the output error is mapped onto the voltage
    changes at steady state (``dv = Q u_ss``); tends to ``J^+`` under Condition 2 (P3)."""
    eye = torch.eye(J.shape[1], dtype=J.dtype, device=J.device)
    # X (JQ + aI) = Q  <=>  (JQ + aI)^T X^T = Q^T
    A = (J @ Q + alpha * eye).transpose(-1, -2)
    return torch.linalg.solve(A, Q.T.expand(J.shape[0], *Q.T.shape)).transpose(-1, -2)


def lemma1(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    alpha: float | None = None,
) -> SteadyState:
    """Lemma 1: ``u_ss = (J Q + alpha_eff I)^-1 delta_L``, ``dv = Q u_ss``, then
    ``v_i = W_i r_{i-1} + b_i + dv_i`` layer by layer (the DFC-SSA state).

    Args:
        system: the DFC system (weights, feedback ``Q``, controller).
        x: inputs [B, n_0].
        r_target: output targets ``r_L*`` [B, n_L] (``delta_L = r_target - r_L^-``).
        alpha: the leak in the formula; default: the controller's ``alpha_eff`` (which depends
            on the leak convention).

    Returns:
        The :class:`SteadyState` (no autograd graph).
    """
    net = system.network
    a = system.cfg.controller.alpha_eff if alpha is None else alpha
    with torch.no_grad():
        v_ff, r_ff = net.feedforward(x)
        J = jacobian(net, v_ff)
        Q = net.full_Q()
        delta = r_target - r_ff[-1]
        u = steady_state_control(J, Q, delta, a)
        dv = net.split_units(u @ Q.T)
        v, r = net.feedforward(x, dv)
    return SteadyState(u=u, dv=dv, v=v, r=r, v_ff=v_ff, r_ff=r_ff, r_target=r_target, J=J)


def condition2(J: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Condition-2 measure ``|P Q|_F / |Q|_F`` per sample [B], ``P = J^T (J J^T)^-1 J`` the
    projector onto the row space of J; 1 iff col(Q) lies in row(J)."""
    # P Q = J^T (J J^T)^-1 J Q ; use lstsq-free pinv for robustness
    JQ = J @ Q
    PQ = torch.linalg.pinv(J) @ JQ
    return torch.linalg.matrix_norm(PQ) / torch.linalg.matrix_norm(Q)


def closed_loop_matrices(
    system: DFCSystem,
    v: list[torch.Tensor],
    *,
    alpha: float | None = None,
    k_p: float | None = None,
    tau_ratio: float | None = None,
) -> dict[str, torch.Tensor]:
    """The linearised closed loop around voltages ``v`` (state ``z = [dv; u]``).

    Args:
        system: the DFC system (weights, feedback, controller config).
        v: voltages per layer [B, n_i] at which the loop is linearised.
        alpha: leak ``alpha``; default: the controller's.
        k_p: proportional gain; default: the controller's.
        tau_ratio: ``tau_v / tau_u``; default: the controller's.

    Returns:
        ``A_I``, ``A_tilde_I`` [B, N + n_L, N + n_L], ``A_I_inst`` [B, n_L, n_L] and ``A_PI``
        (with the proportional gain), in units of 1/tau_u. For the ``paper`` leak convention
        the integral row is ``(1 + alpha k_p) e - alpha u``; for ``reference`` it is
        ``e - alpha u``.
    """
    net = system.network
    ctrl = system.cfg.controller
    a = ctrl.alpha if alpha is None else alpha
    kp = ctrl.k_p if k_p is None else k_p
    tcr = ctrl.tau_ratio if tau_ratio is None else tau_ratio
    gain_e = 1.0 + a * kp if ctrl.leak == "paper" else 1.0
    B = v[0].shape[0]
    dtype, device = v[0].dtype, v[0].device
    sizes = net.sizes[1:]
    N, nL = sum(sizes), net.n_out
    J = jacobian(net, v)
    Q = net.full_Q()
    d = [net.act_prime(i, v[i]) for i in range(net.depth)]
    Jhat = torch.zeros(B, N, N, dtype=dtype, device=device)
    offs = [0]
    for n in sizes:
        offs.append(offs[-1] + n)
    for i in range(1, net.depth):
        Jhat[:, offs[i] : offs[i + 1], offs[i - 1] : offs[i]] = net.W[i] * d[i - 1].unsqueeze(1)
    eyeN = torch.eye(N, dtype=dtype, device=device)
    eyeL = torch.eye(nL, dtype=dtype, device=device).expand(B, nL, nL)
    a11 = (eyeN - Jhat) / tcr
    JL0 = torch.zeros(B, nL, N, dtype=dtype, device=device)
    JL = torch.diag_embed(d[-1])
    JL0[:, :, offs[-2] :] = JL
    Qb = Q.expand(B, N, nL)
    top = torch.cat([-a11, a11 @ Q], dim=2)
    out = {
        "A_I": torch.cat([top, torch.cat([-gain_e * J, -a * eyeL], dim=2)], dim=1),
        "A_tilde_I": torch.cat(
            [torch.cat([-a11, Qb / tcr], dim=2), torch.cat([-gain_e * JL0, -a * eyeL], dim=2)],
            dim=1,
        ),
        "A_I_inst": -(gain_e * (J @ Q) + a * eyeL),
        "A_PI": torch.cat(
            [
                top,
                torch.cat(
                    [-gain_e * J + (kp / tcr) * JL0, -(a * eyeL + (kp / tcr) * (JL @ net.Q[-1]))],
                    dim=2,
                ),
            ],
            dim=1,
        ),
    }
    return out


def max_real_eig(A: torch.Tensor) -> torch.Tensor:
    """Largest real part of the eigenvalues of each matrix of ``A`` [B, n, n] -> [B]."""
    return eigvals(A).real.max(dim=-1).values


# --------------------------------------------------------------------------- vector field
class VectorField(nn.Module):
    """Continuous-time closed loop ``f(t, state)`` for torchdiffeq's ``odeint``: an
    ``nn.Module`` view of :meth:`neurodfc.core.loop.ClosedLoop.vector_field`.

    State (a tuple of [B, .] tensors): ``v_1..v_L``, then ``a_1..a_L`` (apical voltages) when
    the apical compartment has its own time constant, then the controller's state (for the PI
    controller ``u_int`` alone)::

        tau_v dv_i/dt = -v_i + W_i r_{i-1} + b_i + v_i^fb,   v_i^fb = Q_i u  (or a_i)
        tau_fb da_i/dt = -a_i + Q_i u
        tau_u du_int/dt = e - alpha u   (reference)  |  e - alpha u_int   (paper)
        u = u_int + k_p e,   e = r_L* - phi(v_L)

    Args:
        system: the DFC system (network, feedback, ``[controller]`` and ``[apical]`` config).
        x: inputs [B, n_0].
        r_target: output targets ``r_L*`` [B, n_L].
        controller: any :class:`~neurodfc.components.controller.Controller` replaces the PI
            controller (its state entries follow the apical voltages; by convention the last
            one is ``u_int``). Default (``None``): the PI controller of ``ctrl`` (the config's
            ``[controller]`` section), read at every evaluation, so assigning ``ctrl`` changes
            the gains.
        neurons: one :class:`~neurodfc.components.neurons.NeuronLayer` per layer (None: the
            network's activations).

    The input projection ``W_1 r_0 + b_1`` is computed once. ``nfe`` counts evaluations.
    """

    def __init__(
        self,
        system: DFCSystem,
        x: torch.Tensor,
        r_target: torch.Tensor,
        controller: Controller | None = None,
        neurons: list[NeuronLayer] | None = None,
    ) -> None:
        super().__init__()
        self.net = system.network
        self.ctrl = system.cfg.controller
        self.custom_controller = controller
        self.tau_a = system.cfg.apical.tau
        self.r_target = r_target
        self.loop = ClosedLoop(
            self.net, x, r_target, self.controller, self.ctrl.tau_ratio, self.tau_a, neurons
        )
        self.input_drive = self.loop.input_drive
        self.nfe = 0

    @property
    def controller(self) -> Controller:
        """The controller in use: the one passed in, else the PI controller of ``ctrl``."""
        if self.custom_controller is not None:
            return self.custom_controller
        return PIController.from_config(self.ctrl)

    def _sync(self) -> ClosedLoop:
        """The loop with the current ``ctrl`` (gains and ``tau_ratio``)."""
        self.loop.controller = self.controller
        self.loop.tau_ratio = self.ctrl.tau_ratio
        return self.loop

    @property
    def n_neuron_states(self) -> int:
        """Number of state entries before the controller's (``L``, or ``2 L`` with apical
        dynamics)."""
        return self.loop.n_neuron_states

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        """The feedforward state with the controller's initial state (PI: ``u_int = 0``) and
        apical voltages 0."""
        return self._sync().initial_state()

    def unpack(
        self, state: tuple[torch.Tensor, ...]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """``(v, apical, u_int)`` from a state tuple (``u_int``: the last entry)."""
        L = self.net.depth
        v = list(state[:L])
        apical = list(state[L : 2 * L]) if self.tau_a is not None else []
        return v, apical, state[-1]

    def controller_state(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The controller's entries of a state tuple."""
        return self.loop.controller_state(state)

    def control(self, v_out: torch.Tensor, u_int: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(e, u)`` for the output voltage ``v_out`` (``v_L``) and the integral state
        ``u_int`` (a controller whose state is ``(u_int,)``, such as the PI controller; else
        use :meth:`control_of`)."""
        e = self._sync().error(v_out)
        return e, self.controller.output(e, (u_int,))

    def control_of(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, u)`` at a full state tuple (any controller)."""
        return self._sync().control_of(state)

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``d state / dt`` (units of 1/tau_u) at the time ``t`` (unused: the field is
        autonomous) and the state tuple ``state`` laid out as in the class docstring."""
        self.nfe += 1
        return self._sync().vector_field(state)
