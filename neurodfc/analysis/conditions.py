"""Conditions 1-3 of the paper and the alignment of the feedback weights Q with J.

Per sample b (all at the feedforward state unless named otherwise):

* Condition 1 (paper): the presynaptic rates of every layer have the same norm,
  measured by ``std_k |r_k| / mean_k |r_k|`` over k = 0..L-1 (``r_0`` the input; population
  std, 1/L). 0 iff Condition 1 holds. The reference code's ``dev_r`` divides inside the square
  root, ``sqrt(mean_k (|r_k| - m)^2 / m)`` with ``m = mean_k |r_k|``: stored as
  ``condition1_dev_r`` (it is what the paper's Fig. 3 plots).
* Condition 2: ``|P Q|_F / |Q|_F`` with ``P = J^T (J J^T)^-1 J``; 1 iff col(Q) lies in row(J).
* Condition 3: all eigenvalues of ``J Q`` have real part > ``-alpha_eff``; the margin
  ``min Re eig(J Q) + alpha_eff`` (> 0 iff it holds) is reported at the Lemma-1 steady state
  and at the feedforward state.
* Feedback alignment: ``angle(Q, J^T)`` and ``angle(Q, J^T (J J^T + gamma I)^-1)`` per gamma
  (``gamma = 0``: the pseudo-inverse ``J^+``), per sample; the reference code logs their batch
  means (``Dataset.mean("sample")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis._common import DEGREE, batched_angle, finish, var
from neurodfc.core.linalg import eigvals
from neurodfc.system import DFCSystem, condition2, jacobian, lemma1


def condition1(r: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition-1 measures per sample (see the module docstring).

    Args:
        r: the presynaptic rates ``[r_0, ..., r_{L-1}]``, each [B, n_k] (``r_0`` the input).

    Returns:
        ``(paper, reference)`` = ``(std/mean, sqrt(var/mean))`` of the norms ``|r_k|`` over
        the layers, both [B]; 0 iff Condition 1 holds.

    Examples:
        >>> import torch
        >>> r0 = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # norms 5 and 1
        >>> r1 = torch.tensor([[5.0, 0.0], [3.0, 0.0]])  # norms 5 and 3
        >>> condition1([r0, r1])
        (tensor([0.0000, 0.5000]), tensor([0.0000, 0.7071]))
    """
    norms = torch.stack([torch.linalg.vector_norm(t, dim=1) for t in r], dim=1)  # [B, L]
    mean = norms.mean(1)
    var_ = ((norms - mean.unsqueeze(1)) ** 2).mean(1)
    return var_.sqrt() / mean, (var_ / mean).sqrt()


def damped_pinv(J: torch.Tensor, gamma: float) -> torch.Tensor:
    """The damped pseudo-inverse ``J^T (J J^T + gamma I)^-1``.

    Args:
        J: output Jacobians [B, n_L, N].
        gamma: damping >= 0; ``gamma = 0`` gives the Moore-Penrose pseudo-inverse ``J^+``
            (computed by SVD, as the reference code).

    Returns:
        [B, N, n_L].
    """
    if gamma == 0:
        return torch.linalg.pinv(J)
    eye = torch.eye(J.shape[1], dtype=J.dtype, device=J.device)
    # X (J J^T + g I) = J^T  <=>  (J J^T + g I) X^T = J   (J J^T + g I is symmetric)
    return torch.linalg.solve(J @ J.transpose(1, 2) + gamma * eye, J).transpose(1, 2)


def condition3_margin(J: torch.Tensor, Q: torch.Tensor, alpha: float) -> torch.Tensor:
    """The Condition-3 margin ``min Re eig(J Q) + alpha`` per sample.

    Args:
        J: output Jacobians [B, n_L, N].
        Q: feedback weights ``Q = [Q_1; ...; Q_L]`` [N, n_L].
        alpha: the controller's effective leak ``alpha_eff``.

    Returns:
        [B]; > 0 iff Condition 3 holds.

    Examples:
        >>> import torch
        >>> condition3_margin(torch.eye(2)[None], -0.5 * torch.eye(2), 1.0)
        tensor([0.5000])
    """
    return eigvals(J @ Q).real.min(dim=-1).values + alpha


def conditions(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    gammas: Sequence[float] = (0.0, 0.1, 1.0),
) -> xr.Dataset:
    """Conditions 1-3 and the feedback alignment of a minibatch (see the module docstring).

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L] (for the target ``r_L*`` of the
            Lemma-1 steady state used by Condition 3).
        gammas: dampings (>= 0) of ``angle(Q, J^T (J J^T + gamma I)^-1)``.

    Returns:
        Dataset with dims ``sample``, ``layer_input`` (k = 0..L-1) and ``gamma``; variables
        ``r_norm`` (sample, layer_input), ``condition1``, ``condition1_dev_r``,
        ``condition2``, ``condition3_ss``, ``condition3_ff``, ``angle_Q_JT`` (sample) and
        ``angle_Q_pinv`` (gamma, sample).
    """
    if any(g < 0 for g in gammas):
        raise ValueError(f"every gamma must be >= 0, got {list(gammas)}")
    net = system.network
    alpha = system.cfg.controller.alpha_eff
    with torch.no_grad():
        v, r = net.feedforward(x)
        presyn = [x, *r[:-1]]
        c1, c1_ref = condition1(presyn)
        J = jacobian(net, v)
        Q = net.full_Q().detach()
        c2 = condition2(J, Q)
        ss = lemma1(system, x, system.target(x, y))
        c3_ss = condition3_margin(jacobian(net, ss.v), Q, alpha)
        c3_ff = condition3_margin(J, Q, alpha)
        B = x.shape[0]
        Qb = Q.expand(B, *Q.shape)
        a_t = batched_angle(Qb, J.transpose(1, 2))
        a_p = torch.stack(
            [batched_angle(Qb, damped_pinv(J, float(g))) for g in gammas]
            or [torch.empty(0, B, dtype=J.dtype)]
        ).reshape(len(gammas), B)
        norms = torch.stack([torch.linalg.vector_norm(t, dim=1) for t in presyn], dim=1)
    ds = xr.Dataset(
        {
            "r_norm": var(("sample", "layer_input"), norms, "norm |r_k| of the input of layer k+1"),
            "condition1": var(
                ("sample",),
                c1,
                "Condition-1 measure std_k |r_k| / mean_k |r_k| (paper)",
                definition="paper",
            ),
            "condition1_dev_r": var(
                ("sample",),
                c1_ref,
                "Condition-1 measure sqrt(var_k |r_k| / mean_k |r_k|) (reference dev_r)",
                definition="reference code",
            ),
            "condition2": var(("sample",), c2, "Condition-2 measure |P Q|_F / |Q|_F"),
            "condition3_ss": var(
                ("sample",),
                c3_ss,
                "Condition-3 margin min Re eig(J Q) + alpha at the Lemma-1 steady state",
            ),
            "condition3_ff": var(
                ("sample",),
                c3_ff,
                "Condition-3 margin min Re eig(J Q) + alpha at the feedforward state",
            ),
            "angle_Q_JT": var(("sample",), a_t, "angle(Q, J^T)", DEGREE),
            "angle_Q_pinv": var(
                ("gamma", "sample"), a_p, "angle(Q, J^T (J J^T + gamma I)^-1)", DEGREE
            ),
        },
        coords={
            "sample": np.arange(B),
            "layer_input": np.arange(net.depth),
            "gamma": np.asarray([float(g) for g in gammas], dtype=np.float64),
        },
    )
    return finish(ds, system, "neurodfc.analysis.conditions", alpha_eff=float(alpha))
