"""The noise-driven sleep phase that learns the feedback weights Q (paper eq. 12).

The controller only fights the noise: target ``r_L* = r_L^-``, apical noise ``sigma``, the
sleep-phase controller (``alpha_fb``, ``k_p_fb``, ``tau_ratio_fb``, apical ``tau_fb``). The
reference code's gradient pairs the apical voltage with the next control signal,

    grad Q_i = s / ((T-1) B) sum_{t=1}^{T-1} sum_b v^fb_i[t-1] u[t]^T,   s = 1/max(sigma, 0.01)^2

(so that ``Q <- Q - lr grad`` is anti-Hebbian); the ``beta Q`` decay is the optimiser's
coupled weight decay (``feedback_learning.weight_decay``).

The simulation runs on the fast reference-Euler path (:mod:`neurodfc.fastpath`): the noise of
a sleep batch is drawn as float32 standard normals in one block of ``steps - 1`` steps (up to
64 per block), the sums ``v^fb u^T`` are accumulated in place, nothing is recorded.
"""

from __future__ import annotations

import torch

from neurodfc.config import FeedbackLearningConfig, SimulationConfig
from neurodfc.solve import simulate
from neurodfc.system import DFCSystem


def sleep_simulation_config(fl: FeedbackLearningConfig) -> SimulationConfig:
    """The reference-Euler settings of the sleep phase (never proactive, as in the code).

    Args:
        fl: the ``[feedback_learning]`` config section (``dt``, ``steps``,
            ``inst_transmission``).
    """
    return SimulationConfig(
        solver="euler_reference",
        dt=fl.dt,
        steps=fl.steps,
        inst_transmission=fl.inst_transmission,
        proactive_controller=False,
        inst_system_dynamics=False,
        record_every=fl.steps,
    )


def feedback_gradients(
    system: DFCSystem,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    fl: FeedbackLearningConfig | None = None,
) -> list[torch.Tensor]:
    """``grad Q_i`` [n_i, n_L] for every layer from one noisy sleep-phase simulation.

    Args:
        system: the DFC system (its network and current ``Q``); never modified.
        x: inputs [B, n_0]; the controller's target is the feedforward output ``r_L^-``.
        generator: random generator of the apical noise.
        fl: sleep-phase settings (default: ``system.cfg.feedback_learning``).

    Returns:
        ``grad Q_i`` per layer (the module docstring's formula; ``Q <- Q - lr grad``).
    """
    fl = fl or system.cfg.feedback_learning
    sigma_out = fl.sigma if fl.sigma_output is None else fl.sigma_output
    with torch.no_grad():
        r_target = system.output(x)
        sol = simulate(
            system,
            x,
            r_target,
            sim=sleep_simulation_config(fl),
            alpha=fl.alpha,
            k_p=fl.k_p,
            tau_ratio=fl.tau_ratio,
            noise=(fl.sigma, sigma_out),
            generator=generator,
            apical_tau=fl.apical_tau,
            accumulate_feedback=True,
            record=False,
            neurons=system.custom_neurons,
        )
    acc = sol.feedback_accumulator
    assert acc is not None
    s = 1.0 / max(fl.sigma, fl.scale_floor) ** 2
    return [(s / (acc.count * x.shape[0])) * a for a in acc.W]
