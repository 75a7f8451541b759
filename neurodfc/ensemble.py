"""Ensembles: many trainings run as one batched system (``train_ensemble``).

Each member is an ordinary run: its own config (seed, learning rates, ``k_p``, ``alpha``,
``lambda``, noise ...), its own run folder with ``config.toml``, ``metrics.nc`` and
``checkpoint.pt``, its own data order, optimiser states, per-sample statuses, faults and
analysis logging. The members train side by side, each in its own thread, and meet at every
simulation (:class:`~neurodfc.solvers.batcher.SimulationBatcher`): the simulations that can
share a run of the fused reference scheme are stacked along a member dimension and simulated
as one system (:mod:`neurodfc.solvers.ensemble`), the rest are solved one by one. A member
therefore equals the same run trained alone (``tests/integration/test_ensemble.py``), and the
outputs do not show how it ran.

The members meet at every simulation: the whole ensemble advances at the pace of its slowest
simulation each round, so members with the same schedule (the same method and feedback
learning) make the best ensembles; members that do not simulate while they train (DFC-SSA with
fixed feedback, BP, DFA) are trained first, one after another (they have nothing to share, and
as threads beside the ensemble their Python work would hold up its simulations, which need
the interpreter lock between their many small operations).

Members batch when they share the layer sizes and activations, the batch size,
the simulation's ``dt``, ``steps`` and flags (what :func:`neurodfc.solvers.ensemble.batch_key`
compares); the scalars and seeds may differ. See ``docs/ensembles.md``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neurodfc.config import ExperimentConfig, load_config
from neurodfc.data import DataSplits
from neurodfc.experiment import data_seed, load_data
from neurodfc.methods import get_method
from neurodfc.runs.folder import CHECKPOINT
from neurodfc.solvers.batcher import EnsembleAborted, SimulationBatcher
from neurodfc.trainer import RunResult
from neurodfc.training import train

__all__ = ["EnsembleAborted", "EnsembleResult", "member_folders", "train_ensemble"]


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` returns: per member its folder and result, or the error
    that stopped it (the other members are unaffected)."""

    paths: list[Path]
    """Each member's run folder."""
    runs: list[RunResult | None]
    """Each member's result (None: the member stopped with an error)."""
    errors: list[BaseException | None] = field(default_factory=list)
    """Each member's error (None: finished)."""
    rounds: int = 0
    """How many times the members' simulations were solved together."""

    @property
    def ok(self) -> bool:
        """Whether every member finished."""
        return all(e is None for e in self.errors)


def member_folders(out: str | Path, members: int) -> list[Path]:
    """The default run folders of an ensemble written under one folder: ``out/member_000``...

    Args:
        out: the ensemble's folder.
        members: the number of members.
    """
    return [Path(out) / f"member_{k:03d}" for k in range(members)]


def _data_key(cfg: ExperimentConfig) -> str:
    """What :func:`neurodfc.experiment.load_data` reads: members that agree share the data."""
    return json.dumps(
        [
            cfg.data.model_dump(mode="json"),
            cfg.network.sizes[0],
            cfg.network.sizes[-1],
            cfg.loss.loss,
            data_seed(cfg),
            cfg.dtype,
            cfg.device,
        ],
        sort_keys=True,
    )


def _simulates(cfg: ExperimentConfig) -> bool:
    """Whether a member simulates while it trains (its method, or a learned feedback's sleep
    phase); the analysis logging of the others simulates on its own."""
    return get_method(cfg.method.name).capabilities.simulates or cfg.feedback.learned


def train_ensemble(
    configs: Sequence[ExperimentConfig | str | Path],
    out: str | Path | Sequence[str | Path],
    *,
    resume: bool = False,
    log: Callable[[str], None] | Sequence[Callable[[str], None]] = print,
    workers: int = 1,
) -> EnsembleResult:
    """Train every config of ``configs`` as one ensemble (see the module docstring).

    Args:
        configs: the members' configs (validated configs or TOML paths).
        out: one run folder per member, or one folder that receives ``member_000``, ...
        resume: continue every member from the checkpoint in its folder (each member resumes
            exactly, as :func:`neurodfc.training.train` with ``resume``); members whose folder
            holds no checkpoint start afresh.
        log: receives each member's epoch lines, prefixed with its folder's name; or one
            callable per member, each receiving that member's lines as they are.
        workers: threads that simulate independent groups of members at the same time (e.g.
            the DFC and the DFC-SS members of Fig. 3 on two cores); the results do not depend
            on it.

    Returns:
        The :class:`EnsembleResult`; a member stopped by a fault (non-finite values, diverging
        dynamics, a bad config) is reported there, the others finish.

    Raises:
        ValueError: the number of folders differs from the number of configs.
        KeyboardInterrupt: interrupted; every member keeps its last checkpoint (resume with
            ``resume=True``).

    Examples:
        >>> import tempfile
        >>> from neurodfc.config import config_from_dict
        >>> base = {"network": {"sizes": [4, 3, 2]}, "training": {"epochs": 1, "batch_size": 8},
        ...         "data": {"n_train": 16, "n_val": 8, "n_test": 8},
        ...         "simulation": {"steps": 20}}
        >>> cfgs = [config_from_dict(base | {"seed": s}) for s in (1, 2)]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     res = train_ensemble(cfgs, tmp, log=lambda line: None)
        >>> res.ok, [p.name for p in res.paths], res.rounds > 0
        (True, ['member_000', 'member_001'], True)
    """
    cfgs = [c if isinstance(c, ExperimentConfig) else load_config(c) for c in configs]
    if isinstance(out, (str, Path)):
        paths = member_folders(out, len(cfgs))
    else:
        paths = [Path(p) for p in out]
    if len(paths) != len(cfgs):
        raise ValueError(f"train_ensemble: {len(cfgs)} configs but {len(paths)} run folders")
    if not callable(log) and len(log) != len(cfgs):
        raise ValueError(f"train_ensemble: {len(cfgs)} configs but {len(log)} log callables")
    shared: dict[str, DataSplits] = {}
    data_lock = threading.Lock()
    # only members that simulate during training meet at the batcher: the others (DFC-SSA
    # with fixed feedback, BP, DFA) would hold the rest up while they train
    meets = [_simulates(cfg) for cfg in cfgs]
    batcher = SimulationBatcher(sum(meets), workers)
    runs: list[RunResult | None] = [None] * len(cfgs)
    errors: list[BaseException | None] = [None] * len(cfgs)

    def data_of(cfg: ExperimentConfig) -> DataSplits:
        key = _data_key(cfg)
        with data_lock:
            if key not in shared:
                shared[key] = load_data(cfg)
            return shared[key]

    def member(k: int) -> None:
        name = paths[k].name

        def member_log(line: str) -> None:
            if callable(log):
                log(f"[{name}] {line}")
            else:
                log[k](line)

        try:
            cfg = cfgs[k]
            fresh = not (paths[k] / CHECKPOINT).exists()
            runs[k] = train(
                cfg,
                paths[k],
                resume=resume and not fresh,
                quiet=True,
                log=member_log,
                batcher=batcher if meets[k] else None,
                data=data_of(cfg),
            )
        except Exception as err:  # noqa: BLE001 - reported per member, the others go on
            errors[k] = err
        finally:
            if meets[k]:
                batcher.leave()

    # members that do not meet train first, one after another: in threads beside the
    # ensemble their Python work would hold the interpreter lock the simulations need
    for k in range(len(cfgs)):
        if not meets[k]:
            member(k)
    threads = [
        threading.Thread(target=member, args=(k,), name=f"neurodfc-member-{k}", daemon=True)
        for k in range(len(cfgs))
        if meets[k]
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        batcher.abort()
        for t in threads:
            t.join(5.0)
        raise
    return EnsembleResult(paths=paths, runs=runs, errors=errors, rounds=batcher.rounds)
