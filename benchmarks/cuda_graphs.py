"""CUDA graphs against the plain loop for the reference scheme, measured in one run.

Usage::

    python benchmarks/cuda_graphs.py [--device cuda] [--out FILE.json]

For the forward simulation of DFC (1000 Euler steps with the rule's sums, no recording, as in
training) on one batch of 128: ``fig3_dfc`` alone and as a stacked ensemble of 7 and 35
members, ``mnist_dfc`` alone and as 7 members. Each case is timed with
``simulation.cuda_graphs = false`` (the plain loop) and ``true`` (whole periods replayed as
CUDA graphs, :mod:`neurodfc.fastpath.graphs`), alternately, best of ``--repeats``; the JSON
holds the seconds per simulation, ``speedup`` (plain / graphs) and the largest difference of
the final control and sums between the two. Without a CUDA device the script says so and
exits with status 2 (CUDA graphs have no effect on the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from neurodfc.config import load_config  # noqa: E402
from neurodfc.solve import simulate  # noqa: E402
from neurodfc.solvers import ensemble as stacked  # noqa: E402
from neurodfc.solvers.base import Problem, get_solver  # noqa: E402
from neurodfc.system import DFCSystem  # noqa: E402


class _Capture:
    """A batcher that keeps the problems it is given (nothing is solved)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def solve(self, problem: Problem) -> None:
        self.problems.append(problem)


def _problems(model: str, members: int, graphs: bool, device: str) -> list[Problem]:
    cap = _Capture()
    for k in range(members):
        over = [f"seed={k}", f"device={device}", f"simulation.cuda_graphs={str(graphs).lower()}"]
        system = DFCSystem.from_config(load_config(ROOT / "models" / f"{model}.toml", over))
        system.batcher = cap  # type: ignore[assignment]
        n_in = system.network.sizes[0]
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(128, n_in, generator=g, dtype=torch.float64) * 2 - 1).to(device)
        out = system.output(x)
        r_target = out + 0.05 * torch.randn(out.shape, generator=g, dtype=out.dtype).to(device)
        simulate(system, x, r_target, record=False, accumulate="nonlinear_difference")
    return cap.problems


def _solve(problems: list[Problem]) -> list[Any]:
    if len(problems) == 1:
        return [get_solver("euler_reference").solve(problems[0])]
    return stacked.solve_stacked(problems)


def _time(problems: list[Problem], repeats: int) -> tuple[float, list[Any]]:
    sols = _solve(problems)  # warm-up (and the capture's first use)
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        sols = _solve(problems)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, sols


def main(argv: list[str] | None = None) -> int:
    """Time the cases and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (args.device.startswith("cuda") and torch.cuda.is_available()):
        print("cuda_graphs: no CUDA device; CUDA graphs have no effect on the CPU")
        return 2
    cases = {"fig3_1": ("fig3_dfc", 1), "fig3_7": ("fig3_dfc", 7), "fig3_35": ("fig3_dfc", 35)}
    cases |= {"mnist_1": ("mnist_dfc", 1), "mnist_7": ("mnist_dfc", 7)}
    results: dict[str, Any] = {}
    for name, (model, members) in cases.items():
        plain_p = _problems(model, members, False, args.device)
        graph_p = _problems(model, members, True, args.device)
        t_plain, s_plain = _time(plain_p, args.repeats)
        t_graph, s_graph = _time(graph_p, args.repeats)
        diff = max(float((a.u - b.u).abs().max()) for a, b in zip(s_graph, s_plain, strict=True))
        results[name] = {
            "members": members,
            "plain_s": t_plain,
            "graphs_s": t_graph,
            "speedup": t_plain / t_graph,
            "max_u_diff": diff,
        }
        print(
            f"{name:>9}: plain {t_plain:.4f} s  graphs {t_graph:.4f} s  "
            f"x{t_plain / t_graph:.2f}  max |du| {diff:.1e}",
            flush=True,
        )
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": results}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
