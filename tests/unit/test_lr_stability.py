"""The linear-response solver's stability proof without eigenvalues
(:func:`neurodfc.solvers.lr_closed_forms.contracts`): a contracting propagator over the horizon
is claimed only for matrices whose eigenvalues (chosen by construction, the oracle) are
stable, and it is found for clearly stable ones; in the solver, samples it does not prove take
the eigenvalues, so unstable samples still fall back with reason 2 on both discretisations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodfc.solve import simulate
from neurodfc.solvers.lr_closed_forms import contracts
from tests.helpers import make_system, random_batch

DT, STEPS = 0.05, 401  # T = 20


def _with_spectrum(real: torch.Tensor, imag: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Matrices [B, 2k, 2k] with eigenvalues ``real +- i imag`` (k pairs), in a random,
    non-orthogonal basis."""
    B, k = real.shape
    blocks = torch.zeros(B, 2 * k, 2 * k, dtype=torch.float64)
    for j in range(k):
        a, b = real[:, j], imag[:, j]
        blocks[:, 2 * j, 2 * j], blocks[:, 2 * j, 2 * j + 1] = a, -b
        blocks[:, 2 * j + 1, 2 * j], blocks[:, 2 * j + 1, 2 * j + 1] = b, a
    V = torch.randn(B, 2 * k, 2 * k, generator=g, dtype=torch.float64) + 3 * torch.eye(2 * k)
    return V @ blocks @ torch.linalg.inv(V)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    shift=st.floats(-1.0, 0.3),
    discrete=st.booleans(),
)
def test_contraction_is_claimed_only_for_stable_matrices(
    seed: int, shift: float, discrete: bool
) -> None:
    """Random spectra around the stability boundary (real parts in ``[shift - 1, shift]``,
    imaginary parts up to 2): where ``contracts`` says yes, every eigenvalue is stable (the
    scheme: ``|1 + dt lambda| < 1``)."""
    g = torch.Generator().manual_seed(seed)
    real = shift - torch.rand(16, 3, generator=g, dtype=torch.float64)
    imag = 2 * torch.rand(16, 3, generator=g, dtype=torch.float64)
    A = _with_spectrum(real, imag, g)
    if discrete:
        M = torch.eye(6, dtype=torch.float64) + DT * A
        ok = contracts(M, discrete=True, horizon=0.0, n=STEPS)
        mod = torch.sqrt((1 + DT * real) ** 2 + (DT * imag) ** 2)
        stable = mod.amax(-1) < 1.0
    else:
        ok = contracts(A, discrete=False, horizon=DT * (STEPS - 1), n=STEPS)
        stable = real.amax(-1) < 0.0
    assert not bool((ok & ~stable).any())


@pytest.mark.parametrize("discrete", [True, False])
def test_contraction_is_found_for_a_clearly_stable_loop(discrete: bool) -> None:
    """Eigenvalues with real parts <= -0.5 over ``T = 20`` (``exp(-10)`` times the basis'
    condition): proven; one eigenvalue at +0.05: not."""
    g = torch.Generator().manual_seed(0)
    real = -0.5 - torch.rand(8, 3, generator=g, dtype=torch.float64)
    real[4:, 0] = 0.05
    imag = torch.rand(8, 3, generator=g, dtype=torch.float64)
    A = _with_spectrum(real, imag, g)
    M = torch.eye(6, dtype=torch.float64) + DT * A if discrete else A
    ok = contracts(M, discrete=discrete, horizon=DT * (STEPS - 1), n=STEPS)
    assert ok.tolist() == [True] * 4 + [False] * 4
    assert math.isclose(DT * (STEPS - 1), 20.0)


def test_unstable_samples_fall_back_on_both_discretisations() -> None:
    """Random feedback, tanh, large inputs: some samples' linearised loops are unstable, some
    stable. The scheme's tangent loop is proven stable by its contracting step-matrix powers
    (or else by eigenvalues), the continuous one by eigenvalues on the CPU; at ``dt = 0.01``
    the two discretisations have the same unstable samples (reason 2), and both keep the
    others."""
    system = make_system([4, 6, 5, 3], act="tanh", k_p=1.5, alpha=0.01, seed=3,
                         fb_init="xavier_normal")  # fmt: skip
    x, y = random_batch(system, 8)
    x = 3 * x
    rt = system.target_of(system.network(x), y)
    unstable = []
    for disc, fb in (("continuous", "rk4"), ("reference_euler", "euler_reference")):
        sim = system.cfg.simulation.model_copy(
            update={
                "dt": 0.01,
                "steps": 151,
                "solver": "linear_response",
                "discretisation": disc,
                "fallback_solver": fb,
                "linear_response_tol": 1.0,
            }
        )
        reason = simulate(system, x, rt, sim=sim).extras["lr_reason"]
        unstable.append(reason == 2)
        assert bool((reason == 2).any()) and bool((reason == 0).any())
    assert torch.equal(unstable[0], unstable[1])
