"""Tutorial 6: adding a new controller (a PID) as a component.

The continuous-time closed loop ``neurodfc.system.VectorField`` talks to its controller through
the small protocol ``neurodfc.components.controller.Controller`` (``initial_state``,
``output``, ``rates``). This tutorial writes a PID controller

    u = u_int + k_p e + k_d de/dt,    du_int/dt = k_i (e - alpha u),

with the derivative taken through a first-order filter (time constant tau_d), plugs it into
the vector field, integrates it with torchdiffeq, compares it with the paper's PI controller
(overshoot, settling time) and checks its steady state against Lemma 1: at rest the derivative
term vanishes, so the PID settles on the PI controller's fixed point. Finally it runs the PID,
together with a neuron layer of its own (softplus with its own time constant), through
``neurodfc.solve.simulate`` on three solvers (the reference Euler scheme, ETDRK4, dopri5) and
compares their DFC updates. Last, it trains with both through ``neurodfc train``: a TOML's
``[components]`` section names this file's factories ``make_pid`` and ``softplus_layers``.

    python docs/tutorials/06_pid_controller.py            # full mode (a few minutes)
    python docs/tutorials/06_pid_controller.py --quick    # CI mode (seconds)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchdiffeq import odeint  # noqa: E402

from neurodfc.components.controller import (  # noqa: E402
    Controller,
    ControllerState,
    LinearizedController,
)
from neurodfc.components.neurons import NeuronLayer, RateNeurons  # noqa: E402
from neurodfc.config import (  # noqa: E402
    ApicalConfig,
    ControllerConfig,
    ExperimentConfig,
    FeedbackConfig,
    LossConfig,
    NetworkConfig,
)
from neurodfc.core.loop import feedforward  # noqa: E402
from neurodfc.data import teacher_student  # noqa: E402
from neurodfc.solve import simulate  # noqa: E402
from neurodfc.system import DFCSystem, VectorField, lemma1  # noqa: E402

NAME = "06_pid_controller"
FIGURES = Path(__file__).resolve().parent / "figures"


# ---------------------------------------------------------------------------- the component
@dataclass(frozen=True)
class PIDController:
    """A leaky PID controller with a filtered derivative.

    State ``(e_f, u_int)``, each [B, n_L] (by the protocol's convention the integral state
    comes last). ``e_f`` follows the error through a first-order low-pass filter,
    ``tau_d de_f/dt = e - e_f``, so ``(e - e_f) / tau_d`` approximates ``de/dt`` (exactly as
    ``tau_d -> 0``) without an algebraic loop: ``de/dt`` itself depends on ``u``.
    """

    k_p: float
    k_i: float
    k_d: float
    alpha: float
    tau_d: float = 0.02

    def initial_state(self, e0: torch.Tensor) -> ControllerState:
        # e_f(0) = e(0): no derivative kick at t = 0; u_int(0) = 0 as in DFC
        return (e0.clone(), torch.zeros_like(e0))

    def output(self, e: torch.Tensor, state: ControllerState) -> torch.Tensor:
        e_f, u_int = state
        return u_int + self.k_p * e + self.k_d * (e - e_f) / self.tau_d

    def rates(self, e: torch.Tensor, u: torch.Tensor, state: ControllerState) -> ControllerState:
        e_f, _ = state
        # the reference leak convention: du_int/dt = k_i (e - alpha u); k_i = 1 is DFC's
        return ((e - e_f) / self.tau_d, self.k_i * (e - self.alpha * u))

    # optional (LinearizedController): what the exponential integrator integrates exactly
    def stiff_diagonal(self) -> tuple[float, ...]:
        # de_f/dt = -e_f / tau_d + ...; u_int has no self-decay of its own
        return (-1.0 / self.tau_d, 0.0)

    def feedthrough(self) -> float:
        # du/de = k_p + k_d / tau_d: the fast proportional loop through the output layer
        return self.k_p + self.k_d / self.tau_d


# ---------------------------------------------------------------- a neuron layer of our own
@dataclass(frozen=True)
class Softplus:
    """Softplus rate neurons ``r = log(1 + exp(v))`` with their own time constant ``tau``
    (units of tau_u; None: the config's tau_ratio), a
    :class:`~neurodfc.components.neurons.NeuronLayer`."""

    tau: float | None = None

    def phi(self, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(v)

    def phi_prime(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v)

    def increment(self, a: torch.Tensor):  # noqa: ANN201 (a closure)
        # softplus(a + z) - softplus(a) = log1p(sigmoid(a) expm1(z)): no cancellation, so the
        # exponential integrator's deviation form stays accurate for small z
        s = torch.sigmoid(a)

        def inc(z: torch.Tensor, out: torch.Tensor, work: torch.Tensor | None = None):  # noqa: ANN202
            return torch.log1p(s * torch.expm1(z), out=out)

        return inc


# ------------------------------------------------ factories named by a config's [components]
def make_pid(cfg: ExperimentConfig, k_d: float, tau_d: float = 0.02) -> PIDController:
    """The PID with the config's ``k_p`` and ``alpha`` and derivative gain ``k_d``
    (``[components.controller]``: ``factory = "06_pid_controller:make_pid"``)."""
    return PIDController(
        k_p=cfg.controller.k_p, k_i=1.0, k_d=k_d, alpha=cfg.controller.alpha, tau_d=tau_d
    )


def softplus_layers(cfg: ExperimentConfig, tau: list[float]) -> list[NeuronLayer]:
    """Softplus hidden layers with time constants ``tau`` (one per hidden layer) and the
    config's output activation (``[components.neurons]``)."""
    return [*(Softplus(t) for t in tau), RateNeurons(cfg.network.output_activation)]


TRAIN_TOML = """
name = "pid_softplus"
[network]
sizes = [15, 10, 10, 1]
[controller]
k_p = 2.0
alpha = 0.0015
tau_ratio = 0.2
[feedback]
init = "weight_product"
[loss]
loss = "mse"
lam = 0.05
reduction = "mean"
[simulation]
solver = "etdrk4"
dt = 0.01
t_max = {t_max}
[data]
dataset = "teacher_student"
n_train = {n_train}
n_val = 16
n_test = 32
[method]
name = "dfc"
include_non_converged = true
[training]
epochs = {epochs}
batch_size = 16
optimizer = "sgd"
lr = 0.01

[components.controller]
search_dir = {folder}
factory = "06_pid_controller:make_pid"
kwargs = {{ k_d = 0.1 }}

[components.neurons]
search_dir = {folder}
factory = "06_pid_controller:softplus_layers"
kwargs = {{ tau = [0.1, 0.3] }}
"""


def train_with_components(out: Path, quick: bool) -> None:
    """Train the softplus network with the PID through the CLI entry point on three solvers
    (``--set simulation.solver=...``) and print each run's test loss before and after."""
    from neurodfc.cli import main as cli
    from neurodfc.training import load_run

    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "pid_softplus.toml"
    here = json.dumps(str(Path(__file__).resolve().parent))
    n_train, epochs, t_max = (16, 1, 4.0) if quick else (128, 2, 8.0)
    text = TRAIN_TOML.format(folder=here, n_train=n_train, epochs=epochs, t_max=t_max)
    cfg_path.write_text(text)
    W: dict[str, torch.Tensor] = {}
    for solver in ("euler_reference", "etdrk4", "dopri5"):
        run = out / f"run_{solver}"
        args = ["train", str(cfg_path), "--out", str(run), "--quiet", "--set"]
        assert cli([*args, f'simulation.solver="{solver}"']) == 0, f"failed on {solver}"
        res = load_run(run)
        W[solver] = torch.cat([w.detach().flatten() for w in res.system.network.W])
        loss = ", ".join(f"{v:.4f}" for v in res.metrics["test_loss"].values)
        print(f"neurodfc train, PID + softplus, {solver:15s}: test loss per epoch {loss}")
    for solver in ("euler_reference", "etdrk4"):
        rel = float((W[solver] - W["dopri5"]).norm() / W["dopri5"].norm())
        print(f"trained weights, {solver:15s} vs dopri5: |W - W_dopri5| / |W_dopri5| = {rel:.1e}")


def simulate_with(
    system: DFCSystem, x: torch.Tensor, r_target: torch.Tensor, ctrl: Controller, t_max: float
) -> dict[str, torch.Tensor]:
    """Integrate the closed loop with controller ``ctrl`` (dopri5) and return ``t`` [T],
    ``e`` and ``u`` [T, B, n_L] and the controller's end state."""
    f = VectorField(system, x, r_target, controller=ctrl)
    t = torch.linspace(0.0, t_max, 401, dtype=x.dtype)
    with torch.no_grad():
        traj = odeint(f, f.initial_state(), t, method="dopri5", rtol=1e-8, atol=1e-10)
    # traj is the state tuple with a leading time axis; f.control_of reads (e, u) off a state
    eu = [f.control_of(tuple(s[k] for s in traj)) for k in range(len(t))]
    return {
        "t": t,
        "e": torch.stack([a for a, _ in eu]),
        "u": torch.stack([b for _, b in eu]),
        "end": f.controller_state(tuple(s[-1] for s in traj)),
    }


def overshoot_and_settling(t: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the overshoot, how far the output passes the target along the initial error
    direction relative to ``|e(0)|``, and the 2 % settling time, the first time after which
    ``|e(t) - e(T)|`` stays below 2 % of ``|e(0)|``."""
    e0 = e[0]
    passed = -(e * e0).sum(-1) / (e0 * e0).sum(-1)  # [T, B]; > 0: beyond the target
    overshoot = passed.clamp(min=0).max(0).values
    dev = torch.linalg.vector_norm(e - e[-1], dim=-1) / torch.linalg.vector_norm(e0, dim=-1)
    later_max = torch.flip(torch.cummax(torch.flip(dev, [0]), 0).values, [0])
    settled = (later_max < 0.02).int()
    return overshoot, t[torch.argmax(settled, 0)]


def any_solver(system: DFCSystem, x: torch.Tensor, y: torch.Tensor, pid: PIDController) -> None:
    """The PID and softplus hidden layers with their own time constants (0.1 and 0.3 tau_u)
    through ``simulate`` on the reference Euler scheme, ETDRK4 and dopri5: the DFC update
    (the forward rule averaged over the trajectory) of each, against dopri5 at tight
    tolerances."""
    assert isinstance(pid, LinearizedController)
    layers: list[NeuronLayer] = [Softplus(tau=0.1), Softplus(tau=0.3), RateNeurons("linear")]
    assert all(isinstance(layer, NeuronLayer) for layer in layers)
    _, r_ff = feedforward(system.network, x, layers)  # the softplus network's output
    r_target = system.target_of(r_ff[-1], y)

    def update(solver: str, **sim: float) -> torch.Tensor:
        cfg = system.cfg.simulation.model_copy(
            update={"solver": solver, "t_max": 8.0, "steps": None, **sim}
        )
        sol = simulate(
            system, x, r_target, sim=cfg, controller=pid, neurons=layers, record=False,
            accumulate="nonlinear_difference",
        )  # fmt: skip
        acc = sol.accumulator
        assert acc is not None
        return torch.cat([w.flatten() for w in acc.W + acc.b]) / acc.count

    ref = update("dopri5", rtol=1e-10, atol=1e-12, dt=0.01)
    runs = {
        "etdrk4 (rtol 1e-8)": update("etdrk4", rtol=1e-8, atol=1e-14, dt=0.01),
        "euler_reference dt = 4e-3": update("euler_reference", dt=0.004),
        "euler_reference dt = 2e-3": update("euler_reference", dt=0.002),
    }
    for name, up in runs.items():
        rel = float((up - ref).norm() / ref.norm())
        print(f"softplus + PID, {name:27s}: |dW - dW_dopri5| / |dW_dopri5| = {rel:.1e}")


def build(hidden: str, alpha: float) -> ExperimentConfig:
    """A 15-10-10-1 network whose apical compartment has its own time constant: the plant seen
    by the controller has two lags (tau_v and tau_fb), and a strong proportional gain rings."""
    return ExperimentConfig(
        network=NetworkConfig(sizes=[15, 10, 10, 1], hidden_activation=hidden),
        controller=ControllerConfig(k_p=2.0, alpha=alpha, tau_ratio=0.2),
        apical=ApicalConfig(tau=0.5),
        feedback=FeedbackConfig(init="weight_product"),
        loss=LossConfig(loss="mse", lam=0.05, reduction="sum"),
        seed=0,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer samples and gains (CI)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurodfc_tutorials" / NAME,
        help="folder for the figure in --quick mode",
    )
    args = p.parse_args(argv)
    fig_dir = args.out if args.quick else FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)

    alpha = 0.0015
    cfg = build("tanh", alpha)
    system = DFCSystem.from_config(cfg)
    n = 4 if args.quick else 8
    data = teacher_student(n_in=15, n_out=1, n_train=n, n_val=0, n_test=0, seed=0)
    x, y = data.train.x, data.train.y
    r_target = system.target(x, y)
    t_max = 10.0 if args.quick else 20.0

    # ------------------------------------------------------------------ 1. PI vs PID
    # k_d = 0 is the paper's PI controller (k_i = 1: the integral time constant tau_u).
    gains = [0.0, 0.4] if args.quick else [0.0, 0.1, 0.2, 0.4]
    runs = {}
    for k_d in gains:
        pid = PIDController(k_p=cfg.controller.k_p, k_i=1.0, k_d=k_d, alpha=alpha)
        assert isinstance(pid, Controller)  # the protocol is runtime-checkable
        runs[k_d] = simulate_with(system, x, r_target, pid, t_max)
        over, settle = overshoot_and_settling(runs[k_d]["t"], runs[k_d]["e"])
        name = "PI " if k_d == 0 else "PID"
        print(
            f"{name} k_d = {k_d:<4g} overshoot {100 * float(over.mean()):5.1f} % "
            f"(max {100 * float(over.max()):5.1f} %), 2 % settling time "
            f"{float(settle.mean()):5.2f} tau_u (max {float(settle.max()):5.2f})"
        )

    # ------------------------------------------------------------------ 2. the fixed point
    # At rest de_f/dt = 0, so e_f = e and the derivative term is zero: the PID rests where
    # the PI controller rests, e = alpha u, and Lemma 1 (which describes that rest point)
    # applies unchanged.
    pi, pid = runs[0.0], runs[gains[-1]]
    u_pi, u_pid = pi["u"][-1], pid["u"][-1]
    e_f, _ = pid["end"]
    last = PIDController(k_p=cfg.controller.k_p, k_i=1.0, k_d=gains[-1], alpha=alpha)
    d_term = float((last.k_d * (pid["e"][-1] - e_f) / last.tau_d).abs().max())
    print(f"derivative term at t = {t_max:g}: max |k_d (e - e_f) / tau_d| = {d_term:.1e}")
    print(
        f"|u_PID(T) - u_PI(T)| / |u_PI(T)| = "
        f"{float((u_pid - u_pi).norm() / u_pi.norm()):.1e}  (same fixed point)"
    )
    ss = lemma1(system, x, r_target)
    rel = torch.quantile((u_pid - ss.u).norm(dim=1) / ss.u.norm(dim=1), 0.5)  # the median
    print(
        f"tanh network:   median |u_PID(T) - u_ss| / |u_ss| = {float(rel):.1e}  (Lemma 1 is O(lam))"
    )
    # For a linear network Lemma 1 is exact: the oracle without the O(lam) term.
    lin = DFCSystem.from_config(build("linear", alpha))
    rt_lin = lin.target(x, y)
    res = simulate_with(lin, x, rt_lin, PIDController(2.0, 1.0, gains[-1], alpha), 4 * t_max)
    ss_lin = lemma1(lin, x, rt_lin)
    rel_lin = float(((res["u"][-1] - ss_lin.u).norm(dim=1) / ss_lin.u.norm(dim=1)).max())
    print(f"linear network: max    |u_PID(T) - u_ss| / |u_ss| = {rel_lin:.1e}  (Lemma 1 is exact)")

    # ------------------------------------------------------------------ 3. any solver
    any_solver(system, x, y, PIDController(k_p=2.0, k_i=1.0, k_d=gains[-1], alpha=alpha))

    # ------------------------------------------------------------------ 4. training
    if args.quick:
        train_with_components(args.out / "train", quick=True)
    else:  # the run folders are not kept
        with tempfile.TemporaryDirectory(prefix="neurodfc_pid_") as tmp:
            train_with_components(Path(tmp), quick=False)

    # ------------------------------------------------------------------ 5. figure
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    j = 0  # one sample
    for k, (k_d, run) in enumerate(runs.items()):
        label = "PI" if k_d == 0 else f"PID, $k_d$ = {k_d:g}"
        r_out = r_target[j, 0] - run["e"][:, j, 0]
        axes[0].plot(run["t"], r_out, color=f"C{k}", label=label)
        axes[1].plot(run["t"], run["u"][:, j, 0], color=f"C{k}", label=label)
    axes[0].axhline(float(r_target[j, 0]), color="k", ls=":", lw=1, label=r"$r_L^*$")
    axes[1].axhline(float(ss.u[j, 0]), color="k", ls="--", lw=0.8, label="Lemma 1")
    axes[0].set(xlabel=r"time ($\tau_u$)", ylabel=r"$r_L(t)$", title="output, one sample")
    axes[1].set(xlabel=r"time ($\tau_u$)", ylabel=r"$u(t)$", title="control")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    for k, (k_d, run) in enumerate(runs.items()):
        over, settle = overshoot_and_settling(run["t"], run["e"])
        axes[2].scatter(100 * over, settle, color=f"C{k}", s=18, label=f"$k_d$ = {k_d:g}")
    axes[2].set(xlabel="overshoot (%)", ylabel=r"2 % settling time ($\tau_u$)", title="per sample")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / f"{NAME}.png", dpi=90)
    plt.close(fig)
    print(f"wrote {fig_dir / (NAME + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
