"""Tutorial 3: your own property test of a theory claim, with hypothesis.

Two claims of the DFC paper, tested on random small networks drawn by hypothesis:

* Lemma 1 (fixed point): for a LINEAR network, the Lemma-1 control
  ``u_ss = (J Q + alpha_eff I)^-1 delta_L`` puts the network exactly where the controller rests:
  the output error at that state is ``e_ss = r_L* - r_L(ss) = alpha_eff u_ss`` (both leak
  conventions, any lam).
* Condition 2: for a linear network with the weight-product feedback ``Q_i = W_{i+1}^T ...
  W_L^T`` (``Q_L = I``), ``Q = J^T``, so the Condition-2 measure ``|P Q|_F / |Q|_F`` is 1.

Then a deliberately FALSE variant (the Lemma-1 fixed point holds to 1 % for tanh networks too)
shows how hypothesis reports (and shrinks) a counterexample.

    python docs/tutorials/03_property_test.py           # run the claims, demonstrate the false one
    python docs/tutorials/03_property_test.py --quick   # fewer examples (CI)
    pytest docs/tutorials/03_property_test.py           # the same tests under pytest
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodfc.config import (
    ControllerConfig,
    ExperimentConfig,
    FeedbackConfig,
    LossConfig,
    NetworkConfig,
)
from neurodfc.system import DFCSystem, condition2, jacobian, lemma1

NAME = "03_property_test"

# Profiles: "tutorial" (the default, 50 examples per claim) and "quick" (10 examples, for CI).
# derandomize=True makes every run draw the same examples, so the output below is
# reproducible; deadline=None because the first example pays torch's warm-up.
settings.register_profile("tutorial", max_examples=50, derandomize=True, deadline=None)
settings.register_profile("quick", max_examples=10, derandomize=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tutorial"))


# ---------------------------------------------------------------------------- strategies
# A strategy describes the space of inputs. Here: layer sizes [n_0, ..., n_L] with 2-4 layers
# of 1-6 units, the controller's parameters in their documented ranges, lam and a seed.
sizes_st = st.lists(st.integers(1, 6), min_size=3, max_size=5)
seed_st = st.integers(0, 2**16)


def build_system(
    sizes: list[int], act: str, k_p: float, alpha: float, lam: float, leak: str, seed: int
) -> DFCSystem:
    """A small DFC system from typed config objects (weights seeded by ``seed``)."""
    cfg = ExperimentConfig(
        network=NetworkConfig(sizes=sizes, hidden_activation=act, output_activation=act),
        controller=ControllerConfig(k_p=k_p, alpha=alpha, leak=leak),
        feedback=FeedbackConfig(init="weight_product"),
        loss=LossConfig(loss="mse", lam=lam, reduction="sum"),
        seed=seed,
    )
    return DFCSystem.from_config(cfg)


def batch(system: DFCSystem, seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs U[-1, 1] and regression targets N(0, 1) for ``system``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, system.network.sizes[0], generator=g, dtype=torch.float64) * 2 - 1
    y = torch.randn(n, system.network.n_out, generator=g, dtype=torch.float64)
    return x, y


def fixed_point_residual(system: DFCSystem, x: torch.Tensor, y: torch.Tensor) -> float:
    """``max_b |e_ss - alpha_eff u_ss| / |delta_L|``: how far the Lemma-1 state is from the
    controller's rest condition. ``e_ss`` comes from a plain forward pass of the network with
    the voltage shifts ``dv = Q u_ss``, not from the formula under test."""
    r_target = system.target(x, y)
    ss = lemma1(system, x, r_target)
    e_ss = r_target - ss.r[-1]  # output error at the Lemma-1 state
    delta = r_target - ss.r_ff[-1]  # output error at the feedforward state
    alpha_eff = system.cfg.controller.alpha_eff
    resid = torch.linalg.vector_norm(e_ss - alpha_eff * ss.u, dim=1)
    return float((resid / torch.linalg.vector_norm(delta, dim=1)).max())


# ---------------------------------------------------------------------------- the claims
@given(
    sizes=sizes_st,
    k_p=st.floats(0.0, 2.0),
    alpha=st.floats(0.0, 0.5),
    lam=st.floats(1e-3, 1.0),
    leak=st.sampled_from(["reference", "paper"]),
    seed=seed_st,
)
def test_lemma1_is_the_controller_fixed_point_for_linear_networks(
    sizes: list[int], k_p: float, alpha: float, lam: float, leak: str, seed: int
) -> None:
    system = build_system(sizes, "linear", k_p, alpha, lam, leak, seed)
    x, y = batch(system, seed)
    # exact up to rounding: the linear network's output moves by exactly J dv
    assert fixed_point_residual(system, x, y) < 1e-9


@given(sizes=sizes_st, seed=seed_st)
def test_weight_product_feedback_satisfies_condition2_for_linear_networks(
    sizes: list[int], seed: int
) -> None:
    system = build_system(sizes, "linear", 1.0, 0.01, 0.1, "reference", seed)
    x, _ = batch(system, seed)
    net = system.network
    v, _ = net.feedforward(x)
    J = jacobian(net, v)  # [B, n_L, N]
    Q = net.full_Q()  # [N, n_L]
    torch.testing.assert_close(Q.expand(x.shape[0], *Q.shape), J.transpose(1, 2))
    assert bool(torch.allclose(condition2(J, Q), torch.ones(x.shape[0], dtype=J.dtype)))


# ---------------------------------------------------------------------------- a false claim
# Not collected by pytest (its name does not start with "test_"): for a tanh network Lemma 1
# linearises the network around the feedforward state, so the rest condition holds only up to
# O(lam), and a 1 % bound fails for large enough lam. Hypothesis finds a failing example and
# shrinks it to a simple one.
@given(
    sizes=sizes_st,
    lam=st.floats(1e-3, 1.0),
    seed=seed_st,
)
def false_claim_lemma1_holds_to_1_percent_for_tanh_networks(
    sizes: list[int], lam: float, seed: int
) -> None:
    system = build_system(sizes, "tanh", 1.0, 0.01, lam, "reference", seed)
    x, y = batch(system, seed)
    residual = fixed_point_residual(system, x, y)
    assert residual < 0.01, f"residual |e_ss - alpha u_ss| / |delta_L| = {residual:.3g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 examples per claim (CI)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "neurodfc_tutorials" / NAME,
        help="folder for the report of the false claim",
    )
    args = p.parse_args(argv)
    if args.quick:
        settings.load_profile("quick")
    n = settings.default.max_examples
    args.out.mkdir(parents=True, exist_ok=True)

    # A @given test is an ordinary function: calling it runs all its examples and raises on
    # the first failing one.
    for test in (
        test_lemma1_is_the_controller_fixed_point_for_linear_networks,
        test_weight_product_feedback_satisfies_condition2_for_linear_networks,
    ):
        test()
        print(f"PASSED {test.__name__} ({n} examples)")

    # The false claim fails. Hypothesis re-raises the assertion of the smallest failing
    # example it found and attaches the example as a note ("Falsifying example: ...").
    try:
        false_claim_lemma1_holds_to_1_percent_for_tanh_networks()
    except AssertionError as err:
        notes = "\n".join(getattr(err, "__notes__", []))
        print("FALSIFIED false_claim_lemma1_holds_to_1_percent_for_tanh_networks, as expected:")
        print(f"AssertionError: {err}")
        print(notes)
        (args.out / "counterexample.txt").write_text(notes + "\n")
    else:
        print("the false claim was not falsified: unexpected")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
