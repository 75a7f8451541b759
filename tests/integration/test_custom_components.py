"""User components named in ``[components]`` train through ``neurodfc train`` on every solver.

The components live in a module written next to the config (found through the config file's
folder): a leaky PID controller with a filtered derivative, softplus hidden layers with their
own time constant, and factories returning the built-in PI controller and rate neurons (the
oracle of the last test: they must reproduce a run without the section).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from neurodfc.cli import main
from neurodfc.config import ConfigError, load_config
from neurodfc.data import teacher_student
from neurodfc.methods import get_method
from neurodfc.methods.feedback_learning import feedback_gradients
from neurodfc.runs.checkpoint import read_checkpoint
from neurodfc.system import DFCSystem
from neurodfc.training import CHECKPOINT

MODULE = """
from dataclasses import dataclass

import torch

from neurodfc.components.controller import PIController
from neurodfc.components.neurons import RateNeurons


@dataclass(frozen=True)
class PID:
    k_p: float
    k_d: float
    alpha: float
    tau_d: float = 0.05

    def initial_state(self, e0):
        return (e0.clone(), torch.zeros_like(e0))

    def output(self, e, state):
        e_f, u_int = state
        return u_int + self.k_p * e + self.k_d * (e - e_f) / self.tau_d

    def rates(self, e, u, state):
        e_f, _ = state
        return ((e - e_f) / self.tau_d, e - self.alpha * u)

    def stiff_diagonal(self):
        return (-1.0 / self.tau_d, 0.0)

    def feedthrough(self):
        return self.k_p + self.k_d / self.tau_d


@dataclass(frozen=True)
class Softplus:
    tau: float | None = None

    def phi(self, v):
        return torch.nn.functional.softplus(v)

    def phi_prime(self, v):
        return torch.sigmoid(v)

    def increment(self, a):
        s = torch.sigmoid(a)

        def inc(z, out, work=None):
            return torch.log1p(s * torch.expm1(z), out=out)

        return inc


def make_pid(cfg, k_d):
    return PID(k_p=cfg.controller.k_p, k_d=k_d, alpha=cfg.controller.alpha)


def softplus_layers(cfg, tau):
    return [Softplus(t) for t in tau] + [RateNeurons(cfg.network.output_activation)]


def builtin_pi(cfg):
    return PIController.from_config(cfg.controller)


def builtin_layers(cfg):
    return [RateNeurons(a) for a in cfg.network.activations()]


NOT_CALLABLE = 3
"""

BASE = """
[network]
sizes = [6, 8, 3]
[controller]
k_p = 1.0
alpha = 0.01
[loss]
lam = 0.05
reduction = "mean"
[simulation]
solver = "{solver}"
dt = 0.02
steps = 50
[data]
dataset = "teacher_student"
n_train = 32
n_val = 16
n_test = 16
[method]
name = "{method}"
include_non_converged = true
[training]
epochs = 1
batch_size = 16
optimizer = "adam"
lr = 1e-3
"""

PID_PART = """
[components.controller]
factory = "my_parts:make_pid"
kwargs = { k_d = 0.02 }
"""
SOFTPLUS_PART = """
[components.neurons]
factory = "my_parts:softplus_layers"
kwargs = { tau = [0.1] }
"""
CUSTOM = PID_PART + SOFTPLUS_PART

BUILTIN = """
[components.controller]
factory = "my_parts:builtin_pi"
[components.neurons]
factory = "my_parts:builtin_layers"
"""


def _write(folder: Path, parts: str, solver: str = "etdrk4", method: str = "dfc") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_parts.py").write_text(textwrap.dedent(MODULE))
    cfg = folder / "cfg.toml"
    cfg.write_text(BASE.format(solver=solver, method=method) + parts)
    return cfg


def _train(cfg: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    assert main(["train", str(cfg), "--out", str(out), "--quiet", *extra]) == 0
    state: dict[str, torch.Tensor] = read_checkpoint(out / CHECKPOINT)["system"]
    return state


@pytest.mark.parametrize(
    ("solver", "method"),
    [("euler_reference", "dfc"), ("etdrk4", "dfc"), ("dopri5", "dfc"), ("etdrk4", "dfc_ss")],
)
def test_train_with_custom_components(tmp_path: Path, solver: str, method: str) -> None:
    """One epoch through the CLI with the PID and softplus layers: the weights move, stay
    finite, and the run folder's config reloads to the same config."""
    cfg_path = _write(tmp_path / "cfg", CUSTOM, solver, method)
    cfg = load_config(cfg_path)
    start = DFCSystem.from_config(cfg).state_dict()
    state = _train(cfg_path, tmp_path / "run")
    W = [k for k in state if k.startswith("network.W")]
    assert all(torch.isfinite(state[k]).all() for k in W)
    assert any(not torch.equal(state[k], start[k]) for k in W)
    assert load_config(tmp_path / "run" / "config.toml") == cfg


def _update(cfg_path: Path, *overrides: str) -> torch.Tensor:
    cfg = load_config(cfg_path, list(overrides))
    system = DFCSystem.from_config(cfg)
    data = teacher_student(n_in=6, n_out=3, n_train=8, n_val=0, n_test=0, seed=3)
    upd = get_method(cfg.method.name).update(system, data.train.x, data.train.y)
    return torch.cat([g.flatten() for g in [*upd.grad_W, *upd.grad_b]])


def test_etdrk4_and_dopri5_updates_agree(tmp_path: Path) -> None:
    """Two independent integrators of the PID + softplus loop give the same DFC update (same
    weights, same batch) to 1e-6; the components are really used (the update differs from
    the built-in loop's)."""
    cfg_path = _write(tmp_path, CUSTOM)
    etd = _update(cfg_path, "simulation.rtol=1e-9", "simulation.atol=1e-14")
    dop = _update(
        cfg_path, 'simulation.solver="dopri5"', "simulation.rtol=1e-10", "simulation.atol=1e-12"
    )
    rel = float((etd - dop).norm() / dop.norm())
    assert rel < 1e-6, rel
    plain = _write(tmp_path / "plain", "")
    builtin = _update(plain, "simulation.rtol=1e-9", "simulation.atol=1e-14")
    assert float((builtin - etd).norm() / etd.norm()) > 1e-3


@pytest.mark.parametrize(
    ("solver", "method"),
    [("euler_reference", "dfc"), ("etdrk4", "dfc"), ("dopri5", "dfc"), ("etdrk4", "dfc_ss")],
)
def test_builtin_components_reproduce_the_plain_run(
    tmp_path: Path, solver: str, method: str
) -> None:
    """Factories returning the built-in PI controller and rate neurons train the same weights
    as a config without ``[components]`` (the built-in path is the oracle)."""
    with_parts = _train(_write(tmp_path / "a", BUILTIN, solver, method), tmp_path / "run_a")
    plain = _train(_write(tmp_path / "b", "", solver, method), tmp_path / "run_b")
    assert with_parts.keys() == plain.keys()
    for k in plain:
        torch.testing.assert_close(with_parts[k], plain[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('"no_such_module:f"', "is found neither in"),
        ('"my_parts:nope"', "has no 'nope'"),
        ('"my_parts"', 'must be "module:callable"'),
        ('"my_parts:NOT_CALLABLE"', "not callable"),
        ('"my_parts:builtin_layers"', "must return a Controller"),
        ('"my_parts:make_pid"', "failed when called"),  # k_d missing
    ],
)
def test_bad_factory_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    """A bad factory path: exit 2, one line naming the file, the field and the value, no run
    folder."""
    cfg = _write(tmp_path, BUILTIN)
    out = tmp_path / "run"
    rc = main(["train", str(cfg), "--out", str(out), "--set", "components.controller={}"])
    assert rc == 2  # a table without a factory
    capsys.readouterr()
    args = ["train", str(cfg), "--out", str(out), "--set", f"components.controller.factory={value}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert str(cfg) in err and "components.controller.factory" in err and says in err
    assert value.strip('"') in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ('method.name="dfc_ssa"', "need method.name in dfc, dfc_ss"),
        ('method.name="mn"', "need method.name in dfc, dfc_ss"),
        ("feedback.learned=true", "the sleep phase runs the PI controller"),
        ('simulation.solver="linear_response"', "need a simulating solver"),
        ("analysis.log_interval=1", "set analysis.log_interval = 0"),
    ],
)
def test_methods_without_support_refuse_components(
    tmp_path: Path, override: str, says: str
) -> None:
    """Methods whose analytic parts assume the PI controller and the network's neurons refuse
    ``[components]`` at load time."""
    cfg = _write(tmp_path, CUSTOM)
    with pytest.raises(ConfigError, match=says):
        load_config(cfg, [override])


def test_sleep_phase_runs_custom_neurons(tmp_path: Path) -> None:
    """Custom neurons alone with learned feedback: the sleep phase simulates them too."""
    learned = (
        "[feedback]\nlearned = true\n[feedback_learning]\npretrain_epochs = 1\nsteps = 8\n"
        "sigma = 0.05\ndt = 0.002\ntau_ratio = 0.01\n"
    )
    cfg = _write(tmp_path, SOFTPLUS_PART + learned)
    state = _train(cfg, tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_sleep_phase_with_builtin_neurons_equals_the_plain_sleep_phase(tmp_path: Path) -> None:
    """The sleep phase's feedback gradient with the built-in neurons given as components equals
    the one without ``[components]`` (same noise seed; the built-in path is the oracle)."""
    neurons = '[components.neurons]\nfactory = "my_parts:builtin_layers"\n'
    grads = []
    for parts in (neurons, ""):
        cfg = load_config(_write(tmp_path / str(len(parts)), parts), ["noise.sigma=0.0"])
        system = DFCSystem.from_config(cfg)
        x = teacher_student(n_in=6, n_out=3, n_train=8, n_val=0, n_test=0, seed=1).train.x
        gen = torch.Generator().manual_seed(5)
        grads.append(feedback_gradients(system, x, generator=gen))
    for a, b in zip(*grads, strict=True):
        assert float(a.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
