"""Ensembles vs the same runs one after another, measured in one run.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ensemble.py [--quick] [--device cpu|cuda] --out FILE.json

For each case, M runs (members that differ in their seed, and in the ``grid`` cases also in
``controller.k_p``, so the per-member scalar path is measured too) are trained twice in this
process: one after another with :func:`neurodfc.train`, then as one ensemble with
:func:`neurodfc.train_ensemble`. The JSON holds per case the wall and CPU (process) times of
both, ``throughput_ratio`` (sequential wall / ensemble wall) and ``cpu_ratio`` (sequential CPU
time / ensemble CPU time: the throughput per core, what a shared machine gives back) and the
largest weight difference between each member and its run alone (the equality contract).

Cases: the Fig. 3 toy network (``fig3_dfc``: learned feedback, so sleep-phase and forward
simulations, 1000 Euler steps each forward batch; its 5000 training samples, one epoch) with 7
and 35 members; MNIST-sized members
(``mnist_dfc``, 256 training samples, 2 batches of 128) with 2 and 4 members. ``--quick``
runs fewer batches and members. A short warm-up training runs first (the first training
of a process imports torch's optimiser machinery and netCDF, seconds that would count against
the sequential runs). torch runs on one thread (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from neurodfc.config import load_config  # noqa: E402
from neurodfc.ensemble import train_ensemble  # noqa: E402
from neurodfc.training import load_run, train  # noqa: E402

FIG3 = [
    "data.n_train={n_train}",
    "data.n_val=64",
    "data.n_test=64",
    "training.epochs=1",
    "feedback_learning.pretrain_epochs=0",
    "feedback_learning.extra_epochs=1",
    "analysis.log_interval=0",
]
MNIST = [
    "data.max_train_samples={n_train}",
    "data.max_test_samples=128",
    "data.val_size=128",
    "training.epochs=1",
    "feedback_learning.pretrain_epochs=0",
    "feedback_learning.extra_epochs=0",
    "analysis.log_interval=0",
]


def _configs(model: str, base: list[str], members: int, grid: bool, device: str) -> list[Any]:
    cfgs = []
    for k in range(members):
        extra = [f"seed={100 + k}", f"device={device}"]
        if grid:
            extra.append(f"controller.k_p={1.0 + 0.1 * k}")
        cfgs.append(load_config(ROOT / "models" / f"{model}.toml", [*base, *extra]))
    return cfgs


def _max_diff(a: Path, b: Path) -> float:
    sa, sb = load_run(a).system.state_dict(), load_run(b).system.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def run_case(name: str, cfgs: list[Any], tmp: Path) -> dict[str, Any]:
    """Train ``cfgs`` one after another, then as one ensemble; time both."""
    quiet = {"quiet": True, "log": lambda line: None}
    w0, c0 = time.perf_counter(), time.process_time()
    alone = []
    for k, cfg in enumerate(cfgs):
        path = tmp / f"{name}_alone_{k}"
        train(cfg, path, **quiet)  # type: ignore[arg-type]
        alone.append(path)
    w1, c1 = time.perf_counter(), time.process_time()
    res = train_ensemble(cfgs, tmp / f"{name}_ensemble", log=lambda line: None)
    w2, c2 = time.perf_counter(), time.process_time()
    if not res.ok:
        raise RuntimeError(f"{name}: a member failed: {res.errors}")
    diff = max(_max_diff(a, b) for a, b in zip(res.paths, alone, strict=True))
    out = {
        "members": len(cfgs),
        "sequential_wall_s": w1 - w0,
        "ensemble_wall_s": w2 - w1,
        "sequential_cpu_s": c1 - c0,
        "ensemble_cpu_s": c2 - c1,
        "throughput_ratio": (w1 - w0) / (w2 - w1),
        "cpu_ratio": (c1 - c0) / (c2 - c1),
        "rounds": res.rounds,
        "max_weight_diff_vs_alone": diff,
    }
    print(
        f"{name:>16}: M={len(cfgs):3d}  sequential {w1 - w0:7.2f} s  ensemble {w2 - w1:7.2f} s  "
        f"throughput x{out['throughput_ratio']:.2f}  per core x{out['cpu_ratio']:.2f}  "
        f"max |dW| {diff:.1e}",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the cases and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches and members")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: print only)")
    ap.add_argument("--cases", default="", help="comma-separated subset of the case names")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("NEURODFC_DATA", str(ROOT.parent / "shared" / "data"))
    n_fig3 = 1024 if args.quick else 5000  # Fig. 3's training set: 40 batches of 128
    fig3 = [s.format(n_train=n_fig3) for s in FIG3]
    mnist = [s.format(n_train=256) for s in MNIST]
    cases = {
        "fig3_seeds_7": ("fig3_dfc", fig3, 7, False),
        "fig3_grid_7": ("fig3_dfc", fig3, 7, True),
        "fig3_seeds_35": ("fig3_dfc", fig3, 35, False),
        "mnist_seeds_2": ("mnist_dfc", mnist, 2, False),
        "mnist_grid_4": ("mnist_dfc", mnist, 4, True),
    }
    if args.quick:
        cases = {k: v for k, v in cases.items() if k in ("fig3_seeds_7", "mnist_seeds_2")}
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = {k: v for k, v in cases.items() if k in wanted}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: the first training imports torch's optimiser machinery and netCDF (seconds)
        warm = [s.format(n_train=32) for s in FIG3] + ["simulation.steps=20"]
        train_ensemble(
            _configs("fig3_dfc", warm, 2, False, args.device),
            Path(tmp) / "warm",
            log=lambda line: None,
        )
        train(
            _configs("fig3_dfc", warm, 1, False, args.device)[0],
            Path(tmp) / "warm1",
            quiet=True,
            log=lambda line: None,
        )
        for name, (model, base, members, grid) in cases.items():
            cfgs = _configs(model, base, members, grid, args.device)
            results[name] = run_case(name, cfgs, Path(tmp))
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": args.device,
            "threads": torch.get_num_threads(),
        },
        "cases": results,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
