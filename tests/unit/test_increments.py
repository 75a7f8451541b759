"""Rate increments phi(a + z) - phi(a) (``neurodfc.increments``) against the increment evaluated
with 50 significant digits (mpmath, installed with torch through sympy): an oracle independent of
the identities the code uses and exact at every scale, where a float64 direct difference loses
all digits once the increment falls below ~1e-16 |phi(a)|."""

from __future__ import annotations

import mpmath
import pytest
import torch

from neurodfc.increments import RateIncrement

ACTS = ("tanh", "sigmoid", "relu", "linear")
MP_PHI = {
    "tanh": mpmath.tanh,
    "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
    "relu": lambda v: max(v, mpmath.mpf(0)),
    "linear": lambda v: v,
}
TORCH_PHI = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


def _points(dtype: torch.dtype, scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = 3.0 * torch.randn(12, 25, generator=g, dtype=torch.float64)
    z = scale * torch.randn(12, 25, generator=g, dtype=torch.float64)
    return a.to(dtype), z.to(dtype)


def _bound(
    act: str, a: torch.Tensor, z: torch.Tensor, want: torch.Tensor, relative: bool = False
) -> torch.Tensor:
    """Error bound: a few ulp of the increment; tanh: the denominator 1 + tanh(a) tanh(z) carries
    an absolute rounding error ~2 eps, amplified where it is small (a and z large and of opposite
    sign, far from the small deviations the identity is for); relu: the branch a <= 0 < a + z
    rounds a + z (absolute error up to eps |a|)."""
    eps = torch.finfo(a.dtype).eps
    a64, z64 = a.double(), z.double()
    rel = torch.full_like(want, 8.0)
    if act == "tanh":
        rel = rel + 4.0 / (1.0 + torch.tanh(a64) * torch.tanh(z64))
    bound = rel * eps * want.abs()
    if act == "tanh" and a.dtype == torch.float64 and not relative:
        # float64 evaluates tanh(z) as 2 sigmoid(2 z) - 1: absolute error ~eps in tanh(z)
        bound = bound + 4 * eps * torch.cosh(a64).pow(-2)
    if act == "relu":
        bound = bound + eps * a64.abs()
    return bound


def _exact(act: str, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The increment of the (exactly representable) inputs, to 50 digits, rounded to float64."""
    phi = MP_PHI[act]
    with mpmath.workdps(50):
        vals = [
            float(phi(mpmath.mpf(float(ai)) + mpmath.mpf(float(zi))) - phi(mpmath.mpf(float(ai))))
            for ai, zi in zip(a.flatten().tolist(), z.flatten().tolist(), strict=True)
        ]
    return torch.tensor(vals, dtype=torch.float64).reshape(a.shape)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scale", [1e-6, 1e-4, 1e-2, 1.0])
def test_float32_increment_is_accurate_relative_to_the_increment(act: str, scale: float) -> None:
    a, z = _points(torch.float32, scale)
    got = RateIncrement(act, a)(z, torch.empty_like(z)).double()
    want = _exact(act, a, z)
    assert bool(((got - want).abs() <= _bound(act, a, z, want)).all())
    # the naive float32 difference is far worse at small scales (the point of the identities)
    if scale <= 1e-4 and act in TORCH_PHI and act != "relu":
        naive = (TORCH_PHI[act](a + z) - TORCH_PHI[act](a)).double()
        assert float((naive - want).norm()) > 100 * float((got - want).norm())


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scale", [1e-8, 1e-3, 1.0])
def test_float64_increment_is_accurate_to_a_few_ulp(act: str, scale: float) -> None:
    a, z = _points(torch.float64, scale, seed=1)
    got = RateIncrement(act, a)(z, torch.empty_like(z))
    want = _exact(act, a, z)
    assert bool(((got - want).abs() <= _bound(act, a, z, want)).all())


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scale", [1e-12, 1e-8, 1e-3, 1.0])
def test_relative_float64_increment_is_accurate_relative_to_the_increment(
    act: str, scale: float
) -> None:
    """``relative=True`` (the linear-response solver's secants and remainders): a few ulp of
    the increment itself in float64 too, where the default's absolute ~eps would be 1e-4 of an
    increment of 1e-12."""
    a, z = _points(torch.float64, scale, seed=2)
    got = RateIncrement(act, a, relative=True)(z, torch.empty_like(z))
    want = _exact(act, a, z)
    assert bool(((got - want).abs() <= _bound(act, a, z, want, relative=True)).all())
    if act == "tanh" and scale <= 1e-8:
        fast = RateIncrement(act, a)(z, torch.empty_like(z))
        assert float(((fast - want) / want).abs().max()) > 1e3 * float(
            ((got - want) / want).abs().max()
        )


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="softplus"):
        RateIncrement("softplus", torch.zeros(2, 2))
