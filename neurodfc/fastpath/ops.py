"""The few operations of the fused scheme that depend on whether it runs one network or an
ensemble of M members (a leading member dimension, :mod:`neurodfc.solvers.ensemble`).

A run's scalars (``alpha``, ``k_p``, ``tau_v / tau_u``, the noise levels) are Python floats, or
tensors ``[M, 1, 1]`` when the members of an ensemble differ in them; the products are ``mm``
for one network and ``bmm`` (one product per member) for an ensemble. One network keeps exactly
the operations it always had.
"""

from __future__ import annotations

import torch

Scalar = float | torch.Tensor
"""A run's scalar: shared (float) or one per member (tensor ``[M, 1, 1]``)."""


def mm_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    """``out = a @ b`` ([B, k] @ [k, n], or per member [M, B, k] @ [M, k, n]).

    Args:
        a: left factor.
        b: right factor.
        out: result buffer.
    """
    if a.dim() == 2:
        torch.mm(a, b, out=out)
    else:
        torch.bmm(a, b, out=out)


def addmm_into(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    """``out = bias + a @ b`` (``bias`` [n], or per member [M, 1, n]).

    Args:
        bias: added to every row.
        a: left factor.
        b: right factor.
        out: result buffer.
    """
    if a.dim() == 2:
        torch.addmm(bias, a, b, out=out)
    else:
        torch.baddbmm(bias, a, b, out=out)


def addmm_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` in place (per member for 3-d tensors).

    Args:
        acc: the running sum.
        a: left factor.
        b: right factor.
    """
    if a.dim() == 2:
        acc.addmm_(a, b)
    else:
        acc.baddbmm_(a, b)


def sub_scaled(a: torch.Tensor, x: torch.Tensor, s: Scalar, out: torch.Tensor) -> None:
    """``out = a - s x``.

    Args:
        a: minuend.
        x: the scaled tensor.
        s: the scalar.
        out: result buffer.
    """
    if isinstance(s, torch.Tensor):
        torch.addcmul(a, x, -s, out=out)
    else:
        torch.sub(a, x, alpha=s, out=out)


def add_scaled(
    a: torch.Tensor, x: torch.Tensor, s: Scalar, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``a + s x`` (into ``out`` when given).

    Args:
        a: first term.
        x: the scaled tensor.
        s: the scalar.
        out: result buffer (None: a new tensor).
    """
    if isinstance(s, torch.Tensor):
        return torch.addcmul(a, x, s, out=out) if out is not None else torch.addcmul(a, x, s)
    return torch.add(a, x, alpha=s, out=out) if out is not None else torch.add(a, x, alpha=s)


def add_scaled_(a: torch.Tensor, x: torch.Tensor, s: Scalar) -> None:
    """``a += s x`` in place.

    Args:
        a: the tensor updated.
        x: the scaled tensor.
        s: the scalar.
    """
    if isinstance(s, torch.Tensor):
        a.addcmul_(x, s)
    else:
        a.add_(x, alpha=s)


def any_positive(s: Scalar) -> bool:
    """Whether ``s`` (any member's) is positive.

    Args:
        s: the scalar.
    """
    return bool((s > 0).any()) if isinstance(s, torch.Tensor) else s > 0


def same(a: Scalar, b: Scalar) -> bool:
    """Whether two scalars are equal (for every member).

    Args:
        a: first scalar.
        b: second scalar.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return bool(torch.all(torch.as_tensor(a) == torch.as_tensor(b)))
    return a == b
