"""Table 1 of Meulemans et al. (2021): test performance of BP, DFA and the DFC variants.

Runs ``models/<dataset>_<method>.toml`` for every selected dataset (``mnist``, ``fmnist``,
``mnist_auto``), method (``bp``, ``dfa``, ``dfc``, ``dfc_ss``, ``dfc_ssa`` and the fixed-feedback
``fixed_dfc``, ``fixed_dfc_ss``, ``fixed_dfc_ssa``) and seed (0..N-1, default 5) as one sweep
on dask.distributed (:mod:`neurodfc.sweep`; a LocalCluster unless ``--scheduler``), with the
paper's epochs (100; autoencoder 25) unless ``--epochs``. The statistic is the test value at
the best-validation epoch (test error % for MNIST / Fashion-MNIST, test loss for the
autoencoder), mean +- sample std over seeds. ``OUT/table1.md`` puts it next to the paper's
numbers (``PAPER`` below, from docs/design section 7) with the difference in units of the
paper's std. Everything of the sweep is in ``OUT`` too (runs/, sweep.nc, table.md); running
the same command again skips finished runs and resumes interrupted ones.

It also prints an estimate of the full table's time (5 seeds, the paper's epochs, feedback
pre-training included) from per-batch timings of every config on ``--device``: the forward
update and the sleep-phase update of one minibatch are timed at two short simulation lengths
and extrapolated linearly to the config's number of steps (an Euler loop costs a fixed amount
per step). ``--estimate-only`` prints just that.

``--quick`` (CI, under a minute): 2 seeds, one minibatch of 16 training samples, 64
validation / test samples, one epoch, one short feedback pre-training epoch, 20 simulation
steps, through a real LocalCluster with 2 worker processes; no time estimate (it times every
config at full size, minutes on a CPU). Its numbers say that the pipeline works, not how well
the methods learn.

Ensembles (the default): the seeds of each row (a dataset and a method) train as one ensemble,
one dask task (:func:`neurodfc.sweep.run_sweep` with ``ensemble=True``, ``--max-members``
defaulting to the number of seeds): their simulations run as one batched system, each run
equal to the same run trained alone, with the same run folders, ``sweep.nc`` and tables;
finished runs are skipped and interrupted ones resume from their checkpoints. Rows that do not
simulate while they train (BP, DFA, DFC-SSA with fixed feedback) stay one task per run.
``--no-ensemble`` trains every run as its own task. The estimate also times one minibatch of a
row's seeds as one ensemble and prints the table's hours both ways.

Examples::

    python analyses/table1.py --quick --out /tmp/t1
    python analyses/table1.py --datasets mnist --methods bp dfa dfc_ssa --epochs 2 --seeds 2 \\
        --workers 2 --out runs/table1_mnist
    python analyses/table1.py --device cuda --workers 8 --out runs/table1   # the full table
    python analyses/table1.py --estimate-only --device cuda
    python analyses/table1.py --no-ensemble --workers 8 --out runs/table1   # one task per run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
if str(REPO) not in sys.path:  # run as `python analyses/table1.py` from a checkout
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from neurodfc.config import ExperimentConfig, load_config  # noqa: E402
from neurodfc.sweep import (  # noqa: E402
    Axis,
    SweepPlan,
    make_plan,
    run_sweep,
    summary_rows,
)
from neurodfc.sweep.packing import packing_key  # noqa: E402

DATASETS: dict[str, str] = {
    "mnist": "MNIST test error %",
    "fmnist": "F-MNIST test error %",
    "mnist_auto": "MNIST-AE test loss",
}
"""Dataset key (prefix of the ``models/`` file) -> the statistic of its Table-1 column."""

METHODS: dict[str, str] = {
    "bp": "BP",
    "dfc": "DFC",
    "dfc_ssa": "DFC-SSA",
    "dfc_ss": "DFC-SS",
    "fixed_dfc": "DFC (fixed)",
    "fixed_dfc_ssa": "DFC-SSA (fixed)",
    "fixed_dfc_ss": "DFC-SS (fixed)",
    "dfa": "DFA",
}
"""Method key (suffix of the ``models/`` file) -> the row name, in the paper's order."""

PAPER: dict[str, dict[str, tuple[float, float | None]]] = {
    "mnist": {
        "bp": (2.08, 0.15),
        "dfc": (2.25, 0.09),
        "dfc_ssa": (2.18, 0.16),
        "dfc_ss": (2.29, 0.10),
        "fixed_dfc": (2.47, 0.12),
        "fixed_dfc_ssa": (2.46, 0.11),
        "fixed_dfc_ss": (2.39, 0.22),
        "dfa": (2.69, 0.11),
    },
    "fmnist": {
        "bp": (10.60, 0.34),
        "dfc": (11.17, 0.27),
        "dfc_ssa": (11.28, 0.27),
        "dfc_ss": (11.15, 0.32),
        "fixed_dfc": (11.62, 0.30),
        "fixed_dfc_ssa": (11.44, 0.14),
        "fixed_dfc_ss": (11.55, 0.42),
        "dfa": (11.38, 0.25),
    },
    "mnist_auto": {  # the design notes give no std for this column
        "bp": (9.42e-2, None),
        "dfc": (11.28e-2, None),
        "dfc_ssa": (11.27e-2, None),
        "dfc_ss": (11.21e-2, None),
        "fixed_dfc": (33.37e-2, None),
        "fixed_dfc_ssa": (31.90e-2, None),
        "fixed_dfc_ss": (32.31e-2, None),
        "dfa": (29.95e-2, None),
    },
}
"""Table 1 (5 seeds, mean +- std; test value at the best-validation epoch), from
``shared/design/dfc_equations.md`` section 7."""

PAPER_MNIST_TRAIN_LOSS: dict[str, float] = {
    "bp": 1.53e-7,
    "dfc": 7.61e-8,
    "dfc_ssa": 4.89e-8,
    "dfc_ss": 4.80e-8,
    "fixed_dfc": 1.30e-6,
    "fixed_dfc_ssa": 1.73e-6,
    "fixed_dfc_ss": 1.67e-6,
    "dfa": 7.09e-7,
}
"""The paper's MNIST train-loss column. It comes from the reference's ``configs_mnist_train``
(hyperparameters tuned for the training loss), which ``models/`` does not hold: reported for
reference only; ``table1.md`` lists the final train loss of the Table-1 runs beside it."""

QUICK_OVERRIDES = (
    "data.max_train_samples=16",
    "data.max_test_samples=64",
    "training.batch_size=16",
    "training.epochs=1",
    "feedback_learning.pretrain_epochs=1",
    "feedback_learning.extra_epochs=0",
    "feedback_learning.steps=8",
    "simulation.steps=20",
)
"""What ``--quick`` sets in every config (CI-sized; not a reproduction)."""

FULL_SEEDS = 5


def config_path(dataset: str, method: str) -> Path:
    """``models/<dataset>_<method>.toml``."""
    return MODELS / f"{dataset}_{method}.toml"


def plan_table1(
    out: Path,
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
) -> SweepPlan:
    """The sweep: axes ``dataset`` x ``method``, each point its own config file."""
    axes = [
        Axis("dataset", tuple(datasets), tuple(datasets)),
        Axis("method", tuple(methods), tuple(methods)),
    ]

    def build(values: Mapping[str, Any], labels: Mapping[str, str], seed: int) -> ExperimentConfig:
        path = config_path(values["dataset"], values["method"])
        return load_config(path, [*overrides, f"seed={seed}"])

    return make_plan(out, axes, seeds, build, description="Table 1 (Meulemans et al. 2021)")


# ---------------------------------------------------------------------------- the table
def _fmt(mean: float, std: float, dataset: str) -> str:
    if math.isnan(mean):
        return "n/a"
    if dataset == "mnist_auto":
        body = f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} +- {std:.2g}"
    else:
        body = f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} +- {std:.2f}"
    return body


def _paper_fmt(dataset: str, method: str) -> str:
    mean, std = PAPER[dataset][method]
    if dataset == "mnist_auto":
        return f"{mean:.4g}"
    return f"{mean:.2f} +- {std:.2f}"


def compare(mean: float, dataset: str, method: str) -> str:
    """Our mean minus the paper's, in units of the paper's std (relative, in %, where the
    paper gives no std)."""
    if math.isnan(mean):
        return "n/a"
    p_mean, p_std = PAPER[dataset][method]
    if p_std:
        return f"{(mean - p_mean) / p_std:+.1f} sd"
    return f"{100 * (mean - p_mean) / p_mean:+.0f} %"


def table_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One row per (dataset, method): our statistic (mean, std, n), the paper's, the
    difference, and the final train loss."""
    rows = []
    for r in summary_rows(ds):
        d, m = str(r["dataset"]), str(r["method"])
        stat = "test_loss_at_best_val" if d == "mnist_auto" else "test_error_percent_at_best_val"
        p_mean, p_std = PAPER[d][m]
        rows.append(
            {
                "dataset": d,
                "method": m,
                "n": r["n"],
                "n_failed": r["n_failed"],
                "statistic": stat,
                "mean": r[f"{stat}_mean"],
                "std": r[f"{stat}_std"],
                "paper_mean": p_mean,
                "paper_std": np.nan if p_std is None else p_std,
                "diff_in_paper_std": (r[f"{stat}_mean"] - p_mean) / p_std if p_std else np.nan,
                "final_train_loss_mean": r["final_train_loss_mean"],
                "final_train_loss_std": r["final_train_loss_std"],
            }
        )
    return rows


def table_markdown(rows: Sequence[Mapping[str, Any]], ds: xr.Dataset, note: str = "") -> str:
    """Markdown: one row per method, per dataset our value, the paper's and the difference."""
    datasets = [d for d in DATASETS if d in {r["dataset"] for r in rows}]
    methods = [m for m in METHODS if m in {r["method"] for r in rows}]
    by = {(r["dataset"], r["method"]): r for r in rows}
    head = ["method"]
    for d in datasets:
        head += [f"{DATASETS[d]} (ours, n)", "paper", "ours - paper"]
    if "mnist" in datasets:
        head += ["MNIST final train loss (ours)", "paper train loss*"]
    seeds = [int(s) for s in ds["seed"].values]
    epochs = int(ds.sizes.get("epoch", 0))
    lines = [
        "# Table 1: test performance (mean +- sample std over seeds)",
        "",
        f"Seeds {seeds}; up to {epochs} epochs; test value at the best-validation epoch. "
        "'ours - paper' is in units of the paper's std (sd), or relative (%) where the paper "
        "gives none.",
    ]
    if note:
        lines += ["", note]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = [METHODS[m]]
        for d in datasets:
            r = by.get((d, m))
            if r is None:
                cells += ["-", _paper_fmt(d, m), "-"]
                continue
            ours = _fmt(r["mean"], r["std"], d) + f" ({r['n']})"
            if r["n_failed"]:
                ours += f" [{r['n_failed']} failed]"
            cells += [ours, _paper_fmt(d, m), compare(r["mean"], d, m)]
        if "mnist" in datasets:
            r = by.get(("mnist", m))
            tl = "-" if r is None else _fmt_sci(r["final_train_loss_mean"])
            cells += [tl, f"{PAPER_MNIST_TRAIN_LOSS[m]:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    if "mnist" in datasets:
        lines += [
            "",
            "*The paper's train-loss column comes from configs tuned for the training loss "
            "(reference configs_mnist_train), which models/ does not hold; not comparable with "
            "the final train loss of the Table-1 runs.",
        ]
    return "\n".join(lines) + "\n"


def _fmt_sci(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3g}"


def table_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV (full precision; empty cells for NaN)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()})
    return buf.getvalue()


# ---------------------------------------------------------------------------- time estimate
@dataclass
class Timing:
    """Per-minibatch seconds of one config at its full settings, and the full run's time."""

    dataset: str
    method: str
    forward_s: float
    """One forward-weight update (simulation extrapolated to the config's steps)."""
    sleep_s: float
    """One sleep-phase (feedback) update; 0 with frozen feedback."""
    eval_s: float
    """Feedforward evaluation of train + val + test after an epoch."""
    run_s: float
    """One full run: pre-training + epochs x (forward pass + sleep passes + evaluation)."""
    members: int = 1
    """Members of the row's ensemble (its seeds); 1: no ensemble timed."""
    forward_ens_s: float = math.nan
    """One forward update of every member, their simulations as one batched system."""
    sleep_ens_s: float = 0.0
    """One sleep-phase update of every member, as one batched system."""
    row_ens_s: float = math.nan
    """The row's ensemble: every member's full run, trained together."""


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _best_time(fn: Callable[[], object], device: str, reps: int = 2) -> float:
    best = math.inf
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _together(systems: Sequence[Any], calls: Sequence[Callable[[], object]]) -> None:
    """``calls[k]()`` in its own thread with ``systems[k]`` an ensemble member: the threads'
    simulations are solved together (as in :func:`neurodfc.train_ensemble`)."""
    from neurodfc.solvers.batcher import SimulationBatcher

    batcher = SimulationBatcher(len(systems))
    errors: list[BaseException] = []

    def member(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)
        finally:
            batcher.leave()

    for sys_k in systems:
        sys_k.batcher = batcher
    threads = [threading.Thread(target=member, args=(c,)) for c in calls]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for sys_k in systems:
        sys_k.batcher = None
    if errors:
        raise errors[0]


def _extrapolate(t1: float, t2: float, s1: int, s2: int, steps: int) -> float:
    """``a + b * steps`` through ``(s1, t1)`` and ``(s2, t2)`` (b >= 0, a >= 0)."""
    b = max((t2 - t1) / (s2 - s1), 0.0)
    a = max(t1 - b * s1, 0.0)
    return a + b * steps


def time_config(
    dataset: str,
    method: str,
    device: str,
    epochs: int | None = None,
    reps: int = 2,
    members: int = 1,
) -> Timing:
    """Time one minibatch of every phase of ``models/<dataset>_<method>.toml`` on ``device``
    and extrapolate to a full run (the config's epochs, or ``epochs``); with ``members > 1``
    also the same minibatch of that many seeds as one ensemble (simulations stacked), and a
    row's ensemble run from it. Methods that do not simulate cost ``members`` runs."""
    import torch

    from neurodfc.experiment import load_data
    from neurodfc.methods import feedback_gradients, get_method
    from neurodfc.system import DFCSystem
    from neurodfc.training import evaluate

    full = load_config(config_path(dataset, method), [f'device="{device}"'])
    bs = full.training.batch_size
    small = [f'device="{device}"', f"data.max_train_samples={bs}", "data.max_test_samples=1000"]
    data = load_data(load_config(config_path(dataset, method), small))
    x, y = data.train.x[:bs], data.train.y[:bs]
    meth = get_method(full.method.name)
    gen = torch.Generator().manual_seed(0)
    forward_ens = sleep_ens = math.nan

    def system(extra: Sequence[str]) -> DFCSystem:
        return DFCSystem.from_config(load_config(config_path(dataset, method), [*small, *extra]))

    def fwd(s: DFCSystem) -> Callable[[], object]:
        return lambda: meth.update(s, x, y, generator=gen)

    def ens(extra: str, call: Callable[[DFCSystem, torch.Generator], object]) -> Callable[[], None]:
        ss = [system([extra, f"seed={k}"]) for k in range(members)]
        gens = [torch.Generator().manual_seed(k) for k in range(members)]
        calls = [(lambda s=s, g=g: call(s, g)) for s, g in zip(ss, gens, strict=True)]
        return lambda: _together(ss, calls)

    def ens_fwd(steps: int) -> Callable[[], None]:
        return ens(f"simulation.steps={steps}", lambda s, g: meth.update(s, x, y, generator=g))

    def ens_sleep(steps: int) -> Callable[[], None]:
        return ens(f"feedback_learning.steps={steps}", lambda s, g: feedback_gradients(s, x, g))

    if meth.simulates:
        s1, s2 = 10, 50
        sys1, sys2 = system([f"simulation.steps={s1}"]), system([f"simulation.steps={s2}"])
        fwd(sys1)()  # warm-up
        t1, t2 = _best_time(fwd(sys1), device, reps), _best_time(fwd(sys2), device, reps)
        forward_s = _extrapolate(t1, t2, s1, s2, full.simulation.n_steps)
        if members > 1:
            e1, e2 = ens_fwd(s1), ens_fwd(s2)
            e1()
            t1, t2 = _best_time(e1, device, reps), _best_time(e2, device, reps)
            forward_ens = _extrapolate(t1, t2, s1, s2, full.simulation.n_steps)
    else:
        s0 = system([])
        fwd(s0)()
        forward_s = _best_time(fwd(s0), device, reps)
    sleep_s = 0.0
    if full.feedback.learned:
        f1, f2 = 4, 16
        q1 = system([f"feedback_learning.steps={f1}"])
        q2 = system([f"feedback_learning.steps={f2}"])
        feedback_gradients(q1, x, gen)
        u1 = _best_time(lambda: feedback_gradients(q1, x, gen), device, reps)
        u2 = _best_time(lambda: feedback_gradients(q2, x, gen), device, reps)
        sleep_s = _extrapolate(u1, u2, f1, f2, full.feedback_learning.steps)
        if members > 1:
            e1, e2 = ens_sleep(f1), ens_sleep(f2)
            e1()
            u1, u2 = _best_time(e1, device, reps), _best_time(e2, device, reps)
            sleep_ens = _extrapolate(u1, u2, f1, f2, full.feedback_learning.steps)
    s0 = system([])
    n_eval = data.val.x.shape[0] + data.test.x.shape[0]
    t_eval = _best_time(lambda: evaluate(s0, data.val), device, reps)
    t_eval += _best_time(lambda: evaluate(s0, data.test), device, reps)
    n_train = 60_000 - full.data.val_size
    per_sample_eval = t_eval / max(n_eval, 1)
    eval_s = per_sample_eval * (60_000 + 10_000)
    nb = math.ceil(n_train / bs)
    fl = full.feedback_learning
    learned = full.feedback.learned
    n_epochs = epochs or full.training.epochs

    def run(fwd_s: float, sleep: float, evals: float) -> float:
        pre = fl.pretrain_epochs * nb * sleep if learned else 0.0
        per_epoch = nb * (fwd_s + ((1 + fl.extra_epochs) * sleep if learned else 0.0)) + evals
        return pre + n_epochs * per_epoch

    timing = Timing(dataset, method, forward_s, sleep_s, eval_s, run(forward_s, sleep_s, eval_s))
    if members > 1:  # not simulated: the members' updates cost what they cost alone
        timing.members = members
        timing.forward_ens_s = forward_ens if meth.simulates else members * forward_s
        timing.sleep_ens_s = sleep_ens if learned else 0.0
        timing.row_ens_s = run(timing.forward_ens_s, timing.sleep_ens_s, members * eval_s)
    return timing


def estimate_markdown(
    timings: Sequence[Timing], device: str, seeds: int, concurrent: int, note: str = ""
) -> str:
    """The estimate of the full table's time as markdown: sequential runs and, where the
    timings hold them, one ensemble per row."""
    total = seeds * sum(t.run_s for t in timings)
    ens = bool(timings) and all(t.members > 1 for t in timings)
    lines = [
        f"## Estimated time of the full table on `{device}`",
        "",
        f"Per-minibatch seconds measured on this machine ({_machine(device)}), simulations "
        f"extrapolated linearly in the number of steps; a run = feedback pre-training + the "
        f"paper's epochs x (forward pass + sleep passes + evaluation); {seeds} seeds.",
    ]
    if ens:
        lines[-1] += (
            f" Ensemble: the same minibatch of the row's {timings[0].members} seeds as one "
            "ensemble (simulations stacked; evaluation and methods without simulations cost "
            "what the members cost alone)."
        )
    if note:
        lines += ["", note]
    head = "| dataset | method | forward s/batch | sleep s/batch | one run (h) |"
    if ens:
        head += " ensemble forward s/batch | ensemble sleep s/batch | row as ensemble (h) |"
    lines += ["", head, "|" + "---|" * head.count(" |")]
    for t in timings:
        row = (
            f"| {t.dataset} | {METHODS[t.method]} | {t.forward_s:.3g} | {t.sleep_s:.3g} | "
            f"{t.run_s / 3600:.2f} |"
        )
        if ens:
            row += f" {t.forward_ens_s:.3g} | {t.sleep_ens_s:.3g} | {t.row_ens_s / 3600:.2f} |"
        lines.append(row)
    lines += [
        "",
        f"Total: {total / 3600:.1f} h of sequential compute ({seeds} seeds x "
        f"{len(timings)} configs); with {concurrent} runs at a time about "
        f"{total / 3600 / concurrent:.1f} h (if they do not slow each other down).",
    ]
    if ens:
        e_total = sum(t.row_ens_s for t in timings)
        lines += [
            "",
            f"With ensembles (one per row): {e_total / 3600:.1f} h of compute (sequential / "
            f"ensembles = {total / max(e_total, 1e-300):.2f}); with {concurrent} ensembles at "
            f"a time about {e_total / 3600 / concurrent:.1f} h.",
        ]
    return "\n".join(lines) + "\n"


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, float64 as in the configs"
    return f"CPU, {torch.get_num_threads()} torch thread(s), float64 as in the configs"


def estimate(
    datasets: Sequence[str],
    methods: Sequence[str],
    device: str,
    *,
    seeds: int = FULL_SEEDS,
    concurrent: int = 1,
    ensemble: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[str, list[Timing]]:
    """Time every config (with ``ensemble``, also its ``seeds`` as one ensemble) and return
    the estimate's markdown and the timings."""
    timings = []
    for d in datasets:
        for m in methods:
            t = time_config(d, m, device, members=seeds if ensemble else 1)
            msg = (
                f"  timed {d}_{m}: forward {t.forward_s:.3g} s/batch, sleep {t.sleep_s:.3g} "
                f"s/batch -> {t.run_s / 3600:.2f} h per run"
            )
            if t.members > 1:
                msg += f"; {t.members} as one ensemble {t.row_ens_s / 3600:.2f} h"
            log(msg)
            timings.append(t)
    return estimate_markdown(timings, device, seeds, concurrent), timings


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """Command line of the script."""
    p = argparse.ArgumentParser(
        prog="analyses/table1.py",
        description="Table 1 (Meulemans et al. 2021) as a dask sweep, next to the paper's numbers.",
    )
    p.add_argument("--quick", action="store_true", help="tiny CI version (2 seeds, 1 epoch)")
    p.add_argument("--out", type=Path, default=REPO / "analyses_out" / "table1")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the paper's)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds 0..N-1 (default {FULL_SEEDS})")
    p.add_argument("--device", default=None, help="torch device of every run, e.g. cuda")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a field in every config (repeatable)",
    )
    p.add_argument("--scheduler", default=None, help="address of a running dask scheduler")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    p.add_argument(
        "--no-ensemble",
        action="store_true",
        help="train every run as its own dask task instead of each row's seeds as one ensemble",
    )
    p.add_argument(
        "--max-members",
        type=int,
        default=None,
        metavar="N",
        help="most runs of one ensemble (default: the number of seeds, one row per ensemble)",
    )
    p.add_argument(
        "--estimate-only", action="store_true", help="only time the configs and print the estimate"
    )
    p.add_argument(
        "--no-estimate", action="store_true", help="skip the time estimate (implied by --quick)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep, write ``OUT/table1.md`` / ``table1.csv`` and print the estimate."""
    args = build_parser().parse_args(argv)
    datasets = [d for d in DATASETS if d in args.datasets]
    methods = [m for m in METHODS if m in args.methods]
    device = args.device or "cpu"
    workers = args.workers or (2 if args.quick else None)
    concurrent = workers or (1 if args.scheduler else os.cpu_count() or 1)
    if args.max_members is not None and args.max_members < 1:
        build_parser().error(f"--max-members must be >= 1, got {args.max_members}")

    def full_estimate() -> str:
        md, _ = estimate(
            datasets,
            methods,
            device,
            concurrent=concurrent,
            ensemble=not args.no_ensemble,
            log=_say,
        )
        return md

    if args.estimate_only:
        print(full_estimate())
        return 0
    n_seeds = args.seeds or (2 if args.quick else FULL_SEEDS)
    overrides = list(QUICK_OVERRIDES) if args.quick else []
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.device is not None:
        overrides.append(f'device="{args.device}"')
    overrides += args.overrides
    plan = plan_table1(args.out, datasets, methods, range(n_seeds), overrides)
    members = 1 if args.no_ensemble else min(n_seeds, args.max_members or n_seeds)
    t0 = time.perf_counter()
    report = run_sweep(
        plan,
        scheduler=args.scheduler,
        workers=workers,
        quiet=args.quiet,
        log=_say,
        ensemble=not args.no_ensemble,
        max_members=members,
    )
    wall = time.perf_counter() - t0
    assert report.sweep_nc is not None
    with xr.open_dataset(report.sweep_nc) as f:
        ds = f.load()
    rows = table_rows(ds)
    note = (
        "**--quick**: 16 training samples, 1 epoch, 20 simulation steps: a check of the "
        "pipeline, not a reproduction."
        if args.quick
        else ""
    )
    if overrides:
        note += ("\n\n" if note else "") + "Overrides: `" + "`, `".join(overrides) + "`."
    md = table_markdown(rows, ds, note)
    md += "\n" + measured_markdown(ds, wall, plan, scale=not args.quick, members=members)
    if not (args.no_estimate or args.quick):
        md += "\n" + full_estimate()
    (args.out / "table1.md").write_text(md)
    (args.out / "table1.csv").write_text(table_csv(rows))
    (args.out / "table1.json").write_text(json.dumps({"overrides": overrides}, indent=1) + "\n")
    print(md)
    _say(f"wrote {args.out / 'table1.md'} and {args.out / 'table1.csv'} ({wall:.0f} s sweep)")
    return 1 if report.failed else 0


def measured_markdown(
    ds: xr.Dataset, wall: float, plan: SweepPlan, scale: bool = True, members: int = 1
) -> str:
    """Measured seconds per epoch per (dataset, method) of this sweep's runs and, with
    ``scale``, the full table's time from them: s/epoch / ``members`` x (full / used training
    samples) x the paper's epochs x 5 seeds (feedback pre-training not included).
    ``members``: the most runs trained together as one ensemble; a row's runs that were
    packed (:func:`neurodfc.sweep.packing.packing_key`) each took the whole ensemble's epoch."""
    shared = (
        f" Rows trained as ensembles of {members}: an epoch's wall time is the whole "
        f"ensemble's, so the scaled hours count it once per {members} runs."
        if members > 1 and scale
        else ""
    )
    lines = [
        "## Measured in this sweep",
        "",
        f"Sweep wall time {wall:.0f} s (runs skipped as finished cost nothing). Seconds per "
        "epoch (forward pass + sleep passes, mean over seeds and epochs) at this sweep's "
        "settings"
        + (
            "; scaled to the full table: x (55000 / training samples used) x the paper's "
            f"epochs x {FULL_SEEDS} seeds, feedback pre-training not included."
            if scale
            else "."
        )
        + shared,
        "",
        "| dataset | method | s / epoch |" + (" full table (h) |" if scale else ""),
        "|---|---|---|" + ("---|" if scale else ""),
    ]
    total = 0.0
    for d in ds["dataset"].values:
        for m in ds["method"].values:
            if "wall_time" not in ds:
                continue
            w = ds["wall_time"].sel({"dataset": d, "method": m}).values
            v = float(np.nanmean(w)) if np.isfinite(w).any() else math.nan
            row = f"| {d} | {METHODS[str(m)]} | {v:.3g} |"
            if scale:
                full = load_config(config_path(str(d), str(m)))
                n_full = 60_000 - full.data.val_size
                used = _used_samples(plan, str(d), str(m))
                m_row = _packed(plan, str(d), str(m), members)
                h = v / m_row * (n_full / used) * full.training.epochs * FULL_SEEDS / 3600
                total += 0.0 if math.isnan(h) else h
                row += f" {h:.1f} |"
            lines.append(row)
    if scale:
        lines += ["", f"Sum: {total:.1f} h of sequential compute for the measured rows."]
    return "\n".join(lines) + "\n"


def _packed(plan: SweepPlan, dataset: str, method: str, members: int) -> int:
    """``members`` when the row's runs are packed into ensembles, else 1."""
    for t in plan.tasks:
        if dict(t.point) == {"dataset": dataset, "method": method} and t.config is not None:
            return members if packing_key(t.config) is not None else 1
    return 1


def _used_samples(plan: SweepPlan, dataset: str, method: str) -> int:
    """Training samples per epoch of (dataset, method) in ``plan``."""
    for t in plan.tasks:
        if dict(t.point) == {"dataset": dataset, "method": method} and t.config is not None:
            n = 60_000 - t.config.data.val_size
            return min(n, t.config.data.max_train_samples or n)
    return 55_000


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
