"""Fig. 2: where random feedback Q satisfying Conditions 2 and 3 lies relative to J^T, J^+ and
the damped pseudo-inverses J^T (J J^T + gamma I)^-1.

A 5-2-2 tanh network (xavier-normal, seed 42) and one random input x ~ N(0, I) give the
Jacobian J (2 x 4, output w.r.t. all voltages). Random ``Q = J^T M`` (M ~ N(0, 1), 2 x 2) are
kept when every eigenvalue of ``J Q`` has a positive real part (Condition 3 with alpha = 0;
Condition 2 holds by construction); 2000 of them, 100 damped pseudo-inverses for gamma in
logspace(-5, 2), ``J^+`` and ``J^T`` are Frobenius-normalised, flattened, and projected on the
first two principal components of all of them together (PCA by ``torch.linalg.svd`` of the
centred data). ``--quick``: 200 Q and 20 gammas.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import xarray as xr
from _common import outputs, parser, say

from neurodfc.analysis import damped_pinv
from neurodfc.config import config_from_dict
from neurodfc.figures import plot_fig2
from neurodfc.results import write_netcdf
from neurodfc.system import DFCSystem, condition2, jacobian


def admissible_q(J: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """``n`` random ``Q = J^T M`` [n, N, n_L] with ``Re eig(J Q) > 0``, drawn in batches;
    also the fraction of draws that were admissible."""
    kept: list[torch.Tensor] = []
    drawn = 0
    n_out = J.shape[0]
    while sum(k.shape[0] for k in kept) < n:
        M = torch.randn(4 * n, n_out, n_out, generator=gen, dtype=J.dtype)
        Q = J.T.unsqueeze(0) @ M
        ok = (torch.linalg.eigvals(J.unsqueeze(0) @ Q).real > 0).all(dim=1)
        kept.append(Q[ok])
        drawn += M.shape[0]
    return torch.cat(kept)[:n], sum(k.shape[0] for k in kept) / drawn


def unit(t: torch.Tensor) -> torch.Tensor:
    """Each row [K, ...] flattened and scaled to unit Frobenius norm -> [K, numel]."""
    flat = t.reshape(t.shape[0], -1)
    return flat / torch.linalg.vector_norm(flat, dim=1, keepdim=True)


def main(argv: list[str] | None = None) -> int:
    """Write ``fig2.nc`` / ``fig2.png`` into ``--out``."""
    args = parser("fig2", __doc__ or "").parse_args(argv)
    n_q, n_gamma = (200, 20) if args.quick else (2000, 100)
    cfg = config_from_dict(
        {
            "seed": 42,
            "network": {"sizes": [5, 2, 2], "hidden_activation": "tanh", "init": "xavier_normal"},
            "feedback": {"init": "xavier_normal"},
        }
    )
    net = DFCSystem.from_config(cfg).network
    gen = torch.Generator().manual_seed(42)
    x = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        v, _ = net.feedforward(x)
        J = jacobian(net, v)[0]  # [2, 4]
        Q, rate = admissible_q(J, n_q, gen)
        gammas = torch.logspace(-5, 2, n_gamma, dtype=torch.float64)
        Jb = J.unsqueeze(0)
        damped = torch.cat([damped_pinv(Jb, float(g)) for g in gammas])
        pinv = torch.linalg.pinv(Jb)
        JT = J.T.unsqueeze(0)
        rows = [unit(Q), unit(damped), unit(pinv), unit(JT)]
        data = torch.cat(rows)
        mean = data.mean(0)
        _, s, vh = torch.linalg.svd(data - mean, full_matrices=False)
        comps = vh[:2]
        proj = [(r - mean) @ comps.T for r in rows]
        c2 = torch.stack([condition2(Jb, q)[0] for q in Q[: min(50, Q.shape[0])]])
        min_eig = torch.linalg.eigvals(Jb @ Q).real.min(dim=1).values
    ds = xr.Dataset(
        {
            "Q": (("q", "entry"), unit(Q).numpy(), {"long_name": "normalised random Q = J^T M"}),
            "Q_pc": (("q", "pc"), proj[0].numpy(), {"long_name": "Q in PC space"}),
            "min_re_eig_JQ": (("q",), min_eig.numpy(), {"long_name": "min Re eig(J Q) (> 0)"}),
            "damped_pinv": (
                ("gamma", "entry"),
                unit(damped).numpy(),
                {"long_name": "normalised J^T (J J^T + gamma I)^-1"},
            ),
            "damped_pinv_pc": (("gamma", "pc"), proj[1].numpy(), {"long_name": "in PC space"}),
            "pinv": (("entry",), unit(pinv)[0].numpy(), {"long_name": "normalised J^+"}),
            "pinv_pc": (("pc",), proj[2][0].numpy(), {"long_name": "J^+ in PC space"}),
            "JT": (("entry",), unit(JT)[0].numpy(), {"long_name": "normalised J^T"}),
            "JT_pc": (("pc",), proj[3][0].numpy(), {"long_name": "J^T in PC space"}),
            "explained_variance_ratio": (
                ("pc",),
                (s[:2] ** 2 / (s**2).sum()).numpy(),
                {"long_name": "fraction of the variance per principal component"},
            ),
            "J": (("output", "unit"), J.numpy(), {"long_name": "Jacobian d r_L / d v"}),
            "condition2_first_Q": (
                ("q_checked",),
                c2.numpy(),
                {"long_name": "Condition-2 measure of the first Qs (1 by construction)"},
            ),
        },
        coords={"gamma": gammas.numpy(), "pc": [1, 2], "q": np.arange(Q.shape[0])},
        attrs={
            "config": cfg.model_dump_json(),
            "created_by": "analyses/fig2.py",
            "acceptance_rate": rate,
        },
    )
    nc, png = outputs(args.out, "fig2")
    write_netcdf(ds, nc)
    plot_fig2(ds, png)
    say(
        f"fig2: {Q.shape[0]} admissible Q (acceptance {rate:.2f}); explained variance "
        f"{ds['explained_variance_ratio'].values.round(3)}; wrote {nc} and {png}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
