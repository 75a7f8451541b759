"""Analysis of DFC systems: every function reads a system and a minibatch and returns an
``xarray.Dataset`` with labelled dims, units and long names; nothing here trains or mutates a
system.

* :func:`alignment`: angles of a method's update against BP, damped GN, MN and DFC-SSA;
* :func:`nullspace`: the part of a weight update the outputs cannot see (per layer);
* :func:`conditions`: Conditions 1-3 and the alignment of Q with ``J^T`` and ``J^+``;
* :func:`stability`: eigenvalues of ``A_I``, ``A~_I``, ``A_I_inst``, ``A_PI``;
* :func:`convergence`: status, settling time, ``|e(t)|`` decay rate, distance to Lemma 1;
* :class:`AnalysisLogger`: the same metrics logged during training (``[analysis]`` config).

``docs/metrics.md`` gives every formula.
"""

from neurodfc.analysis._common import angle, batched_angle
from neurodfc.analysis.alignment import (
    MN_RULES,
    REFERENCES,
    SSA_RATES,
    alignment,
    mn_update,
    reference_update,
    resolve_mn_rule,
    ssa_update,
)
from neurodfc.analysis.conditions import condition1, condition3_margin, conditions, damped_pinv
from neurodfc.analysis.convergence import convergence, tail_decay_rate
from neurodfc.analysis.monitor import AnalysisLogger, summarize
from neurodfc.analysis.nullspace import nullspace, nullspace_ratio_layers
from neurodfc.analysis.stability import MATRICES, stability

__all__ = [
    "MATRICES",
    "MN_RULES",
    "REFERENCES",
    "SSA_RATES",
    "AnalysisLogger",
    "alignment",
    "angle",
    "batched_angle",
    "condition1",
    "condition3_margin",
    "conditions",
    "convergence",
    "damped_pinv",
    "mn_update",
    "nullspace",
    "nullspace_ratio_layers",
    "reference_update",
    "resolve_mn_rule",
    "ssa_update",
    "stability",
    "summarize",
    "tail_decay_rate",
]
