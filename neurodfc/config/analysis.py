"""Config section ``[analysis]``: the metrics logged during training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from neurodfc.config.base import _Section

AnalysisMetric = Literal["alignment", "conditions", "stability", "convergence", "nullspace"]
AlignmentReference = Literal["bp", "gn", "mn", "ssa"]


def _default_metrics() -> list[AnalysisMetric]:
    return ["alignment", "conditions", "stability"]


def _default_references() -> list[AlignmentReference]:
    return ["bp", "gn", "mn", "ssa"]


class AnalysisConfig(_Section):
    """Metrics logged during training (see ``neurodfc.analysis``); off unless ``log_interval``
    is > 0. Logged values go into ``metrics.nc`` with dim ``step``."""

    log_interval: int = Field(default=0, ge=0)
    """Log the metrics of every k-th minibatch of each epoch (batch index within the epoch
    ``% k == 0``, as the reference code's log_interval); 0 = off."""
    metrics: list[AnalysisMetric] = Field(default_factory=_default_metrics)
    """Which metric groups to log: ``alignment`` (angles of the update against BP, GN, MN,
    DFC-SSA), ``conditions`` (Conditions 1-3, feedback alignment), ``stability`` (max real
    eigenvalues of the A matrices), ``convergence`` (status, settling time, decay rate),
    ``nullspace`` (per layer, the relative norm of the weight update's component in the null
    space of ``d r_L / d W_i``; reference: save_nullspace_norm_ratio)."""
    against: list[AlignmentReference] = Field(default_factory=_default_references)
    """References of the alignment angles."""
    mn_rule: Literal["auto", "nonlinear_difference", "voltage_difference"] = "auto"
    """How the MN reference turns ``dv = J^T (J J^T + gamma I)^-1 dL/dr_L`` into a weight
    update: ``nonlinear_difference`` = ``mean_b [phi(v^- + dv) - phi(v^-)] r^-T``,
    ``voltage_difference`` = ``mean_b dv r^-T``; ``auto`` = as the reference code, which uses
    the nonlinear one exactly when ``method.rule = "nonlinear_difference"`` (every paper
    config) and the voltage difference otherwise."""
    ssa_rates: Literal["simulated", "analytic"] = "simulated"
    """Presynaptic rates of the SSA reference (Lemma-1 ``dv``): ``simulated`` = the simulated
    end state's rates (the reference code's NDI angle; excluded samples keep the feedforward
    rates), ``analytic`` = the Lemma-1 rates (the DFC-SSA update itself)."""
    gamma: float = Field(default=0.1, ge=0)
    """Damping ``gamma`` of the GN and MN reference updates (reference: gn_damping)."""
    gammas: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [0.0, 0.1, 1.0])
    """Dampings of the feedback-alignment angle ``angle(Q, J^T (J J^T + gamma I)^-1)``."""
    stability_at: Literal["auto", "simulated", "analytic", "feedforward"] = "auto"
    """State at which the A matrices are linearised; ``auto``: the simulated final state for
    simulating methods (reference: eigenvalues_bcn), the Lemma-1 state otherwise."""
    max_samples: int | None = Field(default=None, ge=1)
    """Use only the first N samples of a logged minibatch (None: the whole batch)."""
