"""Shared pieces of the ``analyses/`` scripts: the command line, paths, sleep-phase loops and
training of several configs (optionally in parallel processes)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
if str(REPO) not in sys.path:  # run as `python analyses/<name>.py` from a checkout
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.analysis import conditions  # noqa: E402
from neurodfc.config import ExperimentConfig, load_config  # noqa: E402
from neurodfc.methods import feedback_gradients  # noqa: E402
from neurodfc.system import DFCSystem  # noqa: E402


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    """``--quick`` (tiny, for CI) and ``--out DIR`` (where ``<name>.nc``/``.png`` go)."""
    p = argparse.ArgumentParser(prog=f"analyses/{name}.py", description=doc)
    p.add_argument("--quick", action="store_true", help="tiny settings for CI (seconds)")
    p.add_argument("--out", type=Path, default=REPO / "out" / "analyses", help="output folder")
    p.add_argument("--device", default=None, help="torch device (default: the config's)")
    return p


def outputs(out: Path, name: str) -> tuple[Path, Path]:
    """``(out/<name>.nc, out/<name>.png)``, creating ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}.nc", out / f"{name}.png"


def model(name: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """``models/<name>.toml`` with ``section.field=value`` overrides."""
    return load_config(MODELS / f"{name}.toml", list(overrides))


def say(msg: str) -> None:
    """Progress message on stderr (stdout stays for results)."""
    print(msg, file=sys.stderr, flush=True)


def _train_one(args: tuple[ExperimentConfig, str]) -> str:
    from neurodfc.training import train

    cfg, out = args
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.perf_counter()
    resume = (Path(out) / "checkpoint.pt").exists()
    train(cfg, out, resume=resume, quiet=True, log=lambda s: None)
    say(f"  trained {cfg.name} in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def train_all(jobs: Sequence[tuple[ExperimentConfig, Path]], processes: int = 1) -> list[Path]:
    """Train every ``(config, run folder)``; a folder holding a checkpoint of the same config
    is resumed (so a long full run can be continued). ``processes > 1`` trains in parallel
    processes (one torch thread each)."""
    work = [(cfg, str(out)) for cfg, out in jobs]
    if processes <= 1:
        return [Path(_train_one(w)) for w in work]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return [Path(p) for p in pool.map(_train_one, work)]


def _train_ensemble_group(args: tuple[list[tuple[ExperimentConfig, str]], bool]) -> list[str]:
    """One ensemble (in its own process): returns its members' errors."""
    from neurodfc.ensemble import train_ensemble

    group, verbose = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = train_ensemble(
        [cfg for cfg, _ in group],
        [out for _, out in group],
        resume=True,
        log=say if verbose else (lambda line: None),
    )
    names = ", ".join(cfg.name for cfg, _ in group)
    say(f"  trained ensemble [{names}] in {time.perf_counter() - t0:.0f} s")
    return [f"{p}: {e}" for p, e in zip(res.paths, res.errors, strict=True) if e]


def train_as_ensemble(
    jobs: Sequence[tuple[ExperimentConfig, Path]], workers: int = 1, verbose: bool = True
) -> list[Path]:
    """Train every ``(config, run folder)`` in ensembles (:func:`neurodfc.train_ensemble`: the
    members' compatible simulations run as one batched system, each member equal to its run
    alone); folders holding a checkpoint of the same config are resumed.

    Members with the same schedule (feedback learned or fixed) form one ensemble, so that
    their simulations meet in lockstep; with ``workers > 1`` the ensembles train in parallel
    processes (threads would share one interpreter lock).

    Raises:
        RuntimeError: a member stopped with an error (the others finished).
    """
    groups: dict[bool, list[tuple[ExperimentConfig, str]]] = {}
    for cfg, out in jobs:
        groups.setdefault(cfg.feedback.learned, []).append((cfg, str(out)))
    work = [(g, verbose) for g in groups.values()]
    if workers <= 1 or len(work) == 1:
        errors = [_train_ensemble_group(w) for w in work]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(work))) as pool:
            errors = list(pool.map(_train_ensemble_group, work))
    failed = [f for errs in errors for f in errs]
    if failed:
        raise RuntimeError("ensemble members failed: " + "; ".join(failed))
    return [out for _, out in jobs]


def stack_runs(paths: dict[str, Path]) -> xr.Dataset:
    """The ``metrics.nc`` of several runs stacked along a new dim ``run`` (outer join: a metric
    missing from a run is NaN there)."""
    sets = []
    step_of: dict[int, tuple[int, int]] = {}  # step -> (epoch, batch), over all runs
    for name, p in paths.items():
        with xr.open_dataset(p / "metrics.nc") as ds:
            d = ds.load()
        keep = {k: d.attrs[k] for k in ("method",) if k in d.attrs}
        d.attrs = {}
        # fixed-width strings from netCDF would be truncated by the outer join ('ssa' -> 'ss')
        for c in list(d.coords):
            if d[c].dtype.kind == "U":
                d = d.assign_coords({c: d[c].values.astype(object)})
        if "step_epoch" in d.coords:
            for st, ep, bt in zip(
                d["step"].values, d["step_epoch"].values, d["step_batch"].values, strict=True
            ):
                step_of[int(st)] = (int(ep), int(bt))
            d = d.drop_vars(["step_epoch", "step_batch"])
        d = d.expand_dims(run=[name])
        d["run_method"] = ("run", [keep.get("method", "?")])
        sets.append(d)
    # variable attributes shared by the runs (long_name, units, the MN / SSA definitions) stay
    ds = xr.concat(
        sets,
        dim="run",
        join="outer",
        coords="minimal",
        compat="override",
        combine_attrs="drop_conflicts",
    )
    ds.attrs = {}
    if "step" in ds.dims and step_of:
        steps = [int(s) for s in ds["step"].values]
        ds = ds.assign_coords(
            step_epoch=("step", [step_of[s][0] for s in steps]),
            step_batch=("step", [step_of[s][1] for s in steps]),
        )
    return ds


def sleep_trajectory(
    system: DFCSystem,
    x_all: torch.Tensor,
    *,
    iterations: int,
    batch: int,
    log_every: int,
    gammas: Sequence[float],
    lr: float,
    weight_decay: float,
    clip: float | None = 1.0,
    seed: int = 0,
    on_log: Callable[[int, xr.Dataset], None] | None = None,
) -> dict[str, Any]:
    """Noise-driven feedback learning (the Trainer's sleep step: SGD with coupled weight decay
    on Q, all-Q norm clipping) on minibatches drawn from ``x_all``; every ``log_every``
    iterations the batch means of the Condition-2 measure, angle(Q, J^T) and
    angle(Q, J^T (J J^T + gamma I)^-1) on the first 128 samples. Returns lists per key."""
    net = system.network
    n_q = net.depth if system.cfg.feedback.train_output else net.depth - 1
    Qs = list(net.Q)[:n_q]
    opt = torch.optim.SGD(Qs, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.Generator().manual_seed(seed + 1)
    probe = x_all[:128]
    zeros = torch.zeros(probe.shape[0], net.n_out, dtype=probe.dtype)
    log: dict[str, Any] = {"iteration": [], "condition2": [], "angle_Q_JT": [], "angle_Q_pinv": []}

    def record(it: int) -> None:
        c = conditions(system, probe, zeros, gammas=gammas)
        log["iteration"].append(it)
        log["condition2"].append(float(c["condition2"].mean()))
        log["angle_Q_JT"].append(float(c["angle_Q_JT"].mean()))
        log["angle_Q_pinv"].append(c["angle_Q_pinv"].mean("sample").values)
        if on_log is not None:
            on_log(it, c)

    for it in range(iterations):
        if it % log_every == 0:
            record(it)
        xb = x_all[torch.randint(0, x_all.shape[0], (batch,), generator=pick)]
        grads = feedback_gradients(system, xb, gen)[:n_q]
        for q, g in zip(Qs, grads, strict=True):
            q.grad = g
        if clip:
            torch.nn.utils.clip_grad_norm_(Qs, clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    record(iterations)
    return log
