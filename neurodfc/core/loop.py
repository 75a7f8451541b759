"""The closed loop of Deep Feedback Control, assembled from its components.

:class:`ClosedLoop` holds the pieces the paper names -- a :class:`NeuronLayer` per layer
(``phi``, ``phi'``, time constant), the controller (:class:`Controller`), the feedback weights
``Q_i``, the apical compartment (instantaneous or low-pass ``tau_A``) and the output target --
and states the dynamics once::

    tau_i dv_i/dt = -v_i + v_i^b + v_i^fb,    v_i^b = W_i r_{i-1} + b_i,   r_i = phi_i(v_i)
    v_i^fb = Q_i u          (instantaneous)  |  tau_A da_i/dt = -a_i + Q_i u,  v_i^fb = a_i
    e = r_L* - r_L,   u = controller.output(e, c),   dc/dt = controller.rates(e, u, c)

Every solver consumes this definition: torchdiffeq integrates :meth:`ClosedLoop.vector_field`,
the exponential integrator its deviation form (:class:`neurodfc.core.split.SplitField`), the
reference scheme :meth:`ClosedLoop.euler_step` (the official code's discretisation; its fused
specialisation :mod:`neurodfc.fastpath` is tested against it step for step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodfc.components.controller import Controller, ControllerState
from neurodfc.components.neurons import NeuronLayer, default_layers
from neurodfc.core.noise import ApicalNoise
from neurodfc.network import DFCNetwork


@dataclass(frozen=True)
class EulerScheme:
    """The reference scheme's discretisation options (see :mod:`neurodfc.solve`)."""

    dt: float
    """Step (units of tau_u)."""
    inst_transmission: bool = True
    """Layer i at step t+1 reads layer i-1 at t+1 (layers swept bottom-up)."""
    proactive_controller: bool = True
    """The apical input at step t+1 uses ``u[t+1]``."""
    inst_system_dynamics: bool = False
    """``v_i = v_i^b + v_i^fb`` without v-dynamics."""


@dataclass
class LoopState:
    """One state of the reference scheme: per layer ``v``, ``r``, ``vb`` (basal), ``a``
    (apical) [B, n_i]; the controller state ``c``, the control ``u`` and error ``e`` [B, n_L]."""

    v: list[torch.Tensor]
    r: list[torch.Tensor]
    vb: list[torch.Tensor]
    a: list[torch.Tensor]
    c: ControllerState
    u: torch.Tensor
    e: torch.Tensor


class ClosedLoop:
    """The closed loop for one batch (see the module docstring).

    Args:
        net: weights ``W_i``, biases ``b_i`` and feedback ``Q_i`` (read, never changed).
        x: inputs ``r_0`` [B, n_0] (held fixed).
        r_target: output targets ``r_L*`` [B, n_L].
        controller: the controller component.
        tau_ratio: ``tau_v / tau_u`` of every layer whose component leaves ``tau`` unset.
        apical_tau: apical time constant ``tau_A`` (None: instantaneous).
        layers: one :class:`NeuronLayer` per layer (None: the network's activations).
        error: the controller's error: ``difference`` ``e = r_L* - r_L`` (DFC) or ``softmax``
            ``e = r_L* - softmax(r_L)`` (Strong-DFC: ``-dL/dr_L`` of the cross-entropy).
    """

    def __init__(
        self,
        net: DFCNetwork,
        x: torch.Tensor,
        r_target: torch.Tensor,
        controller: Controller,
        tau_ratio: float,
        apical_tau: float | None = None,
        layers: list[NeuronLayer] | None = None,
        error: str = "difference",
    ) -> None:
        if error not in ("difference", "softmax"):
            raise ValueError(f"error must be 'difference' or 'softmax', got {error!r}")
        self.error_kind = error
        self.net = net
        self.x = x
        self.r_target = r_target
        self.controller = controller
        self.tau_ratio = tau_ratio
        self.apical_tau = apical_tau
        self.layers = list(layers) if layers is not None else default_layers(net.act_names)
        if len(self.layers) != net.depth:
            raise ValueError(f"{len(self.layers)} neuron layers given for {net.depth} layers")
        self.custom_layers = layers is not None
        self.L = net.depth
        self.sizes = net.sizes[1:]
        self.W = [w.detach() for w in net.W]
        self.b = [b.detach() for b in net.b] if net.has_bias else [None] * self.L
        self.Q = [q.detach() for q in net.Q]
        self.input_drive = torch.nn.functional.linear(x, self.W[0], self.b[0])
        self.v_ff, self.r_ff = self.feedforward()

    @property
    def taus(self) -> list[float]:
        """``tau_i / tau_u`` of every layer."""
        return [lay.tau if lay.tau is not None else self.tau_ratio for lay in self.layers]

    def basal(self, i: int, r_prev: torch.Tensor) -> torch.Tensor:
        """Basal input ``W_i r_{i-1} + b_i`` of layer ``i`` (0-based) from ``r_prev``."""
        if i == 0:
            return self.input_drive
        return torch.nn.functional.linear(r_prev, self.W[i], self.b[i])

    def feedforward(
        self, dv: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(v, r)`` of the feedforward pass (``u = 0``), or with voltage changes ``dv`` added
        layer by layer (the Lemma-1 state).

        Args:
            dv: optional per-layer voltage changes [B, n_i].
        """
        vs: list[torch.Tensor] = []
        rs: list[torch.Tensor] = []
        r = self.x
        for i, lay in enumerate(self.layers):
            v = self.basal(i, r)
            v = v + dv[i] if dv is not None else v
            r = lay.phi(v)
            vs.append(v)
            rs.append(r)
        return vs, rs

    # ------------------------------------------------------------- continuous time
    @property
    def n_neuron_states(self) -> int:
        """State entries before the controller's (``L``, or ``2 L`` with apical dynamics)."""
        return 2 * self.L if self.apical_tau is not None else self.L

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        """The feedforward state: ``v = v^-``, apical voltages 0, the controller's start."""
        v = [t.clone() for t in self.v_ff]
        apical = [torch.zeros_like(t) for t in v] if self.apical_tau is not None else []
        e0 = self.output_error(self.r_ff[-1])
        return (*v, *apical, *self.controller.initial_state(e0))

    def controller_state(self, state: tuple[torch.Tensor, ...]) -> ControllerState:
        """The controller's entries of a state tuple."""
        return tuple(state[self.n_neuron_states :])

    def error(self, v_out: torch.Tensor) -> torch.Tensor:
        """``e = r_L* - phi_L(v_L)`` for the output voltage ``v_out`` (see ``error``)."""
        return self.output_error(self.layers[-1].phi(v_out))

    def output_error(self, r_out: torch.Tensor) -> torch.Tensor:
        """The error ``e`` at the output rate ``r_out`` [B, n_L] (``r_L* - r_L`` or
        ``r_L* - softmax(r_L)``)."""
        if self.error_kind == "softmax":
            return self.r_target - torch.softmax(r_out, dim=-1)
        return self.r_target - r_out

    def control_of(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, u)`` at a state tuple."""
        e = self.error(state[self.L - 1])
        return e, self.controller.output(e, self.controller_state(state))

    def vector_field(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``d state / dt`` (units of 1/tau_u) of a state tuple ``(v_1..v_L, [a_1..a_L], c)``."""
        L, taus = self.L, self.taus
        v = state[:L]
        apical = state[L : 2 * L] if self.apical_tau is not None else ()
        c = self.controller_state(state)
        e = self.error(v[-1])
        u = self.controller.output(e, c)
        dv, da = [], []
        for i in range(L):
            basal = self.basal(i, self.layers[i - 1].phi(v[i - 1]) if i > 0 else self.x)
            fb = u @ self.Q[i].T
            if self.apical_tau is not None:
                da.append((fb - apical[i]) / self.apical_tau)
                fb = apical[i]
            dv.append((basal + fb - v[i]) / taus[i])
        return (*dv, *da, *self.controller.rates(e, u, c))

    # ------------------------------------------------------------- reference Euler
    def euler_state(self) -> LoopState:
        """The reference scheme's initial state (the feedforward state, ``u = u_int = 0``)."""
        e0 = self.output_error(self.r_ff[-1])
        c = self.controller.initial_state(e0)
        return LoopState(
            v=[t.clone() for t in self.v_ff],
            r=[t.clone() for t in self.r_ff],
            vb=[t.clone() for t in self.v_ff],
            a=[torch.zeros_like(t) for t in self.v_ff],
            c=c,
            u=torch.zeros_like(e0),
            e=e0,
        )

    def euler_step(
        self,
        st: LoopState,
        scheme: EulerScheme,
        noise: ApicalNoise | None = None,
        xi: torch.Tensor | None = None,
    ) -> LoopState:
        """One step ``t -> t+1`` of the reference scheme (plain operations, a new state)::

            e = r* - r_L[t];  c[t+1] = c[t] + dt rates(e, u[t], c[t]);  u[t+1] = output(e, c[t+1])
            a_i[t+1] = a_i[t] + dt/tau_A (Q_i u[t+1 if proactive else t] - a_i[t]) (+ noise)
            vb_i[t+1] = W_i r_{i-1}[t+1 if inst_transmission else t] + b_i
            v_i[t+1] = v_i[t] + dt/tau_i (a_i + vb_i - v_i[t])   (or a_i + vb_i if inst_system)

        (``a_i[t+1] = Q_i u`` for an instantaneous apical compartment.)

        Args:
            st: the state at ``t``.
            scheme: step and discretisation options.
            noise: the apical noise (None: none).
            xi: this step's standard normals [B, N] (with ``noise``).
        """
        dt, L, taus = scheme.dt, self.L, self.taus
        ctrl = self.controller
        e = self.output_error(st.r[-1])
        rates = ctrl.rates(e, st.u, st.c)
        c = tuple(s + dt * k for s, k in zip(st.c, rates, strict=True))
        u = ctrl.output(e, c)
        u_ap = u if scheme.proactive_controller else st.u
        tau_a = self.apical_tau if self.apical_tau is not None else dt
        noise_t = None
        if noise is not None and noise.active and xi is not None:
            noise_t = noise.term(xi, self.sizes, dt, tau_a, st.u)
        a: list[torch.Tensor] = []
        offs = 0
        for i in range(L):
            fb = u_ap @ self.Q[i].T
            a_i = fb if self.apical_tau is None else st.a[i] + (dt / tau_a) * (fb - st.a[i])
            if noise_t is not None:
                a_i = a_i + noise_t[:, offs : offs + self.sizes[i]]
            offs += self.sizes[i]
            a.append(a_i)
        inst_tx = scheme.inst_transmission or scheme.inst_system_dynamics
        v, r, vb = list(st.v), list(st.r), list(st.vb)
        for i in range(L) if inst_tx else range(L - 1, -1, -1):
            vb[i] = self.basal(i, r[i - 1] if i > 0 else self.x)
            if scheme.inst_system_dynamics:
                v[i] = a[i] + vb[i]
            else:
                v[i] = v[i] + (dt / taus[i]) * (a[i] + vb[i] - v[i])
            r[i] = self.layers[i].phi(v[i])
        return LoopState(v=v, r=r, vb=vb, a=a, c=c, u=u, e=e)


def feedforward(
    net: DFCNetwork, x: torch.Tensor, layers: list[NeuronLayer]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(v, r)`` of the feedforward pass of ``net`` with the neuron layers ``layers`` (for
    a user-defined layer, the state a simulation with ``neurons=layers`` starts from; compute
    its target from ``r[-1]``).

    Args:
        net: weights and biases.
        x: inputs [B, n_0].
        layers: one :class:`NeuronLayer` per layer.
    """
    with torch.no_grad():
        v, r = [], []
        h = x
        for i, lay in enumerate(layers):
            h_v = torch.nn.functional.linear(h, net.W[i], net.b[i] if net.has_bias else None)
            h = lay.phi(h_v)
            v.append(h_v)
            r.append(h)
        return v, r
