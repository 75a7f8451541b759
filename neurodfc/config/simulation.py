"""Config section ``[simulation]``: how the closed-loop dynamics are integrated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurodfc.config.base import (
    ETDRK4_TOLERANCES,
    MAX_STEPS,
    MAX_TIME,
    ODEINT_TOLERANCES,
    IntegratingSolver,
    Solver,
    _Section,
)


class SimulationConfig(_Section):
    """How the closed-loop dynamics are integrated."""

    solver: Solver = "etdrk4"
    """``etdrk4`` (default): adaptive exponential Runge-Kutta on the continuous-time dynamics
    (``neurodfc.integrators``), with the DFC update integrated alongside; at the default
    tolerances its DFC update lies within about 1e-4 of the dt -> 0 limit and it is faster than
    the reference scheme (docs/performance.md). ``euler_reference``: the fused forward-Euler
    scheme of the official code (honours inst_transmission / proactive_controller /
    inst_system_dynamics; needed for noise; the paper-reproduction configs in ``models/`` pin
    it because their hyperparameters were tuned with it); others: torchdiffeq's ``odeint``
    methods on the continuous-time vector field (``dopri5``, ``bosh3``, ``adaptive_heun`` are
    adaptive; ``euler``, ``midpoint``, ``rk4`` fixed-step)."""
    dt: float = Field(default=0.02, gt=0)
    """Step size ``dt`` (units of tau_u); for adaptive solvers, the first step."""
    steps: int | None = Field(default=None, ge=2, le=MAX_STEPS)
    """Number of time points simulated (the reference code's tmax_di); t_max = (steps - 1) dt.
    Default: 1000 unless ``t_max`` is given (use :attr:`n_steps` for the resolved value)."""
    t_max: float | None = Field(default=None, gt=0, le=MAX_TIME)
    """Simulated time (units of tau_u, at most 1e6); overrides ``steps`` when given."""
    inst_transmission: bool = True
    """Reference scheme: layer i at step t+1 reads layer i-1 at t+1 (layers swept bottom-up)."""
    proactive_controller: bool = True
    """Reference scheme: the apical input at step t+1 uses u[t+1] instead of u[t]."""
    inst_system_dynamics: bool = False
    """Reference scheme: ``v_i = v_i^ff + v_i^fb`` instantaneously (no v-dynamics)."""
    record_every: int = Field(default=10, ge=1)
    """Record the trajectory every k steps (and always the last step)."""
    rtol: float | None = Field(default=None, gt=0, le=1)
    """Relative tolerance of adaptive solvers; ``None`` = the solver's default (``etdrk4``: 2e-4,
    relative to the deviation from the feedforward state, about 1e-4 on the MNIST DFC update;
    torchdiffeq: 1e-7). See :attr:`tolerances`."""
    atol: float | None = Field(default=None, gt=0)
    """Absolute tolerance of adaptive solvers; ``None`` = the solver's default (``etdrk4``:
    1e-12; torchdiffeq: 1e-9)."""
    convergence_threshold: float = Field(default=1e-5, gt=0)
    """Converged if ``|r_L - (r_L* - alpha u)| / |r_L^-|`` is below this (reference: 1e-5)."""
    divergence_threshold: float = Field(default=1.0, gt=0)
    """Diverged if the same ratio exceeds this (reference: 1)."""
    epsilon: float = Field(default=0.5, gt=0, le=1)
    """Converged also needs ``|e(T)| < epsilon^2 |e(0)|`` (reference epsilon_di = 0.5)."""
    early_stop: bool = False
    """Reference scheme: stop once every sample has converged and complete the trajectory sums
    for the remaining steps in closed form (the state taken as constant; not bit-exact, see
    docs/performance.md)."""
    cuda_graphs: bool = True
    """Reference scheme on a CUDA device: replay whole chunks of steps as CUDA graphs (one
    launch instead of a few dozen kernels per step) when the simulation is noise-free, has no
    early stop and records only its ends (training's simulations); the results equal the plain
    loop's. ``false``: always the plain loop. No effect on the CPU."""
    max_step: float | None = Field(default=None, gt=0)
    """``etdrk4``: largest step (units of tau_u; None = unbounded). DFC-SS needs only the final
    state: rtol 1e-2 with max_step 0.5 gives about 8e-5 on MNIST with 201 evaluations (DFC at the
    default tolerances: 486)."""
    order: int = Field(default=2, ge=1, le=2)
    """``linear_response``: order of the expansion in the voltage deviations: 1, the (secant-)
    linearised closed loop; 2 (default), its rule sums corrected by their first neglected term
    (the integrated remainders carried through the loop; docs/linear_response.md section 5). For
    DFC 2 is the one to use (about 1.5-2x the closed form's time, 300x closer on MNIST, no
    fallback at the Table-1 settings, where order 1 sends every sample to the fallback solver);
    without a rule (DFC-SS) the two are the same."""
    discretisation: Literal["continuous", "reference_euler"] = "continuous"
    """``linear_response``: the time discretisation it reproduces: ``continuous`` (the
    continuous-time dynamics, the dt -> 0 limit that ``etdrk4`` approximates) or
    ``reference_euler`` (the reference scheme's steps, ``dt``, ``steps``, its
    ``proactive_controller`` flag; needs ``inst_transmission = true``)."""
    linear_response_tol: float = Field(default=1e-6, gt=0, le=1)
    """``linear_response``: samples whose a-posteriori estimate of the relative error (the
    size of the first neglected term) exceeds this, or whose linearised loop is unstable, are
    simulated by :attr:`fallback_solver` instead."""
    fallback_solver: IntegratingSolver | None = None
    """``linear_response``: the integrating solver of the samples outside the series' range
    (with this section's other settings); None: ``etdrk4`` for the continuous discretisation,
    ``euler_reference`` for ``reference_euler``."""

    @model_validator(mode="after")
    def _bounded_horizon(self) -> SimulationConfig:
        if self.t_max is not None and self.t_max / self.dt + 1 > MAX_STEPS:
            raise ValueError(
                f"simulation.t_max / simulation.dt = {self.t_max} / {self.dt} gives more than "
                f"{MAX_STEPS} time points; raise dt or lower t_max"
            )
        if self.t_max is None and (self.n_steps - 1) * self.dt > MAX_TIME:
            raise ValueError(
                f"simulation.steps x simulation.dt = {self.n_steps - 1} x {self.dt} simulates "
                f"more than t_max = {MAX_TIME:g} (units of tau_u); lower dt or steps"
            )
        return self

    @property
    def n_steps(self) -> int:
        """Number of simulated time points (initial state included)."""
        if self.t_max is not None:
            return max(2, round(self.t_max / self.dt) + 1)
        return self.steps if self.steps is not None else 1000

    @property
    def tolerances(self) -> tuple[float, float]:
        """``(rtol, atol)`` with ``None`` resolved to the solver's default."""
        default = ETDRK4_TOLERANCES if self.solver == "etdrk4" else ODEINT_TOLERANCES
        return (
            self.rtol if self.rtol is not None else default[0],
            self.atol if self.atol is not None else default[1],
        )

    @property
    def horizon(self) -> float:
        """Simulated time ``T`` in units of tau_u."""
        return self.t_max if self.t_max is not None else (self.n_steps - 1) * self.dt
