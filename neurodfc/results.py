"""Labelled results: simulations as ``xarray.Dataset`` and atomic netCDF writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from neurodfc.runs.files import NETCDF_LOCK, atomic_write
from neurodfc.solve import STATUS_NAMES, Solution
from neurodfc.solvers.linear_response import EXTRAS as LINEAR_RESPONSE_EXTRAS
from neurodfc.system import DFCSystem, SteadyState


def _np(t: object) -> np.ndarray:
    import torch

    assert isinstance(t, torch.Tensor)
    return t.detach().cpu().numpy()


def solution_to_xarray(
    sol: Solution,
    system: DFCSystem,
    steady_state: SteadyState | None = None,
    labels: object | None = None,
) -> xr.Dataset:
    """A simulation as a labelled Dataset.

    Args:
        sol: the simulation (:func:`neurodfc.solve.simulate`).
        system: the simulated system (its config is stored in the attributes).
        steady_state: the Lemma-1 steady state of the same batch
            (:func:`neurodfc.system.lemma1`), stored as ``u_ss_lemma1``.
        labels: the batch's labels [B] or regression targets [B, n_L], stored as ``label``.

    Returns:
        A Dataset with dims ``time`` (coordinate in units of tau_u), ``sample``, ``output``
        and ``unit_l{i}`` per layer. Variables: ``r_L`` (time, sample, output),
        ``r_L_target``, ``r_L_ff``, ``u_final`` (sample, output), ``u``, ``e`` (time, sample,
        output), ``e_norm`` (time, sample), ``v_l{i}`` (time, sample, unit_l{i}) when
        recorded, ``v_final_l{i}`` (sample, unit_l{i}), ``status`` (sample; converged |
        diverged | max_steps | nonfinite), the solver's per-sample diagnostics
        (``Solution.extras`` of shape [B], e.g. the linear-response solver's ``lr_path``,
        ``lr_reason``, ``lr_estimate``, ``lr_estimate_final``, ``lr_transient``, with the
        attributes of :data:`neurodfc.solvers.linear_response.EXTRAS`) and, with
        ``steady_state``, ``u_ss_lemma1`` (sample, output). The resolved config is stored as
        JSON in ``attrs["config"]`` (read it back with :func:`config_of`), with ``steps_run``,
        ``function_evaluations`` and ``solver``.

    Examples:
        >>> import torch
        >>> from neurodfc.config import config_from_dict
        >>> from neurodfc.solve import simulate
        >>> from neurodfc.system import DFCSystem, lemma1
        >>> cfg = config_from_dict({
        ...     "network": {"sizes": [4, 3, 2]},
        ...     "simulation": {"solver": "euler_reference", "steps": 50, "record_every": 10},
        ... })
        >>> system = DFCSystem.from_config(cfg)
        >>> x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)
        >>> r_target = system.target(x, torch.zeros(3, 2, dtype=torch.float64))
        >>> sol = simulate(system, x, r_target)
        >>> ds = solution_to_xarray(sol, system, lemma1(system, x, r_target))
        >>> dict(ds.sizes)
        {'time': 6, 'sample': 3, 'output': 2, 'unit_l1': 3, 'unit_l2': 2}
        >>> ds.r_L.dims, ds.attrs["solver"]
        (('time', 'sample', 'output'), 'euler_reference')
        >>> config_of(ds)["network"]["sizes"]
        [4, 3, 2]
    """
    tdims = ("time", "sample", "output")
    data: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] = {
        "r_L": (tdims, _np(sol.r_out), {"long_name": "output rate r_L(t)"}),
        "u": (tdims, _np(sol.u), {"long_name": "control signal u(t) = u_int + k_p e"}),
        "e": (tdims, _np(sol.e), {"long_name": "control error e(t) = r_L* - r_L(t)"}),
        "e_norm": (("time", "sample"), _np(sol.e_norm), {"long_name": "|e(t)|"}),
        "r_L_target": (("sample", "output"), _np(sol.r_target), {"long_name": "target r_L*"}),
        "r_L_ff": (("sample", "output"), _np(sol.r_ff[-1]), {"long_name": "feedforward r_L^-"}),
        "u_final": (("sample", "output"), _np(sol.u_final), {"long_name": "u at t_max"}),
    }
    for i, v in enumerate(sol.v, start=1):
        data[f"v_l{i}"] = (
            ("time", "sample", f"unit_l{i}"),
            _np(v),
            {"long_name": f"voltage v_{i}(t) of layer {i}"},
        )
    for i, v in enumerate(sol.v_final, start=1):
        data[f"v_final_l{i}"] = (
            ("sample", f"unit_l{i}"),
            _np(v),
            {"long_name": f"voltage v_{i} at t_max"},
        )
    if steady_state is not None:
        data["u_ss_lemma1"] = (
            ("sample", "output"),
            _np(steady_state.u),
            {"long_name": "Lemma-1 steady state u_ss = (J Q + alpha_eff I)^-1 delta_L"},
        )
    n_samples = sol.r_target.shape[0]
    for name, value in sol.extras.items():  # per-sample solver diagnostics (linear_response)
        arr = _np(value)
        if arr.ndim == 1 and arr.shape[0] == n_samples:
            data[name] = (("sample",), arr, dict(LINEAR_RESPONSE_EXTRAS.get(name, {})))
    status = np.array(sol.status_names(), dtype=object)
    data["status"] = (
        ("sample",),
        status,
        {"long_name": "per-sample status", "values": " | ".join(STATUS_NAMES)},
    )
    ds = xr.Dataset(
        {k: xr.Variable(dims, arr, attrs) for k, (dims, arr, attrs) in data.items()},
        coords={
            "time": ("time", _np(sol.t), {"units": "tau_u"}),
            "sample": np.arange(sol.r_target.shape[0]),
        },
    )
    if labels is not None:
        ds["label"] = (("sample",) + (("output",) if _np(labels).ndim == 2 else ()), _np(labels))
    ds.attrs["config"] = system.cfg.model_dump_json()
    ds.attrs["steps_run"] = sol.steps_run
    ds.attrs["function_evaluations"] = sol.nfe
    ds.attrs["solver"] = system.cfg.simulation.solver
    ds.attrs["created_by"] = "neurodfc.simulate"
    return ds


def config_of(ds: xr.Dataset) -> dict[str, object]:
    """The config dict stored in the attributes of a result ``ds`` (see
    :func:`solution_to_xarray`); ``ExperimentConfig.model_validate`` turns it back into a
    config."""
    out: dict[str, object] = json.loads(ds.attrs["config"])
    return out


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to the netCDF file ``path`` atomically.

    The Dataset is written to a temporary file in the same folder (created if missing),
    flushed to disk and renamed over ``path`` (:func:`neurodfc.runs.files.atomic_write`), so a
    reader never sees a partial file and a failed write leaves a previous file intact.

    Args:
        ds: the Dataset.
        path: the target file.

    Returns:
        ``path`` as a ``Path``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with NETCDF_LOCK:
            ds.to_netcdf(tmp)

    return atomic_write(p, write)
