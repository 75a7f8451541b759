"""Profile one linear-response update (issue 15) on a device: which operations take the time.

Usage::

    python benchmarks/profile_linear_response.py [--device cuda] [--batch 128] [--rows 30]

Prints torch.profiler tables (by total CPU time, which includes host-device synchronisations,
and by device time) for DFC at order 2 and DFC-SS at order 1 at the Table-1 MNIST settings, on
a seeded MNIST-shaped batch, after one warm-up update. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurodfc.config import load_config  # noqa: E402
from neurodfc.methods import get_method  # noqa: E402
from neurodfc.system import DFCSystem  # noqa: E402

LR = ["simulation.solver=linear_response", "simulation.linear_response_tol=1.0"]
CASES = {
    "dfc_linear_response": ("mnist_dfc", [*LR, "simulation.order=2"]),
    "dfc_ss_linear_response": ("mnist_dfc_ss", [*LR, "simulation.order=1"]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rows", type=int, default=30)
    a = p.parse_args()
    cuda = a.device.startswith("cuda")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(a.batch, 784, generator=g, dtype=torch.float64) - 0.1307) / 0.3081
    y = torch.randint(0, 10, (a.batch,), generator=g)
    acts = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    for name, (model, extra) in CASES.items():
        cfg = load_config(
            ROOT / "models" / f"{model}.toml",
            [f"device={a.device}", "dtype=float64", "method.include_non_converged=true", *extra],
        )
        system = DFCSystem.from_config(cfg)
        method = get_method(cfg.method.name)
        xd, yd = x.to(a.device), y.to(a.device)
        method.update(system, xd, yd)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        method.update(system, xd, yd)
        if cuda:
            torch.cuda.synchronize()
        print(f"## {name}: {time.perf_counter() - t0:.3f} s per update (batch {a.batch})")
        with profile(activities=acts, with_stack=False) as prof:
            method.update(system, xd, yd)
            if cuda:
                torch.cuda.synchronize()
        ka = prof.key_averages()
        print(ka.table(sort_by="cpu_time_total", row_limit=a.rows, max_name_column_width=50))
        if cuda:
            print(ka.table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=50))
        else:
            print(ka.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
