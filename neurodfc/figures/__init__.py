"""Figures of analysis results, drawn from ``xarray.Dataset`` only (nothing is recomputed).

* :func:`plot_losses`, :func:`plot_accuracy`, :func:`plot_status`: per-epoch curves of a
  training run (``metrics.nc``);
* :func:`plot_step_metric`: one logged metric over training (dim ``step``) with the paper's
  rolling mean +- rolling std (Fig. 3: window 30);
* :func:`plot_error_norm`: ``|e(t)|`` of a simulation;
* :func:`plot_fig3_panels`: the six panels of the paper's Fig. 3 (one line per run);
* :func:`plot_fig2`, :func:`plot_figS1`, :func:`plot_figC2C3`, :func:`plot_alignment_runs`:
  the figures of the ``analyses/`` scripts.

Every function writes a PNG and returns its path.

The package is split by concern: :mod:`~neurodfc.figures.common` (axis labels, the rolling
mean +- std, the ``step`` axis), :mod:`~neurodfc.figures.training` (training curves and report
panels), :mod:`~neurodfc.figures.dynamics` (closed-loop dynamics) and
:mod:`~neurodfc.figures.paper` (the paper's figures); every public name is importable from
``neurodfc.figures``.
"""

from neurodfc.figures.common import (
    LABELS,
    ROLLING_WINDOW,
    plot_rolling,
    rolling_mean_std,
    step_axis,
)
from neurodfc.figures.dynamics import plot_error_norm
from neurodfc.figures.paper import (
    FIG3_PANELS,
    plot_alignment_runs,
    plot_fig2,
    plot_fig3_panels,
    plot_figC2C3,
    plot_figS1,
)
from neurodfc.figures.training import (
    plot_accuracy,
    plot_losses,
    plot_status,
    plot_step_metric,
)

__all__ = [
    "FIG3_PANELS",
    "LABELS",
    "ROLLING_WINDOW",
    "plot_accuracy",
    "plot_alignment_runs",
    "plot_error_norm",
    "plot_fig2",
    "plot_fig3_panels",
    "plot_figC2C3",
    "plot_figS1",
    "plot_losses",
    "plot_rolling",
    "plot_status",
    "plot_step_metric",
    "rolling_mean_std",
    "step_axis",
]
