"""Eigenvalues computed on the CPU for any device (:mod:`neurodfc.core.linalg`): the same
values as LAPACK, checked against closed forms; on CUDA, the device result equals the CPU
result and stays on the device; gradients flow through the copy."""

from __future__ import annotations

import math

import pytest
import torch

from neurodfc.core.linalg import eigvals


def _sorted(ev: torch.Tensor) -> torch.Tensor:
    key = ev.real * 1e3 + ev.imag
    return ev.gather(-1, key.argsort(-1))


def test_eigvals_of_rotation_scalings_are_closed_form() -> None:
    # a r R(theta) has eigenvalues r exp(+-i theta); a batch of such blocks, conjugated
    g = torch.Generator().manual_seed(0)
    r = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    th = torch.rand(5, generator=g, dtype=torch.float64) * math.pi
    c, s = r * th.cos(), r * th.sin()
    blocks = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    T = torch.randn(5, 2, 2, generator=g, dtype=torch.float64) + 3 * torch.eye(2)
    A = T @ blocks @ torch.linalg.inv(T)
    got = _sorted(eigvals(A))
    want = _sorted(torch.stack([torch.polar(r, -th), torch.polar(r, th)], -1))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_eigvals_passes_gradients() -> None:
    A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).requires_grad_()
    eigvals(A).real.sum().backward()  # d trace / dA = I
    assert A.grad is not None
    torch.testing.assert_close(A.grad, torch.eye(3, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_eigvals_on_cuda_match_the_cpu_and_stay_there() -> None:
    g = torch.Generator().manual_seed(1)
    A = torch.randn(128, 60, 60, generator=g, dtype=torch.float64)
    got = eigvals(A.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(_sorted(got.cpu()), _sorted(torch.linalg.eigvals(A)))
