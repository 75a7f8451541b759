"""Feedback weights ``Q_i`` (n_i x n_L), the apical input ``v_i^fb = Q_i u``."""

from __future__ import annotations

import torch

from neurodfc.config import FeedbackConfig


def init_feedback(
    cfg: FeedbackConfig,
    weights: list[torch.Tensor],
    generator: torch.Generator,
    jacobian_blocks: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Initial ``[Q_1, ..., Q_L]`` for forward weights ``weights = [W_1, ..., W_L]``.

    ``weight_product``: ``Q_i = W_{i+1}^T ... W_L^T`` (the paper's "fixed" feedback);
    ``jacobian_transpose``: ``Q_i = J_i^T`` with ``jacobian_blocks`` the per-layer blocks of the
    output Jacobian at a reference state (``[n_L, n_i]`` each); ``xavier_*``: random.
    ``Q_L = I`` when ``output_identity``.

    Args:
        cfg: the ``[feedback]`` config section (init, output_identity, init_noise).
        weights: forward weights ``[W_1, ..., W_L]``, ``W_i`` [n_i, n_{i-1}]; their dtype and
            device are the feedback's.
        generator: random generator of the random initialisations and the noise.
        jacobian_blocks: ``[J_1, ..., J_L]`` for ``jacobian_transpose`` (else unused).

    Returns:
        ``[Q_1, ..., Q_L]``, ``Q_i`` [n_i, n_L].
    """
    n_out = weights[-1].shape[0]
    dtype, device = weights[0].dtype, weights[0].device
    qs: list[torch.Tensor] = []
    for i, w in enumerate(weights):
        n_i = w.shape[0]
        if i == len(weights) - 1 and cfg.output_identity:
            qs.append(torch.eye(n_out, dtype=dtype, device=device))
            continue
        if cfg.init == "weight_product":
            q = torch.eye(n_i, dtype=dtype, device=device)
            for w_k in weights[i + 1 :]:
                q = q @ w_k.T
            if cfg.init_noise > 0:
                # drawn in float64 on the CPU whatever the run's dtype and device, so that a
                # float32 or CUDA run starts from the same feedback as the float64 CPU run
                noise = torch.randn(q.shape, generator=generator, dtype=torch.float64)
                q = q + cfg.init_noise * noise.to(device=device, dtype=dtype)
        elif cfg.init == "jacobian_transpose":
            if jacobian_blocks is None:
                raise ValueError("feedback.init = 'jacobian_transpose' needs the Jacobian blocks")
            q = jacobian_blocks[i].T.clone()
        else:
            q = torch.empty(n_i, n_out, dtype=torch.float64)  # as the noise above
            _xavier(q, cfg.init, generator)
            q = q.to(device=device, dtype=dtype)
        qs.append(q)
    return qs


def _xavier(t: torch.Tensor, kind: str, generator: torch.Generator, gain: float = 1.0) -> None:
    fan_out, fan_in = t.shape
    if kind == "xavier_normal":
        std = gain * (2.0 / (fan_in + fan_out)) ** 0.5
        t.normal_(0.0, std, generator=generator)
    else:
        bound = gain * (6.0 / (fan_in + fan_out)) ** 0.5
        t.uniform_(-bound, bound, generator=generator)
