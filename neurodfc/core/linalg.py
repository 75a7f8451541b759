"""Small dense linear algebra that chooses where it runs."""

from __future__ import annotations

import torch


def eigvals(A: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of each square matrix of ``A`` [..., n, n] -> [..., n] (complex), computed
    by LAPACK on the CPU whatever ``A``'s device, and returned on ``A``'s device.

    The general (non-symmetric) eigenproblem has no batched GPU kernel: on CUDA,
    ``torch.linalg.eigvals`` runs cuSOLVER's ``geev`` matrix by matrix, each a few thousand
    tiny kernel launches. For the linear-response solver's 128 reduced systems of size 60 that
    was 94 % of an update on an H200 (0.9 s; ``benchmarks/profile_linear_response.py``), while
    LAPACK does the same batch in about 40 ms on one CPU core. The matrices here are small
    (a few dozen rows), so the copies cost less than a launch.

    Args:
        A: square matrices, any device and floating dtype.

    Examples:
        >>> import torch
        >>> eigvals(torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64))
        tensor([0.+1.j, 0.-1.j], dtype=torch.complex128)
    """
    if A.device.type == "cpu":
        return torch.linalg.eigvals(A)
    return torch.linalg.eigvals(A.cpu()).to(A.device)
