"""Loss reductions of the output target against their closed forms, and the Strong-DFC
conventions of issue 16 (the successor's MSE target, the pre-training layer factor's tau).

Oracles: PyTorch's own losses differentiated by autograd, the formulas written here, and ratios
of two runs that differ only in a scale factor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from neurodfc.components.target import loss_gradient, loss_value, output_target
from neurodfc.config import load_config
from neurodfc.strong.methods import (
    StrongDFC,
    StrongDFCSingle,
    feedback_scales,
    sleep_dynamics,
    strong_target,
)
from neurodfc.system import DFCSystem
from tests.helpers import make_config, random_batch

MODELS = Path(__file__).resolve().parents[2] / "models"


def _batch(B: int = 6, n: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    r = torch.randn(B, n, generator=g, dtype=torch.float64)
    y = torch.randn(B, n, generator=g, dtype=torch.float64)
    labels = torch.randint(0, n, (B,), generator=g)
    return r, y, labels


@pytest.mark.parametrize("reduction", ["mean", "sum", "sum_of_sample_means"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_loss_gradient_is_the_autograd_gradient_of_the_loss(loss: str, reduction: str) -> None:
    r, y, labels = _batch()
    t = labels if loss == "cross_entropy" else y
    rr = r.clone().requires_grad_(True)
    # the oracle: PyTorch's loss, "sum_of_sample_means" = B times the batch mean (successor)
    if loss == "mse":
        base = torch.nn.functional.mse_loss(
            rr, t, reduction="sum" if reduction == "sum" else "mean"
        )
    else:
        base = torch.nn.functional.cross_entropy(
            rr, t, reduction="sum" if reduction == "sum" else "mean"
        )
    want_value = base * r.shape[0] if reduction == "sum_of_sample_means" else base
    (want,) = torch.autograd.grad(want_value, rr)
    torch.testing.assert_close(loss_gradient(r, t, loss, reduction), want, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(loss_value(r, t, loss, reduction), want_value.detach())


def test_mse_gradients_in_closed_form() -> None:
    r, y, _ = _batch(B=6, n=4)
    torch.testing.assert_close(loss_gradient(r, y, "mse", "sum"), 2 * (r - y))
    torch.testing.assert_close(loss_gradient(r, y, "mse", "mean"), 2 * (r - y) / 24)
    torch.testing.assert_close(loss_gradient(r, y, "mse", "sum_of_sample_means"), 2 * (r - y) / 4)
    # the successor's nudged target: r - lam 2 (r - y) / n_L
    torch.testing.assert_close(
        output_target(r, y, "mse", 0.01, "sum_of_sample_means"), r - 0.01 * 2 * (r - y) / 4
    )


def test_cross_entropy_sum_of_sample_means_equals_sum() -> None:
    r, _, labels = _batch()
    torch.testing.assert_close(
        loss_gradient(r, labels, "cross_entropy", "sum_of_sample_means"),
        loss_gradient(r, labels, "cross_entropy", "sum"),
    )


def test_strong_regression_config_reproduces_the_successor_target() -> None:
    cfg = load_config(MODELS / "teacher_student_strong_dfc.toml")
    assert cfg.loss.reduction == "sum_of_sample_means" and cfg.strong.target == "nudged"
    system = DFCSystem.from_config(cfg)
    x, y = random_batch(system, 5)
    with torch.no_grad():
        r = system.network(x)
    lam, n_out = cfg.loss.lam, cfg.network.sizes[-1]
    torch.testing.assert_close(strong_target(system, r, y), r - lam * 2 * (r - y) / n_out)
    # the same through the successor's formula: r - lam * grad of B * MSELoss()(r, y)
    rr = r.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(r.shape[0] * torch.nn.functional.mse_loss(rr, y), rr)
    torch.testing.assert_close(strong_target(system, r, y), r - lam * g)


def _single_phase_config(tau_mode: str) -> object:
    return make_config(
        [4, 5, 5, 3],
        loss="cross_entropy",
        tau_ratio=0.2,
        method={"name": "strong_dfc_single", "include_non_converged": True},
        sim={"dt": 0.005, "steps": 40},
        noise={"sigma": 0.01, "sigma_output": 0.02},
        feedback_learning={"tau_ratio": 0.01, "dt": 0.005, "steps": 40, "sigma": 0.01},
        strong={"layer_scaling_tau": tau_mode, "tau_noise": 0.05},
    )


def test_layer_factor_uses_the_chosen_tau_in_closed_form() -> None:
    for mode, tau in (("phase", 0.01), ("forward", 0.2)):
        cfg = _single_phase_config(mode)
        dyn = sleep_dynamics(cfg, single_phase=True)  # type: ignore[arg-type]
        got = feedback_scales(cfg, dyn, 3, sleep=True)  # type: ignore[arg-type]
        floor = cfg.feedback_learning.scale_floor  # type: ignore[attr-defined]
        sig = [0.01, 0.01, cfg.feedback_learning.sigma]  # type: ignore[attr-defined]
        want = [(1 + tau / 0.05) ** (2 - i) / max(sig[i], floor) ** 2 for i in range(3)]
        assert got == pytest.approx(want, rel=1e-14)
        # the forward simulation's update always uses the forward tau_ratio
        fwd = feedback_scales(cfg, replace(dyn, tau_ratio=0.2), 3)  # type: ignore[arg-type]
        assert fwd[0] / fwd[2] == pytest.approx((1 + 0.2 / 0.05) ** 2, rel=1e-14)


@pytest.mark.parametrize("cls", [StrongDFCSingle, StrongDFC])
def test_pretraining_gradients_scale_by_the_ratio_of_the_layer_factors(cls: type) -> None:
    """Same noise (same seed), same simulation: only the layer factor differs."""
    grads = {}
    for mode in ("phase", "forward"):
        cfg = _single_phase_config(mode)
        system = DFCSystem.from_config(cfg)  # type: ignore[arg-type]
        x, _ = random_batch(system, 4)
        y = torch.tensor([0, 2, 1, 1])
        grads[mode] = cls().feedback_gradients(system, x, y, torch.Generator().manual_seed(5))
    for i in range(3):
        ratio = ((1 + 0.2 / 0.05) / (1 + 0.01 / 0.05)) ** (2 - i)
        torch.testing.assert_close(
            grads["forward"][i], ratio * grads["phase"][i], rtol=1e-12, atol=0
        )
    assert float(grads["phase"][0].norm()) > 0
