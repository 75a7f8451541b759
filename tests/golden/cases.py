"""The golden cases: what ``make_golden.py`` records and ``test_golden.py`` recomputes.

Every case is a function of nothing (fixed seeds, float64) that calls the public API only
(``neurodfc.config.load_config`` with ``--set``-style overrides, ``DFCSystem.from_config``,
``neurodfc.solve.simulate``, ``neurodfc.methods.get_method(...).update``,
``neurodfc.methods.feedback_gradients``, the Strong-DFC methods' ``update`` and
``feedback_gradients``, ``neurodfc.training.train``) and returns named tensors. :func:`digest`
turns them into the arrays stored in the corpus: small tensors whole, large ones (more than
:data:`FULL_MAX` elements, e.g. the 256 x 784 MNIST weights) as their projections on fixed
weight patterns and a strided sample, so that a change of any single element still shows and
the corpus stays small.

The configs are read from ``models/`` beside this checkout (``REPO/models``), so the script and
the test always run the same definitions on the same files.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
BATCH = 4
"""Samples per case (seeded random inputs of the config's shape)."""
FULL_MAX = 256
"""Tensors with at most this many elements are stored whole; larger ones are summarised."""
N_PROJ = 16
"""Projections kept of a summarised tensor."""
SAMPLE = 32
"""Elements of the strided sample kept of a summarised tensor."""
SEP = "|"
"""Separates the case name from the array name in the corpus keys."""

Arrays = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``name``, the function ``run`` computing its tensors, and whether it
    reads the MNIST files (``needs_data``; skipped where they are absent)."""

    name: str
    run: Callable[[], Arrays]
    needs_data: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- digest
def _patterns(n: int) -> torch.Tensor:
    """:data:`N_PROJ` fixed weight patterns over ``n`` elements [N_PROJ, n]: all ones, then
    ``cos(2 pi frac(j a_k))`` with incommensurate ``a_k = frac(sqrt(p_k))`` (p_k prime)."""
    j = torch.arange(1, n + 1, dtype=torch.float64)
    rows = [torch.ones(n, dtype=torch.float64)]
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)[: N_PROJ - 1]:
        a = math.sqrt(p) % 1.0
        rows.append(torch.cos(2 * math.pi * torch.frac(j * a)))
    return torch.stack(rows)


def digest(raw: Arrays) -> dict[str, np.ndarray]:
    """The arrays stored for a case's tensors ``raw`` (float64 / int64 numpy): a tensor of at
    most :data:`FULL_MAX` elements whole; a larger one as ``#proj`` (its projections on
    :func:`_patterns`: any change of any element moves them) and ``#sample`` (a strided sample
    of :data:`SAMPLE` elements, to show where a difference lies)."""
    out: dict[str, np.ndarray] = {}
    for key, t in raw.items():
        t = t.detach().cpu()
        if not t.is_floating_point():
            out[key] = t.to(torch.int64).numpy()
            continue
        t = t.to(torch.float64)
        if t.numel() <= FULL_MAX:
            out[key] = t.numpy()
            continue
        flat = t.reshape(-1)
        finite = torch.isfinite(flat)
        out[key + "#nonfinite"] = torch.nonzero(~finite).reshape(-1)[:SAMPLE].numpy()
        out[key + "#proj"] = (_patterns(flat.numel()) @ torch.where(finite, flat, 0.0)).numpy()
        out[key + "#sample"] = flat[:: math.ceil(flat.numel() / SAMPLE)].clone().numpy()
    return out


# --------------------------------------------------------------------------- helpers
def _config(model: str, overrides: tuple[str, ...] = ()) -> Any:
    from neurodfc.config import load_config

    return load_config(MODELS / f"{model}.toml", list(overrides))


def _system(cfg: Any) -> Any:
    from neurodfc.system import DFCSystem

    return DFCSystem.from_config(cfg)


def _batch(cfg: Any, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded inputs U[-1, 1] [B, n_0] and labels [B] (cross-entropy) or targets N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    sizes = cfg.network.sizes
    x = torch.rand(BATCH, sizes[0], generator=g, dtype=torch.float64) * 2 - 1
    if cfg.loss.loss == "cross_entropy":
        y = torch.randint(0, sizes[-1], (BATCH,), generator=g)
    else:
        y = torch.randn(BATCH, sizes[-1], generator=g, dtype=torch.float64)
    return x, y


def _gen(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layers(prefix: str, ts: list[torch.Tensor]) -> Arrays:
    return {f"{prefix}.{i}": t for i, t in enumerate(ts)}


def _solution(sol: Any, prefix: str = "sim") -> Arrays:
    """Final state, status and the recorded ``r_L``, ``u`` at the first, middle and last
    recorded times."""
    out: Arrays = {}
    out |= _layers(f"{prefix}.v_final", sol.v_final)
    out |= _layers(f"{prefix}.r_final", sol.r_final)
    out[f"{prefix}.u_final"] = sol.u_final
    out[f"{prefix}.u_int_final"] = sol.u_int_final
    out[f"{prefix}.status"] = sol.status
    k = sol.t.shape[0]
    idx = torch.tensor(sorted({0, k // 2, k - 1}))
    out[f"{prefix}.t_rec"] = sol.t[idx]
    out[f"{prefix}.r_out_rec"] = sol.r_out[idx]
    out[f"{prefix}.u_rec"] = sol.u[idx]
    if sol.v:
        out |= _layers(f"{prefix}.v_rec", [v[idx] for v in sol.v])
    if sol.accumulator is not None:
        out |= _layers(f"{prefix}.acc_W", sol.accumulator.W)
        out |= _layers(f"{prefix}.acc_b", sol.accumulator.b)
        out[f"{prefix}.acc_count"] = torch.tensor(float(sol.accumulator.count))
    if sol.feedback_accumulator is not None:
        out |= _layers(f"{prefix}.acc_Q", sol.feedback_accumulator.W)
        out[f"{prefix}.acc_Q_count"] = torch.tensor(float(sol.feedback_accumulator.count))
    return out


def _update(up: Any, prefix: str = "upd") -> Arrays:
    out: Arrays = {}
    out |= _layers(f"{prefix}.grad_W", up.grad_W)
    out |= _layers(f"{prefix}.grad_b", up.grad_b)
    out[f"{prefix}.loss"] = up.loss
    out[f"{prefix}.output"] = up.output
    if up.status is not None:
        out[f"{prefix}.status"] = up.status
    grad_q = getattr(up, "grad_Q", None)
    if grad_q:
        out |= _layers(f"{prefix}.grad_Q", grad_q)
    return out


def _sleep(system: Any, method: Any, x: torch.Tensor, y: torch.Tensor) -> Arrays:
    """Sleep-phase gradients of Q: the Strong-DFC methods' own feedback phase, else DFC's
    noise-driven sleep phase (:func:`neurodfc.methods.feedback_gradients`)."""
    from neurodfc.methods import feedback_gradients

    if method.name.startswith("strong_dfc"):
        grads = method.feedback_gradients(system, x, y, _gen(11))
    else:
        grads = feedback_gradients(system, x, generator=_gen(11))
    return _layers("fb.grad_Q", grads)


# --------------------------------------------------------------------------- case kinds
def model_case(model: str, overrides: tuple[str, ...] = ()) -> Arrays:
    """A config of ``models/``: the simulation on its own solver (recorded, seeded noise if it
    has any), its method's update, and the sleep-phase gradients when its feedback is learned
    (or the method has its own feedback phase)."""
    from neurodfc.methods import get_method
    from neurodfc.solve import simulate

    cfg = _config(model, overrides)
    system = _system(cfg)
    x, y = _batch(cfg)
    out: Arrays = {}
    with torch.no_grad():
        r_target = system.target(x, y)
        out |= _solution(simulate(system, x, r_target, generator=_gen(3)))
    method = get_method(cfg.method.name)
    out |= _update(method.update(system, x, y, generator=_gen(5)))
    if cfg.feedback.learned:
        out |= _sleep(system, method, x, y)
    return out


def sim_case(model: str, overrides: tuple[str, ...] = (), **kwargs: Any) -> Arrays:
    """``simulate`` on a config with keyword arguments ``kwargs`` (``accumulate``,
    ``record_v``, ``accumulate_feedback``, ``apical_tau`` ...); noise from a seeded generator."""
    from neurodfc.solve import simulate

    cfg = _config(model, overrides)
    system = _system(cfg)
    x, y = _batch(cfg)
    with torch.no_grad():
        r_target = system.target(x, y)
        sol = simulate(system, x, r_target, generator=_gen(3), **kwargs)
    return _solution(sol)


def method_case(model: str, overrides: tuple[str, ...] = ()) -> Arrays:
    """The update of the config's method (set by ``overrides``), seeded noise generator."""
    from neurodfc.methods import get_method

    cfg = _config(model, overrides)
    system = _system(cfg)
    x, y = _batch(cfg)
    return _update(get_method(cfg.method.name).update(system, x, y, generator=_gen(5)))


def sleep_case(model: str, overrides: tuple[str, ...] = ()) -> Arrays:
    """The sleep-phase (feedback-learning) gradients of Q of the config's method."""
    from neurodfc.methods import get_method

    cfg = _config(model, overrides)
    system = _system(cfg)
    x, y = _batch(cfg)
    return _sleep(system, get_method(cfg.method.name), x, y)


def strong_case(model: str, overrides: tuple[str, ...] = ()) -> Arrays:
    """A Strong-DFC config: its update (with ``grad_Q`` for the single-phase method) and its
    feedback-only phase, both on seeded generators."""
    from neurodfc.methods import get_method

    cfg = _config(model, overrides)
    system = _system(cfg)
    x, y = _batch(cfg)
    method = get_method(cfg.method.name)
    out = _update(method.update(system, x, y, generator=_gen(5)))
    out |= _sleep(system, method, x, y)
    return out


def train_case(model: str, overrides: tuple[str, ...] = ()) -> Arrays:
    """A very short ``train`` into a temporary folder: the final weights (``W``, ``b``, ``Q``)
    and the logged per-epoch metrics (wall time excluded)."""
    from neurodfc.training import train

    cfg = _config(model, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        res = train(cfg, Path(tmp) / "run", quiet=True, log=lambda line: None)
    out: Arrays = {f"weights.{k}": v for k, v in res.system.state_dict().items()}
    for name, var in res.metrics.data_vars.items():
        if name == "wall_time" or "time" in str(name):
            continue
        arr = np.asarray(var.values)
        if arr.dtype.kind in "fiub":
            out[f"metrics.{name}"] = torch.as_tensor(arr.astype(np.float64))
    return out


# --------------------------------------------------------------------------- the cases
# the 36 configs of models/ when the corpus was recorded (a config added later has no
# recorded behaviour to keep; add it here together with a regenerated corpus)
MODEL_NAMES = (
    "fig1d",
    "fig3_dfa",
    "fig3_dfc",
    "fig3_dfc_ss",
    "fig3_dfc_ssa",
    "fig3_fixed_dfc",
    "fig3_fixed_dfc_ss",
    "fig3_fixed_dfc_ssa",
    "fmnist_bp",
    "fmnist_dfa",
    "fmnist_dfc",
    "fmnist_dfc_ss",
    "fmnist_dfc_ssa",
    "fmnist_fixed_dfc",
    "fmnist_fixed_dfc_ss",
    "fmnist_fixed_dfc_ssa",
    "mnist_auto_bp",
    "mnist_auto_dfa",
    "mnist_auto_dfc",
    "mnist_auto_dfc_ss",
    "mnist_auto_dfc_ssa",
    "mnist_auto_fixed_dfc",
    "mnist_auto_fixed_dfc_ss",
    "mnist_auto_fixed_dfc_ssa",
    "mnist_bp",
    "mnist_dfa",
    "mnist_dfc",
    "mnist_dfc_ss",
    "mnist_dfc_ssa",
    "mnist_fixed_dfc",
    "mnist_fixed_dfc_ss",
    "mnist_fixed_dfc_ssa",
    "strong_fmnist_single",
    "strong_fmnist_two_phase",
    "strong_mnist_single",
    "strong_mnist_two_phase",
)

# overrides of the model cases: steps shortened where one case would take more than about
# 2 s; every sample is counted where, on these random inputs, none converges (the update of
# the config's own setting would be exactly zero and test nothing)
_COUNT_ALL = ("method.include_non_converged=true",)
_AUTO_SHORT = ("simulation.steps=500",)
MODEL_OVERRIDES: dict[str, tuple[str, ...]] = {
    "mnist_auto_dfc": _AUTO_SHORT,
    "mnist_auto_dfc_ss": _AUTO_SHORT,
    "mnist_auto_fixed_dfc": _AUTO_SHORT,
    "mnist_auto_fixed_dfc_ss": (*_AUTO_SHORT, *_COUNT_ALL),
    "mnist_auto_bp": _AUTO_SHORT,  # its (default) etdrk4 simulation
    "mnist_auto_dfa": _AUTO_SHORT,
    "fmnist_dfc": _COUNT_ALL,
    "fmnist_dfc_ss": _COUNT_ALL,
    "mnist_fixed_dfc": _COUNT_ALL,
    "mnist_fixed_dfc_ss": _COUNT_ALL,
}

FIG3 = "fig3_dfc"
MNIST = "mnist_dfc"
MNIST_SHORT = ("simulation.steps=200", "method.include_non_converged=true")


def _variants() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, fn: Callable[..., Arrays], *args: Any, **kw: Any) -> None:
        cases.append(Case(name, partial(fn, *args, **kw)))

    # --- every method and the sleep phase on two representative configs
    for model, base in ((FIG3, ()), (MNIST, MNIST_SHORT)):
        for meth in ("dfc", "dfc_ss", "dfc_ssa", "mn", "gn", "bp", "dfa"):
            extra: tuple[str, ...] = ()
            if meth in ("mn", "gn", "bp"):
                extra = ("feedback.learned=false",)
            if meth == "gn":
                extra = (*extra, "method.gamma=0.1")
            add(
                f"method/{model}/{meth}", method_case, model, (*base, f"method.name={meth}", *extra)
            )
        add(
            f"method/{model}/dfc_voltage_difference",
            method_case,
            model,
            (*base, "method.rule=voltage_difference"),
        )
        add(
            f"method/{model}/dfc_derivative_matrix",
            method_case,
            model,
            (*base, "method.rule=derivative_matrix"),
        )
        add(f"sleep/{model}", sleep_case, model, base)
    # samples left out of the update: 3 of 4 do not converge (DFC re-simulates the kept one)
    add("method/fig1d/dfc_ss", method_case, "fig1d", ("method.name=dfc_ss",))
    add("method/fig1d/dfc_etdrk4", method_case, "fig1d", ("simulation.solver=etdrk4",))

    # --- the reference Euler scheme and its flags (fig3_dfc)
    ref = "simulation.solver=euler_reference"
    flags = {
        "default": (),
        "no_inst_transmission": ("simulation.inst_transmission=false",),
        "proactive": ("simulation.proactive_controller=true",),
        "inst_system_dynamics": ("simulation.inst_system_dynamics=true", "controller.k_p=0.5"),
        "inst_system_dynamics_diverging": ("simulation.inst_system_dynamics=true",),
        "proactive_inst_system": (
            "simulation.inst_system_dynamics=true",
            "simulation.proactive_controller=true",
            "controller.k_p=0.5",
        ),
        "apical_tau": ("apical.tau=0.05",),
        "noise": ("noise.sigma=0.01", "noise.sigma_output=0.005"),
        "paper_leak": ("controller.leak=paper",),
        "early_stop": ("simulation.early_stop=true",),
    }
    for label, ov in flags.items():
        add(f"sim/{FIG3}/euler_reference/{label}", sim_case, FIG3, (ref, *ov))
    add(f"sim/{FIG3}/euler_reference/record_v", sim_case, FIG3, (ref,), record_v=True)
    add(f"sim/{FIG3}/euler_reference/apical_tau_arg", sim_case, FIG3, (ref,), apical_tau=0.02)
    for rule in ("nonlinear_difference", "voltage_difference", "derivative_matrix"):
        add(
            f"sim/{FIG3}/euler_reference/accumulate_{rule}", sim_case, FIG3, (ref,), accumulate=rule
        )
    add(
        f"sim/{FIG3}/euler_reference/accumulate_noise",
        sim_case,
        FIG3,
        (ref, "noise.sigma=0.01", "apical.tau=0.05"),
        accumulate="nonlinear_difference",
    )
    add(
        f"sim/{FIG3}/euler_reference/accumulate_feedback",
        sim_case,
        FIG3,
        (ref, "noise.sigma=0.01"),
        accumulate_feedback=True,
    )
    add(
        f"sim/{MNIST}/euler_reference/record_v_accumulate",
        sim_case,
        MNIST,
        MNIST_SHORT,
        record_v=True,
        accumulate="nonlinear_difference",
    )

    # --- the continuous-time solvers (rk4 and dopri5 on shorter horizons: they cost more)
    solvers = {
        "etdrk4": (("simulation.solver=etdrk4",), ()),
        "dopri5": (("simulation.solver=dopri5",), ("simulation.steps=100",)),
        "rk4": (("simulation.solver=rk4", "simulation.steps=300"), ("simulation.steps=100",)),
    }
    for solver, (ov, mnist_ov) in solvers.items():
        add(
            f"sim/{FIG3}/{solver}",
            sim_case,
            FIG3,
            ov,
            record_v=True,
            accumulate="nonlinear_difference",
        )
        add(f"method/{FIG3}/dfc/{solver}", method_case, FIG3, ov)
        add(f"method/{FIG3}/dfc_ss/{solver}", method_case, FIG3, (*ov, "method.name=dfc_ss"))
        add(
            f"sim/{MNIST}/{solver}",
            sim_case,
            MNIST,
            (*MNIST_SHORT, *ov, *mnist_ov),
            accumulate="nonlinear_difference",
        )
    add(
        f"method/{MNIST}/dfc/etdrk4", method_case, MNIST, (*MNIST_SHORT, "simulation.solver=etdrk4")
    )
    add(f"sim/{FIG3}/etdrk4/no_record", sim_case, FIG3, ("simulation.solver=etdrk4",), record=False)
    add(
        f"sim/{FIG3}/etdrk4/apical_tau",
        sim_case,
        FIG3,
        ("simulation.solver=etdrk4", "apical.tau=0.05"),
        accumulate="voltage_difference",
    )
    add(
        f"sim/{FIG3}/etdrk4/tolerances",
        sim_case,
        FIG3,
        ("simulation.solver=etdrk4", "simulation.rtol=1e-6", "simulation.max_step=0.5"),
        accumulate="derivative_matrix",
    )

    # --- Strong-DFC: each config with white and OU noise, plus the update variants
    for model in (
        "strong_mnist_single",
        "strong_mnist_two_phase",
        "strong_fmnist_single",
        "strong_fmnist_two_phase",
    ):
        for noise in ("white", "ou"):
            add(
                f"strong/{model}/{noise}",
                strong_case,
                model,
                ("simulation.steps=200", f"strong.noise={noise}"),
            )
    add(
        "strong/strong_mnist_two_phase/steady_state",
        strong_case,
        "strong_mnist_two_phase",
        ("simulation.steps=200", "strong.update=steady_state", "noise.sigma=0.004"),
    )
    add(
        "strong/strong_mnist_single/nudged",
        strong_case,
        "strong_mnist_single",
        (
            "simulation.steps=200",
            "strong.target=nudged",
            "strong.error=difference",
            "strong.high_pass=false",
            "strong.sleep_target=feedforward",
        ),
    )
    return cases


def _trainings() -> list[Case]:
    fig3 = (
        "data.n_train=64",
        "data.n_val=16",
        "data.n_test=16",
        "training.epochs=1",
        "training.batch_size=32",
        "feedback_learning.pretrain_epochs=1",
        "feedback_learning.extra_epochs=1",
        "simulation.steps=300",
    )
    mnist = (
        "data.max_train_samples=48",
        "data.max_test_samples=32",
        "training.epochs=1",
        "training.batch_size=16",
        "feedback_learning.pretrain_epochs=1",
        "feedback_learning.extra_epochs=1",
    )
    strong = (
        "data.max_train_samples=16",
        "data.max_test_samples=16",
        "training.epochs=1",
        "training.batch_size=8",
        "simulation.steps=100",
        "feedback_learning.steps=100",
    )
    return [
        Case(f"train/{FIG3}", partial(train_case, FIG3, fig3)),
        Case("train/mnist_dfc_ssa", partial(train_case, "mnist_dfc_ssa", mnist), True),
        Case("train/strong_mnist_single", partial(train_case, "strong_mnist_single", strong), True),
    ]


def all_cases() -> list[Case]:
    """Every golden case, in corpus order."""
    cases = [
        Case(f"model/{m}", partial(model_case, m, MODEL_OVERRIDES.get(m, ()))) for m in MODEL_NAMES
    ]
    return cases + _variants() + _trainings()


def data_available() -> bool:
    """Whether the MNIST files are reachable (``NEURODFC_DATA`` or ``../shared/data``)."""
    env = os.environ.get("NEURODFC_DATA") or os.environ.get("NEURODFC_TEST_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p.is_dir()
