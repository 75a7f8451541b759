"""How much of a weight update the output cannot see: its null-space component.

For layer i and a minibatch of B samples, ``A_i = d vec(r_L) / d vec(W_i)`` [B n_L, n_i n_{i-1}]
is the Jacobian of the whole minibatch's outputs w.r.t. the layer's weights; its row for
sample b and output unit k is ``J_i[b, k, :] (x) r_{i-1}[b]`` (``J_i = d r_L / d v_i`` at the
feedforward state). A change of ``W_i`` in the null space of ``A_i`` changes no output to first
order. The measure (the reference code's ``nullspace_relative_norm``, logged per layer with
``save_nullspace_norm_ratio`` on the weight gradients after clipping) is

    nullspace_ratio_i = |(I - P_i) vec(dW_i)| / |vec(dW_i)|,   P_i = projector onto row(A_i),

in [0, 1]: 0 for an update in the row space (every part of it moves the outputs), 1 for one
the outputs do not see. Biases are not included (as in the reference).

``row(A_i)`` is spanned by the right singular vectors whose singular value is at least ``tol``
(the reference's absolute 1e-12). When ``A_i`` is small it is formed and decomposed by SVD (the
reference's computation); otherwise (every MNIST layer: ``A_1`` is 1280 x 200704) the
projection is computed without forming ``A_i``, from the eigen-decomposition of the Gram
matrix ``A_i A_i^T = (J_i J_i^T) * (r_{i-1} r_{i-1}^T)`` (per sample pair), with the cut-off
raised to the Gram matrix's rounding floor ``sqrt(m eps) s_max`` (m = B n_L) where that is
larger.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis._common import finish, layer_coord, var
from neurodfc.system import DFCSystem, jacobian

TOL = 1e-12
"""Singular values below this count as zero (the reference's ``nullspace`` tolerance)."""
MAX_EXPLICIT = 1_000_000
"""``A_i`` with at most this many elements is formed and decomposed by SVD."""


def _row_projection_svd(
    Ji: torch.Tensor, rp: torch.Tensor, X: torch.Tensor, tol: float
) -> torch.Tensor:
    """``P X`` for ``A`` [B n_L, n_i n_{i-1}] formed explicitly (rows ``J_i[b,k] (x) r[b]``)."""
    A = (Ji.unsqueeze(-1) * rp[:, None, None, :]).reshape(Ji.shape[0] * Ji.shape[1], -1)
    _, S, Vh = torch.linalg.svd(A, full_matrices=False)
    Vr = Vh[S >= tol]
    return (Vr.T @ (Vr @ X.reshape(-1))).reshape(X.shape)


def _row_projection_gram(
    Ji: torch.Tensor, rp: torch.Tensor, X: torch.Tensor, tol: float
) -> torch.Tensor:
    """``P X = A^T U L^-1 U^T A X`` from ``A A^T = U L U^T`` without forming ``A``."""
    B, nL, _ = Ji.shape
    G = torch.einsum("bkp,cjp->bkcj", Ji, Ji) * (rp @ rp.T)[:, None, :, None]
    G = G.reshape(B * nL, B * nL)
    lam, U = torch.linalg.eigh(G)
    s = lam.clamp_min(0.0).sqrt()
    floor = max(tol, float(np.sqrt(B * nL * torch.finfo(G.dtype).eps)) * float(s.max()))
    keep = s >= floor
    U, lam = U[:, keep], lam[keep]
    AX = torch.einsum("bkp,pq,bq->bk", Ji, X, rp).reshape(-1)
    w = (U @ ((U.T @ AX) / lam)).reshape(B, nL)
    return torch.einsum("bkp,bk,bq->pq", Ji, w, rp)


def nullspace_ratio_layers(
    system: DFCSystem,
    x: torch.Tensor,
    grad_W: list[torch.Tensor],
    *,
    tol: float = TOL,
    max_explicit: int = MAX_EXPLICIT,
) -> torch.Tensor:
    """Per-layer ``|(I - P_i) vec(dW_i)| / |vec(dW_i)|`` (see the module docstring).

    Args:
        system: the DFC system (its feedforward state at ``x``); never modified.
        x: inputs [B, n_0] of the minibatch.
        grad_W: the weight updates ``dW_i`` [n_i, n_{i-1}] (any sign or scale).
        tol: singular values below ``tol`` count as zero.
        max_explicit: ``A_i`` with at most this many elements is formed and decomposed by SVD,
            larger ones go through the Gram matrix (0: always the Gram matrix).

    Returns:
        [L] ratios in [0, 1] (NaN for a zero update).
    """
    net = system.network
    with torch.no_grad():
        v, r = net.feedforward(x)
        blocks = net.split_units(jacobian(net, v), dim=2)
        out = []
        for Ji, rp, X in zip(blocks, [x, *r[:-1]], grad_W, strict=True):
            X = X.detach().to(Ji.dtype)
            m, n = Ji.shape[0] * Ji.shape[1], X.numel()
            if m * n <= max_explicit:
                PX = _row_projection_svd(Ji, rp, X, tol)
            else:
                PX = _row_projection_gram(Ji, rp, X, tol)
            norm = torch.linalg.vector_norm(X)
            ratio = torch.linalg.vector_norm(X - PX) / norm
            out.append(ratio.clamp(0.0, 1.0) if bool(norm > 0) else ratio * torch.nan)
        return torch.stack(out)


def nullspace(
    system: DFCSystem,
    x: torch.Tensor,
    grad_W: list[torch.Tensor],
    *,
    tol: float = TOL,
) -> xr.Dataset:
    """The null-space measure of a minibatch's weight update as a Dataset.

    Args:
        system: the DFC system (its feedforward state at ``x``); never modified.
        x: inputs [B, n_0] of the minibatch the update came from.
        grad_W: the weight updates ``dW_i`` [n_i, n_{i-1}] (e.g. ``Update.grad_W``).
        tol: singular values below ``tol`` count as zero (reference: 1e-12).

    Returns:
        Dataset with variable ``nullspace_ratio`` (layer = 1..L), in [0, 1].

    Examples:
        The BP gradient of one sample lies in the row space of ``d r_L / d W_i``:

        >>> import torch
        >>> from neurodfc.config import config_from_dict
        >>> from neurodfc.methods import BP
        >>> from neurodfc.system import DFCSystem
        >>> system = DFCSystem.from_config(config_from_dict({"network": {"sizes": [4, 3, 2]}}))
        >>> x = torch.linspace(-1, 1, 4, dtype=torch.float64).reshape(1, 4)
        >>> up = BP().update(system, x, torch.ones(1, 2, dtype=torch.float64))
        >>> bool((nullspace(system, x, up.grad_W).nullspace_ratio < 1e-6).all())
        True
    """
    ratios = nullspace_ratio_layers(system, x, grad_W, tol=tol)
    ds = xr.Dataset(
        {
            "nullspace_ratio": var(
                ("layer",),
                ratios,
                "relative norm of the weight update in the null space of d r_L / d W_i",
                "1",
                definition="|(I - P) vec(dW_i)| / |vec(dW_i)|, P projector onto the row space "
                "of d vec(r_L) / d vec(W_i) over the minibatch",
            )
        },
        coords={"layer": layer_coord(system.network.depth)},
    )
    return finish(
        ds, system, "neurodfc.analysis.nullspace", tol=float(tol), batch_size=int(x.shape[0])
    )
