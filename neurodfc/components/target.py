"""The output target ``r_L* = r_L^- - lam dL/dr_L`` (paper eq. 2), closed forms per loss."""

from __future__ import annotations

import torch


def loss_value(r_out: torch.Tensor, y: torch.Tensor, loss: str, reduction: str) -> torch.Tensor:
    """The loss L of outputs ``r_out`` [B, n_L] against ``y`` (labels [B] or targets [B, n_L]).

    Args:
        r_out: output rates ``r_L`` [B, n_L].
        y: class labels [B] (``cross_entropy``) or regression targets [B, n_L] (``mse``).
        loss: ``mse`` or ``cross_entropy`` (softmax folded into the loss).
        reduction: ``mean`` (PyTorch's batch mean; MSE also over units), ``sum`` (over the
            batch and, for MSE, the units) or ``sum_of_sample_means`` (``B`` times ``mean``:
            each sample's loss, MSE averaged over its units, summed over the batch).
    """
    torch_reduction = "mean" if reduction == "sum_of_sample_means" else reduction
    if loss == "cross_entropy":
        value = torch.nn.functional.cross_entropy(r_out, y, reduction=torch_reduction)
    else:
        value = torch.nn.functional.mse_loss(r_out, y, reduction=torch_reduction)
    return value * r_out.shape[0] if reduction == "sum_of_sample_means" else value


def loss_gradient(r_out: torch.Tensor, y: torch.Tensor, loss: str, reduction: str) -> torch.Tensor:
    """``dL/dr_L`` [B, n_L] in closed form (no autograd).

    cross_entropy: ``(softmax(r) - onehot(y)) / B`` (mean) or without ``1/B`` (sum and
    sum_of_sample_means); mse: ``2 (r - y) / (B n_L)`` (mean, PyTorch's convention),
    ``2 (r - y)`` (sum) or ``2 (r - y) / n_L`` (sum_of_sample_means, the Strong-DFC code's
    ``B * nn.MSELoss()``).

    Args:
        r_out: output rates ``r_L`` [B, n_L] at which the gradient is taken.
        y: class labels [B] (``cross_entropy``) or regression targets [B, n_L] (``mse``).
        loss: ``mse`` or ``cross_entropy``.
        reduction: ``mean``, ``sum`` or ``sum_of_sample_means``.
    """
    batch = r_out.shape[0]
    if loss == "cross_entropy":
        g = torch.softmax(r_out, dim=1)
        g[torch.arange(batch, device=r_out.device), y] -= 1.0
    else:
        g = 2.0 * (r_out - y)
    if reduction == "mean":
        g = g / (batch if loss == "cross_entropy" else r_out.numel())
    elif reduction == "sum_of_sample_means" and loss != "cross_entropy":
        g = g / r_out.shape[1]
    return g


def output_target(
    r_out: torch.Tensor, y: torch.Tensor, loss: str, lam: float, reduction: str
) -> torch.Tensor:
    """``r_L* = r_L^- - lam dL/dr_L`` evaluated at the feedforward output ``r_out``.

    Args:
        r_out: feedforward output ``r_L^-`` [B, n_L].
        y: class labels [B] or regression targets [B, n_L].
        loss: ``mse`` or ``cross_entropy``.
        lam: target step size ``lambda`` (> 0).
        reduction: ``mean``, ``sum`` or ``sum_of_sample_means`` (see :func:`loss_gradient`).
    """
    return r_out - lam * loss_gradient(r_out, y, loss, reduction)
