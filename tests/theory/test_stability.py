"""Stability of the controlled dynamics (P6).

With k_p = 0 and tau_v << tau_u the network voltages follow the controller almost instantly, so
the slow dynamics are ``du/dt = delta - (J Q + alpha I) u`` and the loop converges iff
Condition 3 holds (every eigenvalue of J Q has real part > -alpha). More generally the linearised
closed loop A_PI predicts convergence: max Re eig(A_PI) < 0.

Linear networks make J constant, so the linearisation is exact and the prediction is sharp.
"Converges" is decided from the reference-Euler simulation alone: the leaky integrator's input
``e - alpha u`` (zero exactly at the fixed point) must shrink by orders of magnitude, or grow by
orders of magnitude (or overflow) for a divergent loop.
"""

from __future__ import annotations

import math

import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from neurodfc.solve import simulate
from neurodfc.system import closed_loop_matrices, jacobian, max_real_eig
from tests.helpers import make_system, random_batch

MARGIN = 0.2  # skip draws whose decisive eigenvalue is closer than this to the boundary
E_FOLDS = 9.0  # simulate for T = E_FOLDS / margin: the decisive mode changes by e^{+-9}


@settings(max_examples=40)
@given(
    sizes=st.lists(st.integers(2, 6), min_size=3, max_size=4),
    seed=st.integers(0, 10_000),
    q_mode=st.sampled_from(["xavier", "jacobian_times_M"]),
    sign=st.sampled_from([1.0, -1.0, 1.0]),
    scale=st.floats(0.3, 2.0),
    output_identity=st.booleans(),
    alpha=st.floats(0.0, 0.1),
    tau_ratio=st.floats(0.02, 0.05),
)
def test_p6_condition3_and_A_PI_predict_convergence(
    sizes: list[int],
    seed: int,
    q_mode: str,
    sign: float,
    scale: float,
    output_identity: bool,
    alpha: float,
    tau_ratio: float,
) -> None:
    dt = tau_ratio / 5
    system = make_system(
        sizes,
        act="linear",
        k_p=0.0,
        alpha=alpha,
        tau_ratio=tau_ratio,
        fb_init="xavier_normal",
        seed=seed,
        feedback={"output_identity": output_identity},
        sim={"dt": dt},
    )
    net = system.network
    x, y = random_batch(system, 1, seed=seed + 1)
    with torch.no_grad():
        v, _ = net.feedforward(x)
        J = jacobian(net, v)[0]
        if q_mode == "jacobian_times_M":  # Condition 2 holds; the sign decides Condition 3
            g = torch.Generator().manual_seed(seed)
            M = torch.eye(net.n_out, dtype=torch.float64) + 0.3 * torch.randn(
                net.n_out, net.n_out, generator=g, dtype=torch.float64
            )
            new_Q = net.split_units(J.T @ M, dim=0)
            for q, q_new in zip(net.Q, new_Q, strict=True):
                q.copy_(q_new)
        for q in net.Q:
            q.mul_(sign * scale)
        JQ = J @ net.full_Q()
        eig_JQ = torch.linalg.eigvals(JQ)
        condition3_margin = float(eig_JQ.real.min()) + alpha  # > 0 <=> Condition 3
        lam_max = float(max_real_eig(closed_loop_matrices(system, v)["A_PI"])[0])
    # time-scale separation (tau_v |eig(J Q)| << tau_u) and no borderline draws
    assume(tau_ratio * float(eig_JQ.abs().max()) < 0.5)
    assume(abs(condition3_margin) > MARGIN and abs(lam_max) > MARGIN)

    decisive = min(abs(condition3_margin), abs(lam_max))
    steps = math.ceil(E_FOLDS / decisive / dt) + 1
    sim = system.cfg.simulation.model_copy(update={"steps": steps, "record_every": steps})
    sol = simulate(system, x, system.target(x, y), sim=sim)
    # integrator input e - alpha u (k_p = 0: both leak conventions), zero only at the fixed point
    drive = torch.linalg.vector_norm(sol.e - alpha * sol.u, dim=-1)[:, 0]
    growth = float(drive[-1] / drive[0])
    finite = bool(torch.isfinite(sol.u_final).all() and torch.isfinite(sol.r_final[-1]).all())
    converged = finite and growth < 1e-2
    diverged = (not finite) or growth > 1e2
    event(f"converged: {converged}")
    assert converged != diverged, f"undecided: growth {growth:.3g} over T = {steps * dt:.3g}"

    assert converged == (condition3_margin > 0), (condition3_margin, lam_max, growth)
    assert converged == (lam_max < 0), (condition3_margin, lam_max, growth)
