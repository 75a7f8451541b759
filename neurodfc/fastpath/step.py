"""One step of the fused reference scheme, in place: the controller, the apical compartments
(feedback, low-pass, noise) and the layers (basal input, voltage, rate).

Each function updates the buffers of :class:`neurodfc.fastpath.buffers.FusedBuffers` for the
step ``t -> t+1``; the rates of the current state are in slot ``s``, the new rates go to slot
``n`` (see :class:`neurodfc.fastpath.settings.FusedSettings` for the equations).
"""

from __future__ import annotations

import math

import torch

from neurodfc.core.filters import LowPass
from neurodfc.fastpath.buffers import FusedBuffers
from neurodfc.fastpath.ops import (
    add_scaled,
    add_scaled_,
    addmm_,
    addmm_into,
    any_positive,
    mm_into,
    same,
    sub_scaled,
)
from neurodfc.fastpath.settings import FusedSettings
from neurodfc.increments import fast_tanh


def controller_step(b: FusedBuffers, cfg: FusedSettings, s: int) -> torch.Tensor:
    """The PI controller: ``e``, ``u_int[t+1]`` (in place) and the new control ``u[t+1]``.

    Args:
        b: the run's buffers (``b.u`` still holds ``u[t]``).
        cfg: the run's settings.
        s: rate slot of the current state.

    Returns:
        ``u[t+1]`` (a new tensor; the caller stores it as ``b.u`` after the layers' update).
    """
    e, u_int = b.e, b.u_int
    b.error_into(b.slot_r[b.L - 1][s], e)
    sub_scaled(e, u_int if cfg.leak == "paper" else b.u, cfg.alpha, out=b.rate)
    u_int.add_(b.rate, alpha=cfg.dt)
    k_p = cfg.k_p
    return (
        add_scaled(u_int, e, k_p) if isinstance(k_p, torch.Tensor) or k_p != 0.0 else u_int.clone()
    )


def feedback_sum(b: FusedBuffers, u_new: torch.Tensor, lowpass: LowPass | None) -> None:
    """The sleep-phase sum ``acc_Q += a[t]^T u_f[t+1]`` (``u_f = u``, or the high-pass
    ``u - LP(u)`` with ``lowpass``).

    Args:
        b: the run's buffers (the apical voltages still at step t).
        u_new: the new control ``u[t+1]``.
        lowpass: the low-pass of the high-pass filtered control (None: raw ``u``).
    """
    u_f = u_new if lowpass is None else u_new - lowpass.step(u_new)
    addmm_(b.acc_Q, b.VA.transpose(-1, -2), u_f)


def apical_step(
    b: FusedBuffers, cfg: FusedSettings, u_new: torch.Tensor, xi: torch.Tensor | None
) -> None:
    """The feedback ``Q u`` of every layer (one matmul), the apical low-pass and the noise.

    Args:
        b: the run's buffers.
        cfg: the run's settings.
        u_new: the new control ``u[t+1]`` (used when the controller is proactive).
        xi: this step's standard normals [B, N] (None: no noise).
    """
    FB, VA = b.FB, b.VA
    mm_into(u_new if cfg.proactive_controller else b.u, b.QT, FB)
    instantaneous = cfg.instantaneous
    if xi is None:
        if not instantaneous:  # (instantaneous and noise-free: VA is FB)
            VA.lerp_(FB, cfg.c_a)
    elif b.ou is not None:
        assert cfg.tau_noise is not None and b.sig_units is not None
        VA.copy_(FB) if instantaneous else VA.lerp_(FB, cfg.c_a)
        dt, tau = cfg.dt, cfg.tau_noise
        b.ou.mul_(1.0 - dt / tau).add_(xi, alpha=(dt / tau) / math.sqrt(dt))
        VA.addcmul_(b.ou, b.sig_units)
    else:
        _white_noise(b, cfg, xi)


def _white_noise(b: FusedBuffers, cfg: FusedSettings, xi: torch.Tensor) -> None:
    """Apical low-pass plus white noise ``sigma_i sqrt(dt) / tau_A xi`` (Euler-Maruyama)."""
    FB, VA = b.FB, b.VA
    sigma, sigma_out = cfg.noise
    scale = cfg.noise_scale
    same_sigma = same(sigma, sigma_out)
    instantaneous = cfg.instantaneous
    if instantaneous and same_sigma:
        add_scaled(FB, xi, sigma * scale, out=VA)
    elif instantaneous:
        VA.copy_(FB)
    else:
        VA.lerp_(FB, cfg.c_a)
    if same_sigma and not instantaneous:
        add_scaled_(VA, xi, sigma * scale)
    elif not same_sigma:
        h = b.offs[b.L - 1]
        if any_positive(sigma):
            add_scaled_(VA[..., :h], xi[..., :h], sigma * scale)
        if any_positive(sigma_out):
            add_scaled_(VA[..., h:], xi[..., h:], sigma_out * scale)


def layers_step(b: FusedBuffers, cfg: FusedSettings, s: int, n: int) -> None:
    """Every layer's basal input, voltage and rate (into slot ``n``), in the order the
    transmission flag needs (forward with instantaneous transmission, else backward).

    Args:
        b: the run's buffers (the apical voltages already at step t+1).
        cfg: the run's settings.
        s: rate slot of the current state.
        n: rate slot of the new state.
    """
    slot_r, v, vb, va, tmp, Wt, bias = b.slot_r, b.v, b.vb, b.va, b.tmp, b.Wt, b.bias
    prev = n if cfg.inst_tx else s
    inst_system, c_v = cfg.inst_system_dynamics, cfg.c_v
    for i in b.layer_order:
        if i > 0:  # (layer 1's basal input W_1 r_0 + b_1 is constant: vb[0])
            bi = bias[i]
            if bi is not None:
                addmm_into(bi, slot_r[i - 1][prev], Wt[i], vb[i])
            else:
                mm_into(slot_r[i - 1][prev], Wt[i], vb[i])
        if inst_system:
            torch.add(va[i], vb[i], out=v[i])
        else:
            torch.add(va[i], vb[i], out=tmp[i])
            v[i].lerp_(tmp[i], c_v)
        act = b.acts[i]
        if act == "tanh":
            fast_tanh(v[i], slot_r[i][n], b.half[i])
        elif act == "linear":
            slot_r[i][n].copy_(v[i])
        else:
            slot_r[i][n].copy_(b.net.act(i, v[i]))
