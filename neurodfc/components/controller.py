"""The PI controller (paper eq. 3-4): ``u = u_int + k_p e``, ``e = r_L* - r_L``.

Two leak conventions (``ControllerConfig.leak``):

* ``reference`` (official code): ``tau_u du_int/dt = e - alpha u``
* ``paper``: ``tau_u du_int/dt = e - alpha u_int``

Time is in units of ``tau_u``.
"""

from __future__ import annotations

import torch


def control_signal(u_int: torch.Tensor, e: torch.Tensor, k_p: float) -> torch.Tensor:
    """``u = u_int + k_p e`` ([B, n_L])."""
    return u_int + k_p * e if k_p != 0.0 else u_int


def integral_rate(
    e: torch.Tensor, u: torch.Tensor, u_int: torch.Tensor, alpha: float, leak: str
) -> torch.Tensor:
    """``du_int/dt`` ([B, n_L]) in units of 1/tau_u for the chosen leak convention."""
    if leak == "paper":
        return e - alpha * u_int
    return e - alpha * u


def leak_residual(
    r_target: torch.Tensor, u: torch.Tensor, u_int: torch.Tensor, alpha: float, leak: str
) -> torch.Tensor:
    """The output the controller settles on: ``r_L* - alpha u`` (reference) or
    ``r_L* - alpha u_int`` (paper); used by the convergence criterion."""
    return r_target - alpha * (u_int if leak == "paper" else u)
