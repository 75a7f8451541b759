"""Per-method cost of one MNIST training step at the Table-1 settings, measured in one run.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/methods.py [--quick] --out FILE.json

Every method runs in its own subprocess (so ``peak_rss_mb``, the ``ru_maxrss`` of that process,
is per method) on the same seeded batches (real MNIST from ``NEURODFC_DATA`` / ``../shared/data``
when present, else a seeded MNIST-shaped batch). Per method name the JSON holds

* ``seconds_per_batch``: median wall time of one training step (update, clipping, optimiser
  step; ``sleep``: one sleep-phase batch with its Q step), ``ratio_to_bp``;
* ``peak_rss_mb``;
* simulated methods: ``steps_run`` and ``nfe`` (vector-field evaluations), ``flop_per_batch``
  (the work the method needs, see :func:`needed_flop`), ``matmul_gflops`` (matmul rate measured
  in the same process at the same shapes), ``matmul_fraction`` (achieved rate of the needed work
  / matmul rate) and ``rel_error_vs_limit`` (relative distance of the update to the dt -> 0
  limit of the reference Euler scheme, estimated by Richardson extrapolation from Euler runs at
  dt, dt/2, dt/4 with the same t_max);
* methods that learn Q: ``ratio_to_bp_with_sleep`` (step + ``--sleep-batches`` sleep batches).

``dfc`` and ``dfc_ss`` run the continuous-time path (``simulation.solver = 'etdrk4'``, see
``CONTINUOUS_DFC*``; ``--reference`` runs the model files as they are),
``dfc_reference_scheme`` and ``dfc_ss_reference_scheme`` the reference Euler scheme.
``--memory`` adds ``memory``: the peak RSS of DFC training on MNIST (the whole data set loaded,
a few training and sleep batches) at 500 and 1000 steps.

``--baseline DIR`` also runs every worker against another checkout of the package (``DIR``
holds a ``neurodfc/`` folder), each method right after its run with the package next to this
script, and prints ``new / baseline`` per method (seconds per batch, peak RSS) in the same run;
the JSON gets ``baseline_methods`` and each method ``ratio_to_baseline``. The limits are always
computed with the package next to this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

# the continuous-time path (neurodfc.integrators) at about 1e-4 relative error on MNIST
CONTINUOUS_DFC = ["simulation.solver=etdrk4", "simulation.rtol=2e-4", "simulation.atol=1e-12"]
CONTINUOUS_DFC_SS = [
    "simulation.solver=etdrk4",
    "simulation.rtol=1e-2",
    "simulation.atol=1e-12",
    "simulation.max_step=0.5",
]
REFERENCE = ["simulation.solver=euler_reference"]
# the closed-form linear response, every sample in closed form (no fallback); DFC at order 2
# (its sums corrected by their first neglected term), DFC-SS at order 1 (nothing to correct)
LINEAR_RESPONSE = [
    "simulation.solver=linear_response",
    "simulation.linear_response_tol=1.0",
    "simulation.order=1",
]
LINEAR_RESPONSE_2 = [*LINEAR_RESPONSE[:2], "simulation.order=2"]
# name -> (model file, extra config overrides)
METHODS: dict[str, tuple[str, list[str]]] = {
    "bp": ("mnist_bp.toml", []),
    "dfa": ("mnist_dfa.toml", []),
    "dfc": ("mnist_dfc.toml", CONTINUOUS_DFC),
    "dfc_ss": ("mnist_dfc_ss.toml", CONTINUOUS_DFC_SS),
    "dfc_ssa": ("mnist_dfc_ssa.toml", []),
    "sleep": ("mnist_dfc.toml", []),
    "dfc_reference_scheme": ("mnist_dfc.toml", REFERENCE),
    "dfc_ss_reference_scheme": ("mnist_dfc_ss.toml", REFERENCE),
    "dfc_linear_response": ("mnist_dfc.toml", LINEAR_RESPONSE_2),
    "dfc_ss_linear_response": ("mnist_dfc_ss.toml", LINEAR_RESPONSE),
}
SIMULATED = (
    "dfc",
    "dfc_ss",
    "dfc_reference_scheme",
    "dfc_ss_reference_scheme",
    "dfc_linear_response",
    "dfc_ss_linear_response",
)


# ------------------------------------------------------------------------------- helpers
def _config(name: str, common: list[str], extra: list[str]) -> Any:
    from neurodfc.config import load_config

    model, own = METHODS[name]
    return load_config(MODELS / model, [*common, *own, *extra])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _flat(up: Any) -> Any:
    import torch

    return torch.cat([g.reshape(-1) for g in [*up.grad_W, *up.grad_b]])


def matmul_rate(sizes: list[int], batch: int, dtype: Any, device: str, seconds: float) -> float:
    """FLOP/s of the matmuls a DFC step needs, at its shapes, measured here and now:
    ``[B, n_{i-1}] @ [n_{i-1}, n_i]`` (i >= 2), ``[B, n_L] @ [n_L, N]`` and the update
    ``[n_i, B] @ [B, n_{i-1}]``, weighted by their FLOP."""
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    N, nL = sum(sizes[1:]), sizes[-1]
    cases = []
    for i in range(2, len(sizes)):
        a = torch.randn(batch, sizes[i - 1], generator=g, dtype=dtype, device=device)
        w = torch.randn(sizes[i], sizes[i - 1], generator=g, dtype=dtype, device=device)
        d = torch.randn(batch, sizes[i], generator=g, dtype=dtype, device=device)
        cases.append((a, w.T, torch.empty(batch, sizes[i], dtype=dtype, device=device)))
        cases.append((d.T, a, torch.empty(sizes[i], sizes[i - 1], dtype=dtype, device=device)))
    u = torch.randn(batch, nL, generator=g, dtype=dtype, device=device)
    q = torch.randn(N, nL, generator=g, dtype=dtype, device=device)
    cases.append((u, q.T, torch.empty(batch, N, dtype=dtype, device=device)))
    flop = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in cases)

    def once() -> None:
        for a, b, o in cases:
            torch.mm(a, b, out=o)

    once()
    _sync(device)
    reps, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < seconds or reps < 20:
        once()
        reps += 1
        if reps % 10 == 0:
            _sync(device)
            elapsed = time.perf_counter() - t0
    _sync(device)
    elapsed = time.perf_counter() - t0
    return flop * reps / elapsed


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def needed_flop(sizes: list[int], batch: int, info: dict[str, float], kind: str) -> float:
    """The matmul work a method really needs for one batch (FLOP).

    Per vector-field evaluation (or Euler step): the layers 2..L, ``W_i r_{i-1}``, and the
    feedback ``Q u`` (``W_1 r_0`` is constant: once). ``dfc`` adds, per accumulated time point,
    the running update ``d_i^T r_{i-1}`` of layers 2..L (layer 1: ``sum_t d_1`` times ``r_0``
    once). ``info`` holds ``nfe`` and ``acc_points`` (accumulated time points)."""
    B, N, nL = batch, sum(sizes[1:]), sizes[-1]
    dyn = sum(2 * B * sizes[i - 1] * sizes[i] for i in range(2, len(sizes))) + 2 * B * nL * N
    acc = sum(2 * B * sizes[i - 1] * sizes[i] for i in range(2, len(sizes)))
    once = 2 * B * sizes[0] * sizes[1]
    nfe = info.get("nfe", 0.0)
    work = once + nfe * dyn
    if kind == "dfc":
        work += info.get("acc_points", nfe) * acc + once
    return float(work)


# ------------------------------------------------------------------------------- worker
def _train_step(method: Any, system: Any, cfg: Any, opt: Any, x: Any, y: Any, gen: Any) -> Any:
    from neurodfc.training import clip_gradients

    net = system.network
    up = method.update(system, x, y, generator=gen)
    for w, g in zip(net.W, up.grad_W, strict=True):
        w.grad = g
    if net.has_bias:
        for b, g in zip(net.b, up.grad_b, strict=True):
            b.grad = g
    params = [*net.W, *(net.b if net.has_bias else [])]
    clip_gradients(params, cfg.training.clip_grad_norm, cfg.training.clip_mode)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return up


def _sleep_step(system: Any, cfg: Any, opt: Any, x: Any, gen: Any) -> None:
    import torch

    from neurodfc.methods import feedback_gradients

    net = system.network
    q_params = list(net.Q)
    grads = feedback_gradients(system, x, gen)
    for q, g in zip(q_params, grads, strict=True):
        q.grad = g
    if cfg.feedback_learning.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(q_params, cfg.feedback_learning.clip_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one method (run in its own process)."""
    import torch

    from neurodfc.methods import get_method
    from neurodfc.system import DFCSystem
    from neurodfc.training import forward_lr, make_optimizer

    torch.set_num_threads(spec["threads"])
    name = spec["name"]
    device = spec["device"]
    cfg = _config(name, spec["common"], spec.get("extra", []))
    data = torch.load(spec["data"])
    xs = data["x"].to(device=device, dtype=torch.float64)
    ys = data["y"].to(device)
    if cfg.dtype == "float32":
        xs = xs.float()
    out: dict[str, Any] = {"name": name, "device": device, "dtype": cfg.dtype}
    out["torch"] = torch.__version__
    system = DFCSystem.from_config(cfg)
    net = system.network
    gen = torch.Generator().manual_seed(1)

    if name in SIMULATED and spec.get("limit"):
        lim = torch.load(spec["limit"])
        m = get_method(cfg.method.name)
        ecfg = cfg.model_copy(
            update={"method": cfg.method.model_copy(update={"include_non_converged": True})}
        )
        esys = DFCSystem(net, ecfg)
        nb = lim["n"]
        up = m.update(esys, xs[0, :nb], ys[0, :nb], generator=gen)
        flat = _flat(up).to(torch.float64).cpu()
        ref = lim[cfg.method.name]
        out["rel_error_vs_limit"] = float((flat - ref).norm() / ref.norm())
        out["error_batch"] = nb

    if name == "sleep":
        fl = cfg.feedback_learning
        opt = make_optimizer(
            list(net.Q), fl.optimizer, fl.lr, betas=fl.betas, eps=fl.eps,
            weight_decay=fl.weight_decay,
        )  # fmt: skip
        step = lambda k: _sleep_step(system, cfg, opt, xs[k], gen)  # noqa: E731
    else:
        tc = cfg.training
        opt = make_optimizer(
            [*net.W, *(net.b if net.has_bias else [])], tc.optimizer, forward_lr(cfg),
            betas=tc.betas, eps=tc.eps, weight_decay=tc.weight_decay, momentum=tc.momentum,
        )  # fmt: skip
        method = get_method(cfg.method.name)
        last: dict[str, Any] = {}

        def step(k: int) -> None:
            last["up"] = _train_step(method, system, cfg, opt, xs[k], ys[k], gen)

    n = xs.shape[0]
    times = []
    warmup = 0 if spec.get("no_warmup") else 1
    for k in range(spec["repeats"] + warmup):
        _sync(device)
        t0 = time.perf_counter()
        step(k % n)
        _sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    out["seconds_per_batch"] = statistics.median(times)
    out["seconds_min"] = min(times)
    out["repeats"] = len(times)
    if name in SIMULATED:
        info = dict(last["up"].info)
        sim = cfg.simulation
        steps = sim.n_steps - 1
        info.setdefault("nfe", float(steps))
        info.setdefault("steps_run", float(steps))
        info.setdefault("acc_points", info["nfe"])
        out["steps_run"] = info["steps_run"]
        out["nfe"] = info["nfe"]
        kind = "dfc" if cfg.method.name == "dfc" else "ss"
        flop = needed_flop(net.sizes, xs.shape[1], info, kind)
        rate = matmul_rate(net.sizes, xs.shape[1], net.W[0].dtype, device, 1.0)
        out["flop_per_batch"] = flop
        out["matmul_gflops"] = rate / 1e9
        out["achieved_gflops"] = flop / out["seconds_per_batch"] / 1e9
        out["matmul_fraction"] = flop / out["seconds_per_batch"] / rate
        out["solver"] = sim.solver
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of DFC training on MNIST: the data loaded as the trainer does, then
    ``spec['batches']`` training steps and one sleep batch (run in its own process)."""
    import torch

    from neurodfc.training import Trainer, batches

    torch.set_num_threads(spec["threads"])
    cfg = _config(spec["name"], spec["common"], spec.get("extra", []))
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp), quiet=True, log=lambda _m: None)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for k, (xb, yb) in enumerate(batches(tr.data.train, cfg.training.batch_size, gen)):
            if k == 0:
                _sleep_step(tr.system, cfg, tr.fb_opt, xb, tr.noise_gen)
            _train_step(tr.method, tr.system, cfg, tr.opt, xb, yb, tr.noise_gen)
            if k + 1 >= spec["batches"]:
                break
        seconds = time.perf_counter() - t0
    return {
        "name": spec["name"],
        "steps": cfg.simulation.n_steps,
        "solver": cfg.simulation.solver,
        "batches": spec["batches"],
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
    }


def limit_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The dt -> 0 limit of the DFC and DFC-SS updates (reference Euler at dt, dt/2, dt/4,
    second-order Richardson extrapolation), saved to ``spec['out']``."""
    import torch

    from neurodfc.methods import get_method
    from neurodfc.system import DFCSystem

    torch.set_num_threads(spec["threads"])
    data = torch.load(spec["data"])
    nb = spec["error_batch"]
    res: dict[str, Any] = {"n": nb}
    for name in ("dfc", "dfc_ss"):
        cfg = _config(name, spec["common"], ["simulation.solver=euler_reference"])
        sim = cfg.simulation
        x = data["x"][0, :nb].to(device=spec["device"], dtype=torch.float64)
        y = data["y"][0, :nb].to(spec["device"])
        if cfg.dtype == "float32":
            x = x.float()
        ups = []
        for k in (1, 2, 4):
            c = cfg.model_copy(
                update={
                    "simulation": sim.model_copy(
                        update={"dt": sim.dt / k, "steps": (sim.n_steps - 1) * k + 1}
                    ),
                    "method": cfg.method.model_copy(update={"include_non_converged": True}),
                }
            )
            up = get_method(name).update(DFCSystem.from_config(c), x, y)
            ups.append(_flat(up).to(torch.float64).cpu())
        r1 = 2 * ups[1] - ups[0]
        r2 = 2 * ups[2] - ups[1]
        res[name] = (4 * r2 - r1) / 3
        res[name + "_euler_dt_error"] = float((ups[0] - res[name]).norm() / res[name].norm())
        res[name + "_richardson_spread"] = float((r2 - res[name]).norm() / res[name].norm())
    torch.save(res, spec["out"])
    return {k: v for k, v in res.items() if isinstance(v, float | int)}


# ------------------------------------------------------------------------------- parent
def prepare_data(spec: dict[str, Any]) -> dict[str, Any]:
    """Write ``spec['n_batches']`` batches of ``spec['batch']`` samples to ``spec['out']``."""
    import torch

    path, n_batches, batch = Path(spec["out"]), spec["n_batches"], spec["batch"]

    source = "synthetic"
    try:
        from neurodfc.data.datasets import load_dataset

        ds = load_dataset("mnist", data_dir=os.environ.get("NEURODFC_DATA"), download=False)
        # clone: torch.save of a view writes the whole underlying storage (all of MNIST)
        x = ds.train.x[: n_batches * batch].reshape(n_batches, batch, -1).clone()
        y = ds.train.y[: n_batches * batch].reshape(n_batches, batch).clone()
        source = "mnist"
    except Exception:  # noqa: BLE001 - any failure: fall back to the synthetic batch
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(n_batches, batch, 784, generator=g, dtype=torch.float64) - 0.1307) / 0.3081
        y = torch.randint(0, 10, (n_batches, batch), generator=g)
    torch.save({"x": x, "y": y, "source": source}, path)
    return {"source": source}


def _run(spec: dict[str, Any], env: dict[str, str], mode: str = "--worker") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), mode, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return {"name": spec.get("name"), "error": proc.stderr.strip().splitlines()[-5:]}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _table(results: dict[str, dict[str, Any]], label: str) -> str:
    head = (
        f"{'method':26s} {'s/batch':>9s} {'x BP':>7s} {'+sleep':>7s} {'RSS MB':>7s} "
        f"{'nfe':>6s} {'mm frac':>7s} {'err vs lim':>10s}"
    )
    rows = [label, head]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"{name:26s} ERROR {r['error']}")
            continue

        def f(key: str, fmt: str, r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return format(v, fmt) if isinstance(v, int | float) else "-"

        rows.append(
            f"{name:26s} {f('seconds_per_batch', '9.4f')} {f('ratio_to_bp', '7.1f')} "
            f"{f('ratio_to_bp_with_sleep', '7.1f')} {f('peak_rss_mb', '7.0f')} "
            f"{f('nfe', '6.0f')} {f('matmul_fraction', '7.2f')} "
            f"{f('rel_error_vs_limit', '10.2e')}"
        )
    return "\n".join(rows)


def _baseline_table(
    new: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]], label: str
) -> str:
    """One line per method: seconds per batch (new, baseline), their ratio, peak RSS ratio."""
    lines = [label, f"{'method':26s} {'new s':>9s} {'base s':>9s} {'ratio':>7s} {'RSS ratio':>9s}"]
    for name, r in new.items():
        b = base.get(name, {})
        t_new, t_base = r.get("seconds_per_batch"), b.get("seconds_per_batch")
        m_new, m_base = r.get("peak_rss_mb"), b.get("peak_rss_mb")
        if t_new is None or t_base is None:
            lines.append(f"{name:26s} {r.get('error', b.get('error', 'failed'))}")
            continue
        rss = f"{m_new / m_base:9.3f}" if m_new and m_base else f"{'-':>9s}"
        lines.append(f"{name:26s} {t_new:9.4f} {t_base:9.4f} {t_new / t_base:7.3f} {rss}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 repeat, error on 8 samples (< 1 min)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--repeats", type=int, default=None, help="timed batches per method")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--steps", type=int, default=None, help="override simulation.steps")
    p.add_argument("--set", action="append", default=[], help="extra section.field=value")
    p.add_argument("--sleep-batches", type=int, default=3)
    p.add_argument("--error-batch", type=int, default=None, help="samples for the error check")
    p.add_argument("--no-error", action="store_true", help="skip the dt -> 0 limit")
    p.add_argument("--baseline", type=Path, default=None, help="checkout to measure instead")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--limit", help=argparse.SUPPRESS)
    p.add_argument("--prepare", help=argparse.SUPPRESS)
    p.add_argument("--memory-worker", help=argparse.SUPPRESS)
    p.add_argument("--memory", action="store_true", help="peak RSS of training, 500/1000 steps")
    p.add_argument("--reference", action="store_true", help="dfc/dfc_ss as in the model files")
    a = p.parse_args()
    # the parent never imports torch: ru_maxrss survives fork + exec, so a large parent would
    # leak its peak into every worker's peak_rss_mb
    for flag, fn in (
        ("worker", worker),
        ("limit", limit_worker),
        ("prepare", prepare_data),
        ("memory_worker", memory_worker),
    ):
        arg = getattr(a, flag)
        if arg:
            print(json.dumps(fn(json.loads(arg))))
            return

    repeats = a.repeats if a.repeats is not None else (1 if a.quick else 5)
    common = [f"device={a.device}", *a.set]
    if a.dtype:
        common.append(f"dtype={a.dtype}")
    if a.steps:
        common.append(f"simulation.steps={a.steps}")
    names = [n.strip() for n in a.methods.split(",") if n.strip()]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    shared = ROOT.parent / "shared" / "data"
    if "NEURODFC_DATA" not in env and shared.is_dir():
        env["NEURODFC_DATA"] = str(shared)  # as the Makefile does; benchmarks never download
    base_env = dict(env)
    if a.baseline is not None:
        base_env["PYTHONPATH"] = f"{a.baseline.resolve()}{os.pathsep}{env.get('PYTHONPATH', '')}"
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.pt"
        prep = {"out": str(data), "n_batches": max(repeats + 1, 2), "batch": 128}
        source = _run(prep, env, "--prepare").get("source", "?")
        limit_path = None
        lim_info: dict[str, Any] = {}
        if not a.no_error and any(n in SIMULATED for n in names):
            limit_path = Path(tmp) / "limit.pt"
            nb = a.error_batch or (8 if a.quick else 128)
            spec = {
                "data": str(data),
                "common": common,
                "threads": a.threads,
                "device": a.device,
                "error_batch": nb,
                "out": str(limit_path),
            }
            t0 = time.perf_counter()
            lim_info = _run(spec, env, "--limit")
            if "error" in lim_info:
                print("limit failed:", lim_info["error"], file=sys.stderr)
                limit_path = None
            lim_info["seconds"] = time.perf_counter() - t0
        results: dict[str, dict[str, Any]] = {}
        baseline: dict[str, dict[str, Any]] = {}
        for name in names:
            spec = {
                "name": name,
                "data": str(data),
                "common": common,
                "threads": a.threads,
                "device": a.device,
                "repeats": repeats,
                "limit": str(limit_path) if limit_path else None,
                "extra": REFERENCE if a.reference and name in ("dfc", "dfc_ss") else [],
                # quick: the slow methods are timed on their first call (no warm-up)
                "no_warmup": a.quick and name in SIMULATED,
            }
            results[name] = _run(spec, env)
            if a.baseline is not None:
                baseline[name] = _run(spec, base_env)
        memory: dict[str, Any] = {}
        if a.memory:
            for name in ("dfc_reference_scheme", "dfc"):
                for steps in (500, 1000):
                    spec = {
                        "name": name,
                        "common": common,
                        "threads": a.threads,
                        "batches": 2 if a.quick else 3,
                        "extra": [f"simulation.steps={steps}"],
                    }
                    memory[f"{name}@{steps}"] = _run(spec, env, "--memory-worker")
                    if a.baseline is not None:
                        memory[f"{name}@{steps} (baseline)"] = _run(
                            spec, base_env, "--memory-worker"
                        )
    bp = results.get("bp", {}).get("seconds_per_batch")
    sleep = results.get("sleep", {}).get("seconds_per_batch")
    for name, r in results.items():
        if bp and "seconds_per_batch" in r:
            r["ratio_to_bp"] = r["seconds_per_batch"] / bp
            model = METHODS[name][0]
            learned = name not in ("bp", "dfa", "sleep") and "fixed" not in model
            if sleep and learned:
                r["seconds_with_sleep"] = r["seconds_per_batch"] + a.sleep_batches * sleep
                r["ratio_to_bp_with_sleep"] = r["seconds_with_sleep"] / bp
    for name, r in results.items():
        b = baseline.get(name, {})
        if "seconds_per_batch" in r and "seconds_per_batch" in b:
            r["ratio_to_baseline"] = r["seconds_per_batch"] / b["seconds_per_batch"]
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": a.threads,
        "device": a.device,
        "data": source,
        "quick": a.quick,
        "repeats": repeats,
        "sleep_batches": a.sleep_batches,
        "overrides": common,
        "baseline": str(a.baseline) if a.baseline else None,
        "limit": lim_info,
        "wall_seconds": time.perf_counter() - t_start,
        "parent_peak_rss_mb": _peak_rss_mb(),
        "loadavg": os.getloadavg(),
    }
    print(_table(results, f"# {meta['machine']} x{a.threads} thread(s), {a.device}, {source}"))
    if baseline:
        print(_baseline_table(results, baseline, f"# new / baseline ({a.baseline})"))
    if lim_info:
        print("# limit:", json.dumps(lim_info))
    for key, m in memory.items():
        print(f"# memory {key}: {m.get('peak_rss_mb', m)} MB")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        out = {"meta": meta, "methods": results}
        if memory:
            out["memory"] = memory
        if baseline:
            out["baseline_methods"] = baseline
        a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
