"""Packing a sweep's runs into ensembles (``neurodfc sweep --ensemble``).

Runs whose simulations can be stacked into one batched system
(:func:`neurodfc.solvers.ensemble.batch_key`) share a :func:`packing_key` computed from their
resolved configs: the method, the layer sizes, activations and bias, the batch size, the dtype
and device, the whole ``[simulation]`` section, noise on or off and the apical time constant
(Strong-DFC: also its ``[strong]`` section). The scalars (learning rates, ``k_p``, ``alpha``,
``lambda``, ``tau_ratio``, noise levels, ...), the seed and whether the feedback is learned may
differ. :func:`pack_tasks` splits every group of runs with the same key into ensembles of at
most ``max_members`` runs. A run that could never share a simulation (one that does not
simulate while it trains: BP, DFA, DFC-SSA with fixed feedback; a solver other than
``euler_reference``, early stopping, custom ``[components]``, Ornstein-Uhlenbeck noise) and a
group of one stay plain tasks: packed, they would gain nothing and lose the workers' parallelism.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from neurodfc.config import ExperimentConfig
from neurodfc.sweep.plan import SweepTask

__all__ = ["DEFAULT_MAX_MEMBERS", "pack_tasks", "packing_key"]

DEFAULT_MAX_MEMBERS = 35
"""Default ``--max-members``: the largest ensemble measured when ensembles were planned (one
CPU core, Fig. 3 network, 1000 Euler steps: 35 x 128 samples in 2.0 s against 0.16 s for one
run's 128); larger ensembles add memory and leave fewer tasks to spread over the workers."""


def _simulates(cfg: ExperimentConfig) -> bool:
    """Whether a run simulates while it trains (its method, or a learned feedback's sleep
    phase); the others never meet an ensemble's other members."""
    from neurodfc.methods import method_class

    return method_class(cfg.method.name).capabilities.simulates or cfg.feedback.learned


def packing_key(cfg: ExperimentConfig) -> str | None:
    """What runs must share to be packed into one ensemble (None: ``cfg`` runs on its own).

    Args:
        cfg: a run's resolved config.

    Examples:
        >>> from neurodfc.config import config_from_dict
        >>> base = {"simulation": {"solver": "euler_reference", "steps": 20}}
        >>> a = config_from_dict(base | {"seed": 1, "controller": {"k_p": 1.0}})
        >>> b = config_from_dict(base | {"seed": 2, "training": {"lr": 0.1}})
        >>> packing_key(a) == packing_key(b), packing_key(config_from_dict({})) is None
        (True, True)
    """
    sim = cfg.simulation
    if sim.solver != "euler_reference" or sim.early_stop or not _simulates(cfg):
        return None
    comps = cfg.components
    if comps.controller is not None or comps.neurons is not None:
        return None
    strong = cfg.method.name.startswith("strong")
    if strong and cfg.strong.noise == "ou":
        return None
    net = cfg.network
    noise = cfg.noise
    return json.dumps(
        {
            "method": cfg.method.name,
            "sizes": list(net.sizes),
            "activations": [net.hidden_activation, net.output_activation],
            "bias": net.bias,
            "batch_size": cfg.training.batch_size,
            "dtype": cfg.dtype,
            "device": cfg.device,
            "simulation": sim.model_dump(mode="json"),
            "noisy": noise.sigma > 0 or bool(noise.sigma_output),
            "apical_tau": cfg.apical.tau,
            "strong": cfg.strong.model_dump(mode="json") if strong else None,
        },
        sort_keys=True,
    )


def _chunks(items: Sequence[SweepTask], max_members: int) -> list[tuple[SweepTask, ...]]:
    """``items`` split in order into the fewest near-equal chunks of at most ``max_members``."""
    n_chunks = -(-len(items) // max_members)
    size, extra = divmod(len(items), n_chunks)
    out: list[tuple[SweepTask, ...]] = []
    start = 0
    for i in range(n_chunks):
        stop = start + size + (1 if i < extra else 0)
        out.append(tuple(items[start:stop]))
        start = stop
    return out


def pack_tasks(
    tasks: Sequence[SweepTask], max_members: int = DEFAULT_MAX_MEMBERS
) -> list[tuple[SweepTask, ...]]:
    """Pack ``tasks`` into units: ensembles (two or more runs) and single runs.

    The runs of every :func:`packing_key` are split, in plan order, into the fewest near-equal
    ensembles of at most ``max_members`` runs (e.g. 36 runs with 35 members at most: two
    ensembles of 18); a run without a key, or alone with its key, is a unit of one. The units
    are ordered by their first run's position in ``tasks``, so the packing is deterministic.

    Args:
        tasks: the runs to pack (with validated configs), in plan order.
        max_members: the most runs of one ensemble (>= 1; 1 packs nothing).

    Raises:
        ValueError: ``max_members`` < 1 or a task without a config.
    """
    if max_members < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    groups: dict[str, list[SweepTask]] = {}
    units: list[tuple[SweepTask, ...]] = []
    for t in tasks:
        if t.config is None:
            raise ValueError(f"pack_tasks: task {t.name} has no valid config")
        key = packing_key(t.config)
        if key is None:
            units.append((t,))
        else:
            groups.setdefault(key, []).append(t)
    for group in groups.values():
        units.extend(_chunks(group, max_members))
    order = {t.name: i for i, t in enumerate(tasks)}
    return sorted(units, key=lambda unit: order[unit[0].name])
