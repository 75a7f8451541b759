"""Glue from a config to data and a dynamics study (what ``neurodfc simulate`` runs)."""

from __future__ import annotations

from typing import Any

import torch
import xarray as xr

from neurodfc.config import ExperimentConfig
from neurodfc.data import DataSplits, Split, load_dataset
from neurodfc.network import DTYPES
from neurodfc.preflight import check_data, preflight
from neurodfc.results import solution_to_xarray
from neurodfc.solve import simulate
from neurodfc.system import DFCSystem, lemma1

GENERATED_DATASETS = ("teacher_student", "random")
"""Data sets drawn from ``data.teacher_seed`` rather than read from files."""


def data_seed(cfg: ExperimentConfig) -> int:
    """The seed :func:`load_data` draws with: ``data.teacher_seed`` for the generated data sets
    (the whole data set), the run's ``seed`` for the file data sets (their validation split).

    Runs whose data configs agree and whose ``data_seed`` agrees get the same data (an ensemble
    of seeds on the teacher-student task loads it once).

    Examples:
        >>> from neurodfc.config import config_from_dict
        >>> cfg = config_from_dict({"seed": 7, "network": {"sizes": [15, 10, 1]},
        ...     "data": {"dataset": "teacher_student", "teacher_seed": 3}})
        >>> data_seed(cfg)
        3
    """
    return cfg.data.teacher_seed if cfg.data.dataset in GENERATED_DATASETS else cfg.seed


def load_data(cfg: ExperimentConfig) -> DataSplits:
    """The train/val/test splits that ``cfg.data`` describes, in ``cfg.dtype`` on ``cfg.device``.

    The network's input and output sizes must match the data (checked here, before compute).

    Args:
        cfg: the experiment config (its ``data``, ``network.sizes``, ``loss``, ``seed``,
            ``dtype`` and ``device``).

    Raises:
        neurodfc.preflight.PreflightError: when the network's sizes or the loss do not fit the
            data set (checked before anything is read).
        neurodfc.data.DatasetError: when a data file is missing or fails its checksum.

    Examples:
        >>> from neurodfc.config import config_from_dict
        >>> cfg = config_from_dict({
        ...     "network": {"sizes": [15, 10, 1]},
        ...     "data": {"dataset": "teacher_student", "n_train": 100, "n_val": 20, "n_test": 30},
        ... })
        >>> splits = load_data(cfg)
        >>> splits.task, tuple(splits.train.x.shape), tuple(splits.test.y.shape)
        ('regression', (100, 15), (30, 1))
    """
    check_data(cfg)
    d = cfg.data
    dtype = DTYPES[cfg.dtype]
    n_in, n_out = cfg.network.sizes[0], cfg.network.sizes[-1]
    if d.dataset in GENERATED_DATASETS:
        kwargs: dict[str, Any] = {
            "n_in": n_in,
            "n_out": n_out,
            "n_train": d.n_train,
            "n_test": d.n_test,
        }
        if d.dataset == "random":
            g = torch.Generator().manual_seed(data_seed(cfg))
            n = d.n_train + d.n_val + d.n_test
            x = (torch.rand(n, n_in, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
            y = torch.randn(n, n_out, generator=g, dtype=torch.float64).to(dtype)
            x, y = x.to(cfg.device), y.to(cfg.device)
            a, b = d.n_train, d.n_train + d.n_val
            return DataSplits(
                train=Split(x[:a], y[:a]),
                val=Split(x[a:b], y[a:b]),
                test=Split(x[b:], y[b:]),
                task="regression",
                n_in=n_in,
                n_out=n_out,
                name="random",
            )
        splits = load_dataset(
            "teacher_student",
            seed=data_seed(cfg),
            val_size=d.n_val,
            dtype=dtype,
            device=cfg.device,
            max_train_samples=d.max_train_samples,
            max_test_samples=d.max_test_samples,
            **kwargs,
        )
    else:
        assert d.dataset in ("mnist", "fashion_mnist", "mnist_autoencoder")
        splits = load_dataset(
            d.dataset,
            data_dir=d.data_dir,
            seed=data_seed(cfg),
            val_size=d.val_size,
            max_train_samples=d.max_train_samples,
            max_test_samples=d.max_test_samples,
            dtype=dtype,
            device=cfg.device,
        )
    if (splits.n_in, splits.n_out) != (n_in, n_out):  # pragma: no cover (check_data's job)
        raise AssertionError(f"data set {d.dataset!r} has sizes ({splits.n_in}, {splits.n_out})")
    return splits


def simulate_experiment(
    cfg: ExperimentConfig,
    samples: int = 3,
    system: DFCSystem | None = None,
    record_v: bool = True,
) -> xr.Dataset:
    """Simulate the closed loop on the first training samples of ``cfg``'s data.

    Args:
        cfg: the experiment config (network, controller, simulation and data).
        samples: number of training samples simulated (>= 1, at most the training samples).
        system: the system to simulate (default: ``DFCSystem.from_config(cfg)``, i.e. the
            seeded initial weights).
        record_v: record every layer's voltages ``v_i(t)`` (variables ``v_l{i}``).

    Returns:
        The Dataset of :func:`neurodfc.results.solution_to_xarray`, with the Lemma-1
        prediction ``u_ss_lemma1``, the labels and the config in its attributes (what
        ``neurodfc simulate`` writes).

    Raises:
        neurodfc.preflight.PreflightError: the config cannot run here (device, data, memory,
            ``samples``), before anything is computed.
    """
    preflight(cfg, "simulate", samples=samples)
    splits = load_data(cfg)
    system = system or DFCSystem.from_config(cfg)
    x, y = splits.train.x[:samples], splits.train.y[:samples]
    r_target = system.target(x, y)
    gen = torch.Generator().manual_seed(cfg.seed)
    sol = simulate(system, x, r_target, record_v=record_v, generator=gen)
    ss = lemma1(system, x, r_target)
    return solution_to_xarray(sol, system, ss, labels=y)
