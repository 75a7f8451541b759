"""The surrogate loss of Strong-DFC: ``H = 1/2 |Q u_ss|^2``, the control needed at the controlled
steady state, and its gradient with respect to the forward weights.

Controlled steady state (``dv_i = Q_i u`` on top of the basal input, the output error balanced by
the leak, ``alpha = alpha_eff``)::

    F(u) = e(r_L(u)) - alpha u = 0,   e = r_L* - g(r_L),   g = identity or softmax

solved per sample by damped Newton steps ``u <- u + M^-1 F(u)``, ``M = G J Q + alpha I``
(``J = dr_L/dv`` and ``G = dg/dr_L`` at the controlled state). Implicit differentiation gives
``du/dtheta = -M^-1 G dr_L/dtheta`` and::

    dH/dW_i = mean_b (J_i^T lam) r_{i-1}^T,   dH/db_i = mean_b J_i^T lam,
    lam = -G^T M^-T Q^T Q u_ss

(the successor's ``compute_H_update`` is the ``G = I`` case, evaluated at the feedforward pass:
``at="feedforward"``). A learning rule minimises the control when its update (PyTorch sign,
``W <- W - lr grad``) is aligned with ``dH/dtheta``: :func:`h_analysis` reports the angle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from neurodfc.methods.base import Update
from neurodfc.strong.dynamics import ErrorKind
from neurodfc.strong.methods import error_kind, strong_target
from neurodfc.system import DFCSystem, jacobian


@dataclass(frozen=True)
class ControlledSteadyState:
    """Solution of ``F(u) = 0`` per sample: control ``u`` [B, n_L], voltages ``v`` and rates
    ``r`` per layer, Jacobian ``J`` [B, n_L, N], ``G`` [B, n_L, n_L], the residual ``|F(u)|``
    [B] and whether it fell below the tolerance."""

    u: torch.Tensor
    v: list[torch.Tensor]
    r: list[torch.Tensor]
    J: torch.Tensor
    G: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor


def _out_map(r_out: torch.Tensor, error: ErrorKind) -> tuple[torch.Tensor, torch.Tensor]:
    """``g(r_L)`` and ``G = dg/dr_L`` [B, n_L, n_L]."""
    if error == "softmax":
        p = torch.softmax(r_out, dim=-1)
        return p, torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    eye = torch.eye(r_out.shape[-1], dtype=r_out.dtype, device=r_out.device)
    return r_out, eye.expand(r_out.shape[0], -1, -1)


def controlled_steady_state(
    system: DFCSystem,
    x: torch.Tensor,
    r_target: torch.Tensor,
    *,
    error: ErrorKind = "difference",
    alpha: float | None = None,
    u0: torch.Tensor | None = None,
    tol: float = 1e-11,
    max_iter: int = 100,
) -> ControlledSteadyState:
    """Newton solve of ``F(u) = r_L* - g(r_L(u)) - alpha u = 0`` per sample, with step halving
    until ``|F|`` decreases (see the module docstring).

    Args:
        system: the DFC system (network, ``Q``); never modified.
        x: inputs [B, n_0].
        r_target: output target ``r_L*`` [B, n_L].
        error: ``difference`` (``g`` = identity) or ``softmax``.
        alpha: the leak (default: ``controller.alpha_eff``).
        u0: initial control [B, n_L] (default: zero).
        tol: tolerance on ``|F(u)|``.
        max_iter: maximum number of Newton steps.
    """
    net = system.network
    a = system.cfg.controller.alpha_eff if alpha is None else alpha
    with torch.no_grad():
        Q = net.full_Q().detach()
        nL = r_target.shape[1]
        eye = torch.eye(nL, dtype=x.dtype, device=x.device)

        def residual(
            u: torch.Tensor,
        ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
            v, r = net.feedforward(x, net.split_units(u @ Q.T))
            g, _ = _out_map(r[-1], error)
            return r_target - g - a * u, v, r

        u = torch.zeros_like(r_target) if u0 is None else u0.clone()
        F, v, r = residual(u)
        fn = torch.linalg.vector_norm(F, dim=1)
        for _ in range(max_iter):
            if bool((fn < tol).all()):
                break
            J = jacobian(net, v)
            _, G = _out_map(r[-1], error)
            M = G @ J @ Q + a * eye
            step = torch.linalg.solve(M, F.unsqueeze(-1)).squeeze(-1)
            scale = torch.ones_like(fn)
            active = fn >= tol
            for _ in range(30):  # halve the step of samples whose residual grew
                u_new = u + torch.where(active, scale, 0.0)[:, None] * step
                F_new, v_new, r_new = residual(u_new)
                fn_new = torch.linalg.vector_norm(F_new, dim=1)
                worse = active & ~(fn_new < fn)
                if not bool(worse.any()):
                    break
                scale = torch.where(worse, 0.5 * scale, scale)
            u, F, v, r, fn = u_new, F_new, v_new, r_new, fn_new
        J = jacobian(net, v)
        _, G = _out_map(r[-1], error)
    return ControlledSteadyState(
        u=u, v=v, r=r, J=J, G=G.contiguous(), residual=fn, converged=fn < max(tol, 1e-8)
    )


def h_value(system: DFCSystem, u: torch.Tensor) -> torch.Tensor:
    """``H = 1/2 |Q u|^2`` per sample [B] for the control ``u`` [B, n_L] and the feedback
    ``Q`` of ``system``."""
    Qu = u @ system.network.full_Q().detach().T
    return 0.5 * (Qu * Qu).sum(1)


def h_gradient(
    system: DFCSystem,
    x: torch.Tensor,
    ss: ControlledSteadyState,
    *,
    alpha: float | None = None,
    at: Literal["steady_state", "feedforward"] = "steady_state",
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(dH/dW_i, dH/db_i)`` of the batch-mean ``H`` at the steady state ``ss`` (see the module
    docstring).

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        ss: the controlled steady state of ``x`` (:func:`controlled_steady_state`).
        alpha: the leak (default: ``controller.alpha_eff``).
        at: ``steady_state``, or ``feedforward`` to evaluate ``J``, the rates and ``G = I``
            at the feedforward pass (the successor's ``compute_H_update``).

    Returns:
        Per layer ``dH/dW_i`` [n_i, n_{i-1}] and ``dH/db_i`` [n_i].
    """
    net = system.network
    a = system.cfg.controller.alpha_eff if alpha is None else alpha
    with torch.no_grad():
        Q = net.full_Q().detach()
        if at == "feedforward":
            v_ff, r_ff = net.feedforward(x)
            J, rates = jacobian(net, v_ff), r_ff
            G = torch.eye(J.shape[1], dtype=J.dtype, device=J.device).expand(J.shape[0], -1, -1)
        else:
            J, rates, G = ss.J, ss.r, ss.G
        eye = torch.eye(J.shape[1], dtype=J.dtype, device=J.device)
        M = G @ J @ Q + a * eye
        rhs = (ss.u @ Q.T) @ Q  # (Q^T Q u)^T  [B, n_L]
        lam = -(G.transpose(1, 2) @ torch.linalg.solve(M.transpose(1, 2), rhs.unsqueeze(-1)))
        g = (J.transpose(1, 2) @ lam).squeeze(-1)  # [B, N]
        B = x.shape[0]
        gW, gb = [], []
        for gi, rp in zip(net.split_units(g), [x, *rates[:-1]], strict=True):
            gW.append(gi.T @ rp / B)
            gb.append(gi.sum(0) / B if net.has_bias else torch.zeros_like(gi[0]))
    return gW, gb


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    c = (a @ b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    return float(torch.rad2deg(torch.arccos(c.clamp(-1.0, 1.0))))


def h_analysis(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    update: Update | None = None,
    *,
    at: Literal["steady_state", "feedforward"] = "steady_state",
    generator: torch.Generator | None = None,
) -> xr.Dataset:
    """``H``, its gradient at the controlled steady state and the angle of a DFC update to it.

    ``update`` defaults to the update of ``system.cfg.method`` on ``(x, y)`` (drawing its
    noise from ``generator``). The target and the error follow ``[strong]``; ``at`` is passed
    to :func:`h_gradient`. Returns a Dataset with dims ``sample`` and ``layer``
    (1..L): ``H``, ``residual``, ``converged`` per sample; ``angle_W`` (weights), ``angle_b``
    per layer; scalars ``angle`` (all weights and biases), ``angle_weights`` (weights only, the
    successor's "lu_angle"), ``H_mean``; norms ``grad_H_norm``, ``update_norm`` per layer.
    """
    from neurodfc.methods import get_method  # the registry sits above this module

    cfg = system.cfg
    if update is None:
        update = get_method(cfg.method.name).update(system, x, y, generator=generator)
    with torch.no_grad():
        out = system.network(x)
        rt = strong_target(system, out, y)
    err = error_kind(cfg)
    ss = controlled_steady_state(system, x, rt, error=err)
    gW, gb = h_gradient(system, x, ss, at=at)
    L = len(gW)
    flat_h = torch.cat([t.reshape(-1) for pair in zip(gW, gb, strict=True) for t in pair])
    flat_u = update.flat(include_bias=True).to(flat_h.dtype)
    w_h = torch.cat([t.reshape(-1) for t in gW])
    w_u = torch.cat([t.reshape(-1) for t in update.grad_W]).to(w_h.dtype)
    H = h_value(system, ss.u)
    ds = xr.Dataset(
        {
            "H": ("sample", H.cpu().numpy()),
            "residual": ("sample", ss.residual.cpu().numpy()),
            "converged": ("sample", ss.converged.cpu().numpy()),
            "angle_W": (
                "layer",
                np.array([_angle(gW[i].flatten(), update.grad_W[i].flatten()) for i in range(L)]),
            ),
            "angle_b": ("layer", np.array([_angle(gb[i], update.grad_b[i]) for i in range(L)])),
            "grad_H_norm": ("layer", np.array([float(torch.linalg.norm(g)) for g in gW])),
            "update_norm": (
                "layer",
                np.array([float(torch.linalg.norm(g)) for g in update.grad_W]),
            ),
            "angle": _angle(flat_h, flat_u),
            "angle_weights": _angle(w_h, w_u),
            "H_mean": float(H.mean()),
        },
        coords={"sample": np.arange(x.shape[0]), "layer": np.arange(1, L + 1)},
    )
    ds["angle"].attrs["units"] = "degree"
    ds["angle_W"].attrs["units"] = "degree"
    ds.attrs.update(
        {"method": cfg.method.name, "at": at, "error": err, "alpha": cfg.controller.alpha_eff}
    )
    return ds
