"""The closed loop defined once, from typed components (see docs/architecture.md).

* :mod:`neurodfc.core.teaching` -- the forward rules' teaching signal;
* :mod:`neurodfc.core.noise` -- noise sources (standard normals per step; replayable);
* :mod:`neurodfc.core.loop` -- :class:`~neurodfc.core.loop.ClosedLoop`: neuron layers,
  controller, feedback and apical compartment assembled into the continuous-time vector field
  and the reference Euler step;
* :mod:`neurodfc.core.split` -- the same loop as ``f(y) = D y + N(y)`` in deviation form for
  exponential integrators;
* :mod:`neurodfc.core.solution` -- :class:`~neurodfc.core.solution.Solution`, the per-sample
  :class:`~neurodfc.core.solution.Status` and its classification.
"""
