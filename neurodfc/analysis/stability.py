"""Eigenvalues of the linearised closed loop (paper section 4, Fig. 3C and Fig. S1).

At a state ``v`` (the simulated final state, the Lemma-1 steady state or the feedforward
state) the closed loop around ``z = [dv; u]`` is linearised into ``A_I``, ``A~_I``,
``A_I_inst`` and ``A_PI`` (:func:`neurodfc.system.closed_loop_matrices`). The stability
measure is ``max Re eig(A_PI)`` per sample (< 0: locally stable); the reference code logs
its batch mean.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis._common import finish, var
from neurodfc.config import SimulationConfig
from neurodfc.solve import STATUS_NAMES, Status, simulate
from neurodfc.system import DFCSystem, closed_loop_matrices, lemma1

MATRICES = ("A_I", "A_tilde_I", "A_I_inst", "A_PI")
"""The linearised closed-loop matrices of :func:`stability` (coordinate ``matrix``)."""
State = Literal["simulated", "analytic", "feedforward"]


def status_attrs() -> dict[str, str]:
    """CF-style attributes decoding an int8 status variable."""
    return {
        "flag_values": " ".join(str(int(s)) for s in Status),
        "flag_meanings": " ".join(STATUS_NAMES),
    }


def state_voltages(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    at: State,
    *,
    sim: SimulationConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Voltages ``v_i`` [B, n_i] at the requested state and, for ``simulated``, the status.

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L] (for the output target ``r_L*``).
        at: ``simulated``, ``analytic`` or ``feedforward`` (as in :func:`stability`).
        sim: simulation settings for ``simulated`` (default: the config's).
        generator: noise generator of the simulation (only used with apical noise).

    Returns:
        ``(v, status)``: per-layer voltages and the per-sample status [B] (None unless
        ``at == "simulated"``).
    """
    net = system.network
    with torch.no_grad():
        if at == "feedforward":
            return net.feedforward(x)[0], None
        r_target = system.target(x, y)
        if at == "analytic":
            return lemma1(system, x, r_target).v, None
        if at == "simulated":
            sol = simulate(system, x, r_target, sim=sim, record=False, generator=generator)
            return sol.v_final, sol.status
    raise ValueError(f"at must be 'simulated', 'analytic' or 'feedforward', got {at!r}")


def sorted_eigenvalues(A: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of each matrix of ``A`` [B, n, n] as ``(real, imag)`` arrays [B, n], sorted
    by decreasing real part, then increasing imaginary part; real parts equal to 1e-9 of the
    spectral radius count as ties (so a conjugate pair sorts the same on every device)."""
    ev = torch.linalg.eigvals(A.detach().cpu()).numpy()
    re, im = ev.real, ev.imag
    scale = np.maximum(np.abs(ev).max(axis=-1, keepdims=True), np.finfo(float).tiny)
    order = np.lexsort((im, -np.round(re / scale, 9)), axis=-1)
    return np.take_along_axis(re, order, -1), np.take_along_axis(im, order, -1)


def stability(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    at: State = "simulated",
    full_spectrum: bool | None = None,
    max_full_size: int = 64,
    sim: SimulationConfig | None = None,
    generator: torch.Generator | None = None,
) -> xr.Dataset:
    """Eigenvalues of ``A_I``, ``A~_I``, ``A_I_inst``, ``A_PI`` per sample and the stability
    measure ``max Re eig(A_PI)``.

    Args:
        system: the DFC system (controller ``alpha``, ``k_p``, ``tau_ratio`` from its config).
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L] (for the output target ``r_L*``).
        at: ``simulated`` (final state of :func:`neurodfc.solve.simulate`, the reference's
            "bcn" eigenvalues), ``analytic`` (Lemma-1 steady state) or ``feedforward``.
        full_spectrum: keep every eigenvalue; default: when ``N + n_L <= max_full_size``.
        max_full_size: size threshold of the default.
        sim: simulation settings for ``at="simulated"`` (default: the config's).
        generator: noise generator of the simulation (only used with apical noise).

    Returns:
        Dataset with dims ``matrix`` (A_I, A_tilde_I, A_I_inst, A_PI), ``sample`` and, with the
        full spectrum, ``eig`` (N + n_L; ``A_I_inst`` has n_L eigenvalues, padded with NaN):
        ``max_re_eig`` (matrix, sample), ``stability_measure`` (sample) = ``max Re eig(A_PI)``,
        ``eig_real``/``eig_imag`` (matrix, sample, eig; sorted by decreasing real part) and,
        for ``at="simulated"``, ``status`` (sample; int8 codes, see ``flag_meanings``).
        Units: 1/tau_u.
    """
    net = system.network
    v, status = state_voltages(system, x, y, at, sim=sim, generator=generator)
    with torch.no_grad():
        A = closed_loop_matrices(system, v)
    B = x.shape[0]
    size = sum(net.sizes[1:]) + net.n_out
    keep_full = size <= max_full_size if full_spectrum is None else full_spectrum
    max_re = np.empty((len(MATRICES), B))
    eig_re = np.full((len(MATRICES), B, size), np.nan)
    eig_im = np.full((len(MATRICES), B, size), np.nan)
    for k, name in enumerate(MATRICES):
        re, im = sorted_eigenvalues(A[name])
        max_re[k] = re.max(axis=1)
        if keep_full:
            eig_re[k, :, : re.shape[1]] = re
            eig_im[k, :, : im.shape[1]] = im
    data = {
        "max_re_eig": var(
            ("matrix", "sample"), max_re, "largest real part of the eigenvalues", "1/tau_u"
        ),
        "stability_measure": var(
            ("sample",), max_re[MATRICES.index("A_PI")], "max Re eig(A_PI)", "1/tau_u"
        ),
    }
    if keep_full:
        data["eig_real"] = var(
            ("matrix", "sample", "eig"), eig_re, "real part of the eigenvalues", "1/tau_u"
        )
        data["eig_imag"] = var(
            ("matrix", "sample", "eig"), eig_im, "imaginary part of the eigenvalues", "1/tau_u"
        )
    if status is not None:
        data["status"] = var(
            ("sample",),
            status.to(torch.int8),
            "per-sample status of the simulation",
            **status_attrs(),
        )
    coords: dict[str, object] = {
        "matrix": np.array(MATRICES, dtype=object),
        "sample": np.arange(B),
    }
    if keep_full:
        coords["eig"] = np.arange(size)
    ds = xr.Dataset(data, coords=coords)
    return finish(ds, system, "neurodfc.analysis.stability", at=at, full_spectrum=keep_full)
