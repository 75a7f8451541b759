"""Alignment of a method's minibatch update with BP, damped GN, MN and DFC-SSA (paper Fig. 3).

All updates are compared in PyTorch's gradient convention (``W <- W - lr grad``), so an angle
of 0 means "the same descent direction". References, for a minibatch of B samples with
feedforward voltages / rates ``v_i^-``, ``r_i^-``, Jacobian ``J = d r_L / d v`` and loss
gradient ``g = dL/dr_L`` at ``r_L^-`` (``delta_L = r_L* - r_L^- = -lam g``):

* ``bp``:  the autograd gradient of the batch loss;
* ``gn``:  damped Gauss-Newton over all weights and biases,
  ``-mean_b J_theta^T (J_theta J_theta^T + gamma I)^-1 delta_b`` (reference: save_gn_angles);
* ``mn``:  damped minimum-norm voltage changes ``dv = J^T (J J^T + gamma I)^-1 g`` per sample
  (reference: compute_gnt_update, with the loss gradient itself), turned into a weight update
  by ``mn_rule`` (reference: compute_gnt_parameter_update at the feedforward rates):

  - ``nonlinear_difference``: ``(1/B) sum_b [phi(v_i^- + dv_i) - phi(v_i^-)] r_{i-1}^-T``
    (bias: the batch mean of the bracket), the reference code's variant whenever the forward
    rule is the nonlinear difference (every paper config);
  - ``voltage_difference``: ``(1/B) sum_b dv_i r_{i-1}^-T``;
  - ``auto``: the former when ``method.rule = "nonlinear_difference"``, else the latter.

  The nonlinear variant depends on the scale of ``g`` (the config's ``loss.reduction``; the
  reference differentiates the batch mean), the linear one does not;
* ``ssa``: the Lemma-1 voltage changes of DFC-SSA (``dv = Q (J Q + alpha_eff I)^-1 delta_L``)
  in the method's forward rule, with presynaptic rates chosen by ``ssa_rates``:
  ``simulated`` = the rates at the end of a simulation of the batch (the reference code's NDI
  angle; excluded samples keep their feedforward rates, as there), ``analytic`` = the Lemma-1
  rates, i.e. the DFC-SSA update itself (:class:`~neurodfc.methods.DFCSSA`).

The scale of every reference is irrelevant (angles only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis._common import DEGREE, angle, finish, layer_coord, var
from neurodfc.components.target import loss_gradient
from neurodfc.methods import BP, DFCSSA, Method, Update, gauss_newton_step, get_method, min_norm_dv
from neurodfc.methods.dfc import excluded_samples
from neurodfc.methods.rules import steady_state_gradients
from neurodfc.solve import simulate
from neurodfc.system import DFCSystem, jacobian, lemma1

REFERENCES = ("bp", "gn", "mn", "ssa")
"""The reference updates :func:`alignment` compares against (see the module docstring)."""
MN_RULES = ("auto", "nonlinear_difference", "voltage_difference")
"""Values of ``mn_rule`` (see the module docstring)."""
SSA_RATES = ("simulated", "analytic")
"""Values of ``ssa_rates`` (see the module docstring)."""


def resolve_mn_rule(system: DFCSystem, mn_rule: str) -> str:
    """The MN construction ``mn_rule`` stands for: ``auto`` becomes ``nonlinear_difference`` when
    ``system.cfg.method.rule`` is the nonlinear difference (the reference code's
    ``use_nonlinear_gnt``), else ``voltage_difference``; the others are returned as they are.

    Args:
        system: the DFC system (its ``method.rule``).
        mn_rule: ``auto``, ``nonlinear_difference`` or ``voltage_difference``.
    """
    if mn_rule not in MN_RULES:
        raise ValueError(f"unknown mn_rule {mn_rule!r}; allowed: {list(MN_RULES)}")
    if mn_rule != "auto":
        return mn_rule
    rule = system.cfg.method.rule
    return "nonlinear_difference" if rule == "nonlinear_difference" else "voltage_difference"


def mn_update(
    system: DFCSystem, x: torch.Tensor, y: torch.Tensor, gamma: float, mn_rule: str = "auto"
) -> Update:
    """The MN reference update of one minibatch (gradient sign convention, see the module
    docstring).

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L].
        gamma: damping >= 0 of ``J^T (J J^T + gamma I)^-1``.
        mn_rule: ``auto``, ``nonlinear_difference`` or ``voltage_difference``.
    """
    rule = resolve_mn_rule(system, mn_rule)
    net, lc = system.network, system.cfg.loss
    with torch.no_grad():
        v, r = net.feedforward(x)
        out = r[-1]
        g = loss_gradient(out, y, lc.loss, lc.reduction)
        dv = net.split_units(min_norm_dv(jacobian(net, v), g, gamma))
        gW, gb = [], []
        for i, (rp, d) in enumerate(zip([x, *r[:-1]], dv, strict=True)):
            if rule == "nonlinear_difference":
                d = net.act(i, v[i] + d) - net.act(i, v[i])
            gW.append(d.T @ rp / x.shape[0])
            gb.append(d.mean(0) if net.has_bias else torch.zeros_like(d[0]))
    return Update(grad_W=gW, grad_b=gb, loss=torch.tensor(float("nan")), output=out)


def ssa_update(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    ssa_rates: str = "simulated",
    generator: torch.Generator | None = None,
) -> Update:
    """The SSA reference update of one minibatch: the Lemma-1 ``dv`` in the method's forward
    rule, with simulated or Lemma-1 presynaptic rates (see the module docstring).

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L].
        ssa_rates: ``simulated`` (reference NDI angle) or ``analytic`` (DFC-SSA itself).
        generator: noise generator of the simulation (used only if the config has noise).
    """
    if ssa_rates not in SSA_RATES:
        raise ValueError(f"unknown ssa_rates {ssa_rates!r}; allowed: {list(SSA_RATES)}")
    if ssa_rates == "analytic":
        return DFCSSA().update(system, x, y)
    net, cfg = system.network, system.cfg
    with torch.no_grad():
        out = net(x)
        r_target = system.target_of(out, y)
        ss = lemma1(system, x, r_target)
        sol = simulate(system, x, r_target, record=False, generator=generator)
        drop = excluded_samples(sol.status, cfg.method.include_non_converged)
        r_prev = [
            torch.where(drop[:, None], rf, rs)
            for rf, rs in zip([x, *ss.r_ff[:-1]], [x, *sol.r_final[:-1]], strict=True)
        ]
        gW, gb = steady_state_gradients(net, ss.dv, r_prev, cfg.method.rule, ss.v_ff)
    return Update(grad_W=gW, grad_b=gb, loss=torch.tensor(float("nan")), output=out)


def reference_update(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    name: str,
    gamma: float,
    *,
    mn_rule: str = "auto",
    ssa_rates: str = "simulated",
    generator: torch.Generator | None = None,
) -> Update:
    """A reference update of one minibatch in the gradient sign convention.

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L].
        name: ``bp``, ``gn``, ``mn`` or ``ssa`` (see the module docstring).
        gamma: damping >= 0 of ``gn`` and ``mn``; ``gamma = 0`` needs a full-row-rank ``J``.
        mn_rule: construction of ``mn`` (:data:`MN_RULES`).
        ssa_rates: presynaptic rates of ``ssa`` (:data:`SSA_RATES`).
        generator: noise generator of the ``ssa`` simulation (only with noise).
    """
    if name == "bp":
        return BP().update(system, x, y)
    if name == "ssa":
        return ssa_update(system, x, y, ssa_rates, generator)
    if name == "mn":
        return mn_update(system, x, y, gamma, mn_rule)
    if name == "gn":
        with torch.no_grad():
            out = system.network(x)
            delta = system.target_of(out, y) - out
            dW, db = gauss_newton_step(system, x, delta, gamma)
        nan = torch.tensor(float("nan"))
        return Update(grad_W=[-w for w in dW], grad_b=[-b for b in db], loss=nan, output=out)
    raise ValueError(f"unknown alignment reference {name!r}; allowed: {list(REFERENCES)}")


def alignment(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str | Method | Update | None = None,
    *,
    against: Sequence[str] = REFERENCES,
    gamma: float = 0.1,
    mn_rule: str = "auto",
    ssa_rates: str = "simulated",
    generator: torch.Generator | None = None,
) -> xr.Dataset:
    """Angles (degrees, in [0, 180]) between a method's minibatch update and the references.

    Args:
        system: the DFC system (weights, feedback, controller, loss); never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L].
        method: a method name (``dfc``, ``dfc_ss``, ``dfc_ssa``, ``mn``, ``gn``, ``dfa``,
            ``bp``), a :class:`~neurodfc.methods.Method`, or a precomputed
            :class:`~neurodfc.methods.Update` of this batch; default ``system.cfg.method``.
        against: references among ``bp``, ``gn``, ``mn``, ``ssa`` (see the module docstring).
        gamma: damping ``gamma`` >= 0 of ``gn`` and ``mn`` (Fig. 3: 0.1).
        mn_rule: construction of the ``mn`` reference (:data:`MN_RULES`; default ``auto``, the
            reference code's choice).
        ssa_rates: presynaptic rates of the ``ssa`` reference (:data:`SSA_RATES`; default
            ``simulated``, the reference code's NDI angle).
        generator: noise generator for simulating methods and the ``ssa`` simulation (used
            only if the config has noise).

    Returns:
        Dataset with coords ``reference`` and ``layer`` (1..L) and variables
        ``angle_W`` (reference, layer): angle of the weight update of layer i,
        ``angle_b`` (reference, layer): of the bias update (NaN without biases),
        ``angle_network`` (reference): of all weights and biases concatenated.
        Each variable and the Dataset carry the attributes ``mn_rule`` (resolved) and
        ``ssa_rates``.

    Examples:
        DFC-SSA's update is its own ``ssa`` reference with the Lemma-1 rates (angle 0) and a
        descent direction (less than 90 degrees from BP) on this batch:

        >>> import torch
        >>> from neurodfc.config import config_from_dict
        >>> from neurodfc.system import DFCSystem
        >>> system = DFCSystem.from_config(config_from_dict({"network": {"sizes": [4, 3, 2]}}))
        >>> x = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(5, 4)
        >>> y = torch.zeros(5, 2, dtype=torch.float64)  # MSE targets [B, n_L]
        >>> ds = alignment(system, x, y, "dfc_ssa", against=["bp", "ssa"], ssa_rates="analytic")
        >>> dict(ds.sizes)
        {'reference': 2, 'layer': 2}
        >>> round(float(ds.angle_network.sel(reference="ssa")), 3)
        0.0
        >>> bool(ds.angle_network.sel(reference="bp") < 90)
        True
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    rule = resolve_mn_rule(system, mn_rule)
    if ssa_rates not in SSA_RATES:
        raise ValueError(f"unknown ssa_rates {ssa_rates!r}; allowed: {list(SSA_RATES)}")
    refs = list(against)
    unknown = [r for r in refs if r not in REFERENCES]
    if unknown:
        raise ValueError(f"unknown alignment references {unknown}; allowed: {list(REFERENCES)}")
    net = system.network
    if isinstance(method, Update):
        up = method
        method_name = "precomputed"
    else:
        if isinstance(method, Method):
            m = method
        else:
            m = get_method(system.cfg.method.name if method is None else method)
        up = m.update(system, x, y, generator=generator)
        method_name = m.name
    L = net.depth
    aW = np.full((len(refs), L), np.nan)
    ab = np.full((len(refs), L), np.nan)
    an = np.full(len(refs), np.nan)
    for k, name in enumerate(refs):
        ref = reference_update(
            system, x, y, name, gamma, mn_rule=rule, ssa_rates=ssa_rates, generator=generator
        )
        for i in range(L):
            aW[k, i] = float(angle(up.grad_W[i], ref.grad_W[i]))
            if net.has_bias:
                ab[k, i] = float(angle(up.grad_b[i], ref.grad_b[i]))
        an[k] = float(angle(up.flat(net.has_bias), ref.flat(net.has_bias)))
    defs = {"mn_rule": rule, "ssa_rates": ssa_rates}
    ds = xr.Dataset(
        {
            "angle_W": var(
                ("reference", "layer"), aW, "angle of the weight update of layer i", DEGREE, **defs
            ),
            "angle_b": var(
                ("reference", "layer"), ab, "angle of the bias update of layer i", DEGREE, **defs
            ),
            "angle_network": var(
                ("reference",), an, "angle of the whole-network update (W and b)", DEGREE, **defs
            ),
        },
        coords={"reference": np.array(refs, dtype=object), "layer": layer_coord(L)},
    )
    return finish(
        ds,
        system,
        "neurodfc.analysis.alignment",
        method=method_name,
        gamma=float(gamma),
        batch_size=int(x.shape[0]),
        **defs,
    )
