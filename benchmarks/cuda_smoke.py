"""CUDA smoke test: simulate and train a few batches on the GPU and compare with CPU float64.

Usage::

    python benchmarks/cuda_smoke.py [--device cuda] [--batches 3]

Checks, on a seeded MNIST-shaped batch at the Table-1 DFC settings (784-256-256-256-10):

* the reference Euler scheme (DFC update and DFC-SS state), the continuous-time path
  (``etdrk4``), the closed-form linear response (``linear_response``, DFC at order 2, DFC-SS
  at order 1) and the sleep-phase statistics on ``--device`` in float64 against CPU float64
  (relative difference of the updates; the noisy sleep phase draws different normals on the
  GPU, so only its scale is compared);
* float32 on the device against CPU float64 (reported, not asserted: float32 is known to be
  inaccurate at these settings, see docs/performance.md);
* a few training steps of DFC, DFC-SS and DFC-SSA with their sleep batches run and stay finite;
* timings per batch on the device.

Exits with status 1 if a check fails. Not a test (needs a GPU); ``benchmarks/gpu_check.sh``
runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurodfc.config import load_config  # noqa: E402
from neurodfc.methods import feedback_gradients, get_method  # noqa: E402
from neurodfc.system import DFCSystem  # noqa: E402
from neurodfc.training import clip_gradients, forward_lr, make_optimizer  # noqa: E402

CONT = ["simulation.solver=etdrk4", "simulation.rtol=2e-4", "simulation.atol=1e-12"]
# the closed-form linear response (issue 15), every sample in closed form
LR = ["simulation.solver=linear_response", "simulation.linear_response_tol=1.0"]


def _system(model: str, device: str, dtype: str, extra: list[str]) -> DFCSystem:
    cfg = load_config(
        ROOT / "models" / f"{model}.toml",
        [f"device={device}", f"dtype={dtype}", "method.include_non_converged=true", *extra],
    )
    return DFCSystem.from_config(cfg)


def _update(
    model: str, device: str, dtype: str, extra: list[str], x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, float]:
    system = _system(model, device, dtype, extra)
    method = get_method(system.cfg.method.name)
    xd, yd = x.to(device=device, dtype=system.dtype), y.to(device)
    method.update(system, xd, yd)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    up = method.update(system, xd, yd)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return up.flat().double().cpu(), time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", type=int, default=3)
    a = p.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(128, 784, generator=g, dtype=torch.float64) - 0.1307) / 0.3081
    y = torch.randint(0, 10, (128,), generator=g)
    failures: list[str] = []

    def check(name: str, err: float, tol: float) -> None:
        ok = err < tol
        print(f"{'ok ' if ok else 'FAIL'} {name}: rel diff {err:.2e} (tol {tol:.0e})")
        if not ok:
            failures.append(name)

    def rel(u: torch.Tensor, v: torch.Tensor) -> float:
        return float((u - v).norm() / v.norm())

    cases = [
        ("dfc reference scheme", "mnist_dfc", ["simulation.solver=euler_reference"], 1e-9),
        ("dfc_ss reference scheme", "mnist_dfc_ss", ["simulation.solver=euler_reference"], 1e-9),
        ("dfc etdrk4", "mnist_dfc", CONT, 1e-7),
        ("dfc_ss etdrk4", "mnist_dfc_ss", CONT, 1e-7),
        ("dfc_ssa", "mnist_dfc_ssa", [], 1e-9),
        ("dfc linear_response order 2", "mnist_dfc", [*LR, "simulation.order=2"], 1e-9),
        ("dfc_ss linear_response order 1", "mnist_dfc_ss", [*LR, "simulation.order=1"], 1e-9),
    ]
    for name, model, extra, tol in cases:
        ref, t_cpu = _update(model, "cpu", "float64", extra, x, y)
        dev, t_dev = _update(model, a.device, "float64", extra, x, y)
        check(f"{name} float64 {a.device} vs cpu", rel(dev, ref), tol)
        f32, t32 = _update(model, a.device, "float32", extra, x, y)
        print(
            f"     {name}: cpu {t_cpu:.3f} s, {a.device} f64 {t_dev:.3f} s, f32 {t32:.3f} s; "
            f"float32 rel diff {rel(f32, ref):.2e} (informational)"
        )

    # sleep phase: same statistics, different normals on the device
    cpu_sys = _system("mnist_dfc", "cpu", "float64", [])
    dev_sys = _system("mnist_dfc", a.device, "float64", [])
    gq_cpu = feedback_gradients(cpu_sys, x, torch.Generator().manual_seed(1))
    gq_dev = feedback_gradients(dev_sys, x.to(a.device), torch.Generator().manual_seed(1))
    ratio = float(torch.cat([q.flatten() for q in gq_dev]).norm().cpu()) / float(
        torch.cat([q.flatten() for q in gq_cpu]).norm()
    )
    check("sleep gradient scale (device/cpu - 1)", abs(ratio - 1.0), 0.5)

    # a few training steps with sleep batches
    for model, extra in (("mnist_dfc", CONT), ("mnist_dfc_ss", CONT), ("mnist_dfc_ssa", [])):
        system = _system(model, a.device, "float64", extra)
        cfg, net = system.cfg, system.network
        tc, fl = cfg.training, cfg.feedback_learning
        params = [*net.W, *net.b]
        opt = make_optimizer(params, tc.optimizer, forward_lr(cfg), betas=tc.betas, eps=tc.eps)
        fb_opt = make_optimizer(list(net.Q), fl.optimizer, fl.lr, betas=fl.betas, eps=fl.eps)
        method = get_method(cfg.method.name)
        gen = torch.Generator().manual_seed(2)
        t0 = time.perf_counter()
        finite = True
        for k in range(a.batches):
            xb = (x.roll(k, 0)).to(a.device)
            yb = y.roll(k, 0).to(a.device)
            for _ in range(3):
                for q, gq in zip(net.Q, feedback_gradients(system, xb, gen), strict=True):
                    q.grad = gq
                fb_opt.step()
                fb_opt.zero_grad(set_to_none=True)
            up = method.update(system, xb, yb, generator=gen)
            finite &= up.is_finite()
            for w, gw in zip(net.W, up.grad_W, strict=True):
                w.grad = gw
            for b, gb in zip(net.b, up.grad_b, strict=True):
                b.grad = gb
            clip_gradients(params, tc.clip_grad_norm, tc.clip_mode)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        per = (time.perf_counter() - t0) / a.batches
        print(f"{'ok ' if finite else 'FAIL'} train {model}: {per:.3f} s per batch (+3 sleep)")
        if not finite:
            failures.append(f"train {model}")
    if failures:
        print("FAILED:", ", ".join(failures))
        return 1
    print("all CUDA smoke checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
