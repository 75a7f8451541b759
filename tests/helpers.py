"""Small systems for tests (built from configs, like a user would)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurodfc.components.controller import ControllerState
from neurodfc.config import ExperimentConfig, config_from_dict
from neurodfc.system import DFCSystem


def make_config(
    sizes: list[int],
    *,
    act: str = "tanh",
    k_p: float = 0.0,
    alpha: float = 0.01,
    tau_ratio: float = 0.2,
    leak: str = "reference",
    fb_init: str = "weight_product",
    lam: float = 0.05,
    reduction: str = "sum",
    loss: str = "mse",
    dtype: str = "float64",
    seed: int = 0,
    sim: dict[str, Any] | None = None,
    **sections: Any,
) -> ExperimentConfig:
    """An experiment config for a small network (random data by default)."""
    tree: dict[str, Any] = {
        "seed": seed,
        "dtype": dtype,
        "network": {"sizes": sizes, "hidden_activation": act, "output_activation": "linear"},
        "controller": {"k_p": k_p, "alpha": alpha, "tau_ratio": tau_ratio, "leak": leak},
        "feedback": {"init": fb_init},
        "loss": {"loss": loss, "lam": lam, "reduction": reduction},
        "simulation": {"solver": "euler_reference", "dt": 0.01, "steps": 1000, **(sim or {})},
        "data": {"dataset": "random"},
    }
    for k, v in sections.items():
        tree.setdefault(k, {}).update(v)
    return config_from_dict(tree)


def make_system(sizes: list[int], **kw: Any) -> DFCSystem:
    """A :class:`DFCSystem` for ``make_config(sizes, **kw)``."""
    return DFCSystem.from_config(make_config(sizes, **kw))


def random_batch(
    system: DFCSystem, batch: int, seed: int = 1, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs U[-1, 1] and regression targets N(0, scale^2) for ``system``."""
    g = torch.Generator().manual_seed(seed)
    n_in, n_out = system.network.sizes[0], system.network.n_out
    x = (torch.rand(batch, n_in, generator=g, dtype=torch.float64) * 2 - 1).to(system.dtype)
    y = (scale * torch.randn(batch, n_out, generator=g, dtype=torch.float64)).to(system.dtype)
    return x, y


@dataclass(frozen=True)
class PID:
    """A user controller implementing only the minimal ``Controller`` protocol: a PID with a
    first-order filtered derivative, state ``(e_f, u_int)``, ``tau_d de_f/dt = e - e_f``,
    ``u = u_int + k_p e + k_d (e - e_f) / tau_d``, ``du_int/dt = e - alpha u``."""

    k_p: float
    k_d: float
    alpha: float
    tau_d: float = 0.05

    def initial_state(self, e0: torch.Tensor) -> ControllerState:
        return (e0.clone(), torch.zeros_like(e0))

    def output(self, e: torch.Tensor, state: ControllerState) -> torch.Tensor:
        e_f, u_int = state
        return u_int + self.k_p * e + self.k_d * (e - e_f) / self.tau_d

    def rates(self, e: torch.Tensor, u: torch.Tensor, state: ControllerState) -> ControllerState:
        e_f, _ = state
        return ((e - e_f) / self.tau_d, e - self.alpha * u)
