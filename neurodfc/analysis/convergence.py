"""Convergence of the simulated closed loop: status, settling time, decay rate of |e(t)| and
the distance of the simulated end state to the Lemma-1 steady state.

Per sample, from a recorded simulation (times ``t_k``, units of tau_u):

* the convergence criterion (the reference code's, :func:`neurodfc.solve.classify`) at t_k:
  ``|r_L(t_k) - (r_L* - alpha u_leak(t_k))| / |r_L^-| < convergence_threshold`` and
  ``|e(t_k)| < epsilon^2 |e(0)|`` (``u_leak = u`` for the reference leak, ``u_int = u - k_p e``
  for the paper's);
* ``settling_time``: the first recorded t_k from which the criterion holds at every later
  recorded time (NaN if it does not hold at the end);
* ``decay_rate``: ``-slope`` of the least-squares line through ``(t_k, log|e(t_k)|)`` over
  the last ``tail`` fraction of the recorded points (1/tau_u; > 0: decaying). With ``alpha > 0``
  the error settles at ``alpha u_ss``, so on long horizons the tail rate tends to 0; on the
  transient it estimates ``-max Re eig(A_PI)``;
* ``dist_lemma1_output``: ``|r_L(T) - r_L^ss| / |r_L^- - r_L^ss|`` with ``r_L^ss`` the Lemma-1
  output (the reference code's ``rel_dist_to_NDI``); ``dist_lemma1_u``:
  ``|u(T) - u_ss| / |u_ss|``;
* the recorded apical (feedback) voltages ``v_i^fb(t)`` of every layer (the reference code's
  ``va``): ``apical_norm`` ``|v_i^fb(t_k)|`` over time, ``apical_norm_final`` at T and
  ``dist_lemma1_apical`` ``|v_i^fb(T) - Q_i u_ss| / |Q_i u_ss|``, the distance to the Lemma-1
  apical voltage (the reference's dynamics plot "diff delta_v_ndi and va").
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis._common import finish, layer_coord, var
from neurodfc.analysis.stability import status_attrs
from neurodfc.components.controller import leak_residual
from neurodfc.config import SimulationConfig
from neurodfc.solve import simulate
from neurodfc.system import DFCSystem, lemma1


def tail_decay_rate(t: torch.Tensor, e_norm: torch.Tensor, tail: float) -> torch.Tensor:
    """Decay rate ``-slope`` of ``log e_norm`` against ``t``, by least squares.

    Args:
        t: time points [T] (units of tau_u).
        e_norm: control-error norms ``|e(t)|`` [T, B].
        tail: fraction (0, 1] of the last time points used (at least 2 points).

    Returns:
        [B] rates in 1/tau_u (> 0: decaying); NaN where a used point is zero or non-finite.

    Examples:
        >>> import torch
        >>> t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
        >>> rate = tail_decay_rate(t, torch.exp(-3.0 * t)[:, None], 1.0)
        >>> round(float(rate[0]), 9)
        3.0
    """
    T = t.shape[0]
    n = max(2, int(np.ceil(tail * T)))
    tt = t[T - n :].to(e_norm.dtype).to(e_norm.device)
    with torch.no_grad():
        logs = torch.log(e_norm[T - n :])
        logs = torch.where(torch.isfinite(logs), logs, torch.nan)
        tc = tt - tt.mean()
        slope = (tc.unsqueeze(1) * (logs - logs.mean(0))).sum(0) / (tc * tc).sum()
    return -slope


def convergence(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sim: SimulationConfig | None = None,
    tail: float = 0.5,
    generator: torch.Generator | None = None,
) -> xr.Dataset:
    """Per-sample convergence diagnostics of one simulation (see the module docstring).

    Args:
        system: the DFC system (controller and convergence thresholds from its config).
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L] (for the output target ``r_L*``).
        sim: simulation settings (default: the config's; ``record_every`` sets the time
            resolution of ``settling_time`` and of the decay fit).
        tail: fraction (0, 1] of the recorded points used for the decay-rate fit.
        generator: noise generator (only used with apical noise).

    Returns:
        Dataset with dims ``time`` and ``sample``: ``e_norm`` (time, sample), ``status``
        (sample, int8 codes), ``settling_time``, ``decay_rate``, ``final_ratio`` (the
        criterion's ratio at T), ``dist_lemma1_output``, ``dist_lemma1_u`` (sample),
        ``apical_norm`` (time, layer, sample), ``apical_norm_final`` and
        ``dist_lemma1_apical`` (layer, sample); ``layer`` = 1..L.
    """
    if not 0 < tail <= 1:
        raise ValueError(f"tail must lie in (0, 1], got {tail}")
    cfg = system.cfg
    sim = sim or cfg.simulation
    ctrl = cfg.controller
    with torch.no_grad():
        r_target = system.target(x, y)
        sol = simulate(
            system, x, r_target, sim=sim, record=True, generator=generator, record_apical=True
        )
        u_int = sol.u - ctrl.k_p * sol.e  # u = u_int + k_p e
        resid = leak_residual(r_target.unsqueeze(0), sol.u, u_int, ctrl.alpha, ctrl.leak)
        ff_norm = torch.linalg.vector_norm(sol.r_ff[-1], dim=1)
        ratio = torch.linalg.vector_norm(sol.r_out - resid, dim=2) / ff_norm  # [T, B]
        e_norm = sol.e_norm
        ok = (ratio < sim.convergence_threshold) & (e_norm < sim.epsilon**2 * e_norm[:1])
        # settled from k on: ok at every recorded time >= k (reverse cumulative AND)
        settled = torch.flip(torch.cummin(torch.flip(ok.to(torch.int8), [0]), 0).values, [0])
        first = torch.argmax(settled, dim=0)
        t = sol.t.to(x.dtype).to(x.device)
        settle = torch.where(settled[-1].bool(), t[first], torch.nan)
        rate = tail_decay_rate(sol.t, e_norm, tail)
        ss = lemma1(system, x, r_target)
        dist_out = torch.linalg.vector_norm(
            sol.r_final[-1] - ss.r[-1], dim=1
        ) / torch.linalg.vector_norm(sol.r_ff[-1] - ss.r[-1], dim=1)
        dist_u = torch.linalg.vector_norm(sol.u_final - ss.u, dim=1) / torch.linalg.vector_norm(
            ss.u, dim=1
        )
        apical = torch.stack([torch.linalg.vector_norm(a, dim=2) for a in sol.apical], 1)
        dist_ap = torch.stack(
            [
                torch.linalg.vector_norm(a[-1] - d, dim=1) / torch.linalg.vector_norm(d, dim=1)
                for a, d in zip(sol.apical, ss.dv, strict=True)
            ]
        )
    ds = xr.Dataset(
        {
            "e_norm": var(("time", "sample"), e_norm, "control error |e(t)|"),
            "status": var(
                ("sample",), sol.status.to(torch.int8), "per-sample status", **status_attrs()
            ),
            "settling_time": var(
                ("sample",), settle, "time from which the convergence criterion holds", "tau_u"
            ),
            "decay_rate": var(
                ("sample",), rate, "decay rate of |e(t)| (fit of log|e| over the tail)", "1/tau_u"
            ),
            "final_ratio": var(
                ("sample",), ratio[-1], "|r_L(T) - (r_L* - alpha u_leak(T))| / |r_L^-|"
            ),
            "dist_lemma1_output": var(
                ("sample",), dist_out, "|r_L(T) - r_L^ss| / |r_L^- - r_L^ss| (Lemma 1)"
            ),
            "dist_lemma1_u": var(("sample",), dist_u, "|u(T) - u_ss| / |u_ss| (Lemma 1)"),
            "apical_norm": var(
                ("time", "layer", "sample"), apical, "apical voltage |v_i^fb(t)| of layer i"
            ),
            "apical_norm_final": var(
                ("layer", "sample"), apical[-1], "apical voltage |v_i^fb(T)| of layer i"
            ),
            "dist_lemma1_apical": var(
                ("layer", "sample"), dist_ap, "|v_i^fb(T) - Q_i u_ss| / |Q_i u_ss| (Lemma 1)"
            ),
        },
        coords={
            "time": ("time", sol.t.cpu().numpy(), {"units": "tau_u"}),
            "layer": layer_coord(system.network.depth),
            "sample": np.arange(x.shape[0]),
        },
    )
    return finish(
        ds,
        system,
        "neurodfc.analysis.convergence",
        tail=float(tail),
        convergence_threshold=float(sim.convergence_threshold),
        epsilon=float(sim.epsilon),
    )
