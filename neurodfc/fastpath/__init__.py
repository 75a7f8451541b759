"""The reference-Euler scheme of the official code, on the fast path.

Same discretisation as the reference code (see :func:`neurodfc.solve.simulate` and
:class:`~neurodfc.fastpath.settings.FusedSettings`), computed with as little work as the scheme
allows:

* the input projection ``W_1 r_0 + b_1`` once per batch, the feedback of every layer in one
  matmul ``u @ Q^T`` (``Q = [Q_1; ...; Q_L]``), the apical low-pass and noise on all layers at
  once;
* in-place updates into preallocated buffers, no autograd, recording only what is asked for;
* ``tanh`` through ``2 sigmoid(2 v) - 1`` (torch's float64 ``tanh`` is not vectorised on CPU:
  about 4x slower than ``sigmoid``); the nonlinear-difference signal of a tanh layer is then
  ``tanh(v) - tanh(v_b) = 2 (sigmoid(2 v) - sigmoid(2 v_b))``, the factor 2 applied once at the
  end. Both agree with ``torch.tanh`` to a few ulp;
* the DFC running sums ``sum_t d_i^T r_{i-1}`` in chunks: ``chunk`` steps of ``d_i`` and
  ``r_{i-1}`` are stacked and summed by one ``[n_i, chunk B] @ [chunk B, n_{i-1}]`` product;
  the first layer sums ``d_1`` over time and multiplies by the constant ``r_0`` once;
* optional early termination (``early_stop``): once every sample meets the convergence
  criterion and (DFC sums) the rule signals change by less than ``EARLY_STOP_RATE`` (relative)
  per step, checked at chunk ends, the remaining steps are taken to stay at the last state: the
  trajectory sums get ``n_remaining`` times the last step's term (closed form). Not bit-exact:
  the error is the remaining motion of the state (see docs/performance.md for its size).

Noise (Euler-Maruyama apical noise of the sleep phase) is drawn as standard normals in float32
(torch's float64 normal sampler is about 8x slower on CPU), in blocks of
``min(NOISE_BLOCK, steps left)`` steps of shape ``[block, B, N]``, columns in layer order, and
added with type promotion. On CUDA the noise is drawn on the device by a generator seeded from
``generator``.

The pieces: :mod:`~neurodfc.fastpath.settings` (the run's settings :class:`FusedSettings`, its
result :class:`EulerRun`), :mod:`~neurodfc.fastpath.buffers` (the preallocated state and the
records), :mod:`~neurodfc.fastpath.step` (controller, apical compartments, layers: one step in
place), :mod:`~neurodfc.fastpath.signals` (the teaching signal into the chunked sums of
:mod:`neurodfc.core.sums`), :mod:`~neurodfc.fastpath.run` (the loop, early stop, completion),
:mod:`~neurodfc.fastpath.graphs` (on CUDA: whole periods of steps replayed as CUDA graphs).

The results equal the plain step-by-step loop (kept as the oracle in
``tests/unit/test_fastpath.py``) to about 1e-13 relative in float64, and the generic
:meth:`neurodfc.core.loop.ClosedLoop.euler_step` step for step (``tests/unit/test_core.py``).
"""

from __future__ import annotations

from neurodfc.core.noise import NOISE_BLOCK, GaussianNoise
from neurodfc.fastpath.run import euler_reference_fast, run_fused
from neurodfc.fastpath.settings import (
    DEFAULT_CHUNK,
    EARLY_STOP_RATE,
    ConvergedTest,
    EulerRun,
    FusedSettings,
)
from neurodfc.increments import fast_tanh

__all__ = [
    "DEFAULT_CHUNK",
    "EARLY_STOP_RATE",
    "NOISE_BLOCK",
    "ConvergedTest",
    "EulerRun",
    "FusedSettings",
    "NoiseSource",
    "euler_reference_fast",
    "fast_tanh",
    "run_fused",
]

NoiseSource = GaussianNoise
"""The standard normals of the noisy reference scheme (now public as
:class:`neurodfc.core.noise.GaussianNoise`; any :class:`neurodfc.core.noise.NoiseSource`
can be passed as ``noise_source``)."""
