"""Strong-DFC and single-phase feedback learning (Meulemans, Tristany Farinha, Cervera,
Sacramento, Grewe, "Minimizing Control for Credit Assignment with Strong Feedback", ICML 2022;
code github mariacer/strong_dfc).

* :mod:`neurodfc.strong.dynamics`: the noisy closed loop with its own simulation loop
  (OU noise, high-pass filtered control, strong target, loss-gradient error);
* :mod:`neurodfc.strong.methods`: the ``strong_dfc`` (two-phase) and ``strong_dfc_single``
  (single-phase) methods;
* :mod:`neurodfc.strong.analysis`: the surrogate ``H = 1/2 |Q u_ss|^2``, its gradient at the
  controlled steady state and the angle of an update to it;
* :mod:`neurodfc.strong.training`: :func:`~neurodfc.strong.training.train_strong`, training
  through :func:`neurodfc.training.train` (import it from there: it sits above
  :mod:`neurodfc.training`).
"""

from neurodfc.strong.dynamics import (
    LowPass,
    StrongDynamics,
    StrongRun,
    high_pass,
    low_pass,
    simulate_strong,
)
from neurodfc.strong.methods import (
    StrongDFC,
    StrongDFCSingle,
    StrongUpdate,
    feedback_scales,
    forward_dynamics,
    label_target,
    sleep_dynamics,
    strong_target,
)

__all__ = [
    "LowPass",
    "StrongDFC",
    "StrongDFCSingle",
    "StrongDynamics",
    "StrongRun",
    "StrongUpdate",
    "feedback_scales",
    "forward_dynamics",
    "high_pass",
    "label_target",
    "low_pass",
    "simulate_strong",
    "sleep_dynamics",
    "strong_target",
]
