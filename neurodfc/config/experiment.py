"""The whole experiment config, :class:`ExperimentConfig`: one field per section and the
cross-section rules checked before any compute starts."""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from neurodfc.config.analysis import AnalysisConfig
from neurodfc.config.base import FIXED_STEP_SOLVERS, Seed, _Section
from neurodfc.config.components import ComponentsConfig, check_components
from neurodfc.config.learning import (
    DataConfig,
    FeedbackLearningConfig,
    LossConfig,
    MethodConfig,
    TrainingConfig,
)
from neurodfc.config.simulation import SimulationConfig
from neurodfc.config.strong import StrongConfig
from neurodfc.config.system import (
    ApicalConfig,
    ControllerConfig,
    FeedbackConfig,
    NetworkConfig,
    NoiseConfig,
)


class ExperimentConfig(_Section):
    """A whole experiment: the DFC system, how it is simulated and the data it sees."""

    name: str = "experiment"
    """Free-form name used in reports."""
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    apical: ApicalConfig = Field(default_factory=ApicalConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    feedback_learning: FeedbackLearningConfig = Field(default_factory=FeedbackLearningConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    strong: StrongConfig = Field(default_factory=StrongConfig)
    components: ComponentsConfig = Field(default_factory=ComponentsConfig)
    """User-defined controller / neuron layers (empty: the built-in ones)."""
    dtype: Literal["float32", "float64"] = "float64"
    """Floating-point precision of every tensor."""
    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``cuda:1`` ...)."""
    seed: Seed = 0
    """Seed of weight initialisation, data splits and noise (0 .. 2**63 - 1)."""

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|mps|cuda(:[0-9]{1,3})?", v):
            raise ValueError(
                f'device = {json.dumps(v)}: must be "cpu", "cuda", "cuda:N" (N = 0, 1, ...) or '
                '"mps"'
            )
        return v

    @model_validator(mode="after")
    def _check_consistency(self) -> ExperimentConfig:
        sim, ctrl = self.simulation, self.controller
        if (
            sim.solver in FIXED_STEP_SOLVERS
            and not sim.inst_system_dynamics
            and sim.dt > ctrl.tau_ratio
        ):
            raise ValueError(
                f"simulation.dt = {sim.dt} must lie in (0, controller.tau_ratio = "
                f"{ctrl.tau_ratio}] for the fixed-step solver {sim.solver!r}: forward Euler is "
                "unstable for dt > tau_v/tau_u"
            )
        strong = self.method.name in ("strong_dfc", "strong_dfc_single")
        if sim.solver != "euler_reference" and not strong:
            if self.noise.sigma > 0 or (self.noise.sigma_output or 0.0) > 0:
                raise ValueError(
                    f"noise.sigma > 0 needs simulation.solver = 'euler_reference' (Euler-Maruyama"
                    f"); {sim.solver!r} integrates the noiseless ODE"
                )
            if sim.inst_system_dynamics:
                raise ValueError(
                    "simulation.inst_system_dynamics = true is a flag of the reference scheme: it "
                    f"needs simulation.solver = 'euler_reference', got {sim.solver!r}"
                )
        if self.apical.tau is not None and sim.solver in FIXED_STEP_SOLVERS:
            if sim.dt > self.apical.tau:
                raise ValueError(
                    f"simulation.dt = {sim.dt} must lie in (0, apical.tau = {self.apical.tau}]"
                )
        fl = self.feedback_learning
        if self.feedback.learned and fl.dt > fl.tau_ratio:
            raise ValueError(
                f"feedback_learning.dt = {fl.dt} must lie in (0, feedback_learning.tau_ratio = "
                f"{fl.tau_ratio}] (forward Euler of the sleep phase)"
            )
        if self.feedback.learned and self.method.name in ("bp", "mn", "gn"):
            raise ValueError(
                f"feedback.learned = true has no effect with method.name = "
                f"{self.method.name!r}; set it to false"
            )
        if self.loss.loss == "cross_entropy" and self.network.sizes[-1] < 2:
            raise ValueError(
                'loss.loss = "cross_entropy" needs network.sizes[-1] >= 2 classes, got '
                f"network.sizes = {self.network.sizes}"
            )
        fl_tau = fl.apical_tau
        if self.feedback.learned and fl_tau is not None and fl.dt > fl_tau:
            raise ValueError(
                f"feedback_learning.dt = {fl.dt} must lie in (0, feedback_learning.apical_tau = "
                f"{fl_tau}] (forward Euler of the sleep phase)"
            )
        return self

    @model_validator(mode="after")
    def _check_strong(self) -> ExperimentConfig:
        """The Strong-DFC methods integrate both phases with forward Euler at
        ``simulation.dt`` / ``feedback_learning.dt`` whatever ``simulation.solver`` says."""
        if self.method.name not in ("strong_dfc", "strong_dfc_single"):
            return self
        sim, single = self.simulation, self.method.name == "strong_dfc_single"
        if sim.inst_system_dynamics:
            raise ValueError(
                f"simulation.inst_system_dynamics = true is not supported by method.name = "
                f"{self.method.name!r}; set it to false"
            )
        fl, ou = self.feedback_learning, self.strong.noise == "ou"
        phases = [("simulation", sim.dt, self.controller.tau_ratio, "controller.tau_ratio")]
        if not single and self.apical.tau is not None:
            phases.append(("simulation", sim.dt, self.apical.tau, "apical.tau"))
        if ou and (self.noise.sigma > 0 or (self.noise.sigma_output or 0.0) > 0):
            phases.append(("simulation", sim.dt, self.strong.tau_noise, "strong.tau_noise"))
        if self.feedback.learned and not single and fl.apical_tau is not None:
            phases.append(
                ("feedback_learning", fl.dt, fl.apical_tau, "feedback_learning.apical_tau")
            )
        if self.feedback.learned and ou and (fl.sigma > 0 or (fl.sigma_output or 0.0) > 0):
            phases.append(("feedback_learning", fl.dt, self.strong.tau_noise, "strong.tau_noise"))
        for section, dt, bound, name in phases:
            if dt > bound:
                raise ValueError(
                    f"{section}.dt = {dt} must lie in (0, {name} = {bound}] for method.name = "
                    f"{self.method.name!r} (forward Euler)"
                )
        return self

    @model_validator(mode="after")
    def _check_components(self) -> ExperimentConfig:
        """Custom components run only where the method simulates them: DFC and DFC-SS (the
        other methods' analytic parts assume the PI controller and the network's neurons), on
        a solver that integrates the loop, without the training-time analyses (which
        linearise the built-in loop); the sleep phase runs the PI controller of
        ``[feedback_learning]``, so a custom controller refuses ``feedback.learned``."""
        custom = self.components.custom
        if not custom:
            return self
        names = " and ".join(f"components.{c}" for c in custom)
        if self.method.name not in COMPONENT_METHODS:
            raise ValueError(
                f"{names} need method.name in {', '.join(COMPONENT_METHODS)} (which simulate "
                f"the components); {self.method.name!r} assumes the PI controller and the "
                "network's neurons: remove [components] or change the method"
            )
        if self.simulation.solver == "linear_response":
            raise ValueError(
                f"{names} need a simulating solver; simulation.solver = 'linear_response' "
                "linearises the built-in loop: use euler_reference, etdrk4 or a torchdiffeq "
                "solver"
            )
        if self.analysis.log_interval > 0:
            raise ValueError(
                f"analysis.log_interval = {self.analysis.log_interval} with {names}: the "
                "analyses (BP/GN/MN angles, Condition 2, stability) linearise the built-in PI "
                "loop and activations; set analysis.log_interval = 0"
            )
        if self.feedback.learned and self.components.controller is not None:
            raise ValueError(
                "components.controller with feedback.learned = true: the sleep phase runs the "
                "PI controller of [feedback_learning]; set feedback.learned = false"
            )
        check_components(self)
        return self


COMPONENT_METHODS = ("dfc", "dfc_ss")
"""The methods that run user components (``[components]``)."""
