"""Alignment of a method's minibatch update with BP, damped GN, MN and DFC-SSA (paper Fig. 3).

All updates are compared in PyTorch's gradient convention (``W <- W - lr grad``), so an angle
of 0 means "the same descent direction". References, for a minibatch of B samples with
feedforward rates ``r_i^-``, Jacobian ``J = d r_L / d v`` and output error
``delta_L = r_L* - r_L^-`` (``= -lam dL/dr_L``):

* ``bp``:  the autograd gradient of the batch loss;
* ``gn``:  damped Gauss-Newton over all weights and biases,
  ``-mean_b J_theta^T (J_theta J_theta^T + gamma I)^-1 delta_b`` (reference: save_gn_angles);
* ``mn``:  damped minimum-norm voltage targets ``dv = J^T (J J^T + gamma I)^-1 delta_L`` turned
  into ``-(1/B) sum_b dv_i r_{i-1}^-T`` (feedforward rates, voltage difference; reference:
  save_gnt_angles with use_ss_gnt = use_nonlinear_gnt = False);
* ``ssa``: the DFC-SSA update of the same batch with the system's own rule and alpha
  (:class:`~neurodfc.methods.DFCSSA`). The reference code's NDI angle instead pairs the
  Lemma-1 ``dv`` with the presynaptic rates of the simulated steady state; the two agree to
  O(lam) when the dynamics converge.

The scale of every reference is irrelevant (angles only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from neurodfc.analysis._common import DEGREE, angle, finish, layer_coord, var
from neurodfc.methods import BP, DFCSSA, Method, Update, gauss_newton_step, get_method, min_norm_dv
from neurodfc.methods.rules import steady_state_gradients
from neurodfc.system import DFCSystem, jacobian

REFERENCES = ("bp", "gn", "mn", "ssa")
"""The reference updates :func:`alignment` compares against (see the module docstring)."""


def _as_update(grad_W: list[torch.Tensor], grad_b: list[torch.Tensor], like: Update) -> Update:
    return Update(grad_W=grad_W, grad_b=grad_b, loss=like.loss, output=like.output)


def reference_update(
    system: DFCSystem, x: torch.Tensor, y: torch.Tensor, name: str, gamma: float
) -> Update:
    """A reference update of one minibatch in the gradient sign convention.

    Args:
        system: the DFC system; never modified.
        x: inputs [B, n_0].
        y: labels [B] or regression targets [B, n_L].
        name: ``bp``, ``gn``, ``mn`` or ``ssa`` (see the module docstring).
        gamma: damping >= 0 of ``gn`` and ``mn``; ``gamma = 0`` needs a full-row-rank ``J``.
    """
    if name == "bp":
        return BP().update(system, x, y)
    if name == "ssa":
        return DFCSSA().update(system, x, y)
    net = system.network
    with torch.no_grad():
        v, r = net.feedforward(x)
        out = r[-1]
        delta = system.target(x, y) - out
        bp_like = Update(grad_W=[], grad_b=[], loss=torch.tensor(float("nan")), output=out)
        if name == "gn":
            dW, db = gauss_newton_step(system, x, delta, gamma)
            return _as_update([-w for w in dW], [-b for b in db], bp_like)
        if name == "mn":
            dv = net.split_units(min_norm_dv(jacobian(net, v), delta, gamma))
            gW, gb = steady_state_gradients(net, dv, [x, *r[:-1]], "voltage_difference")
            if not net.has_bias:
                gb = [torch.zeros_like(g) for g in gb]
            return _as_update(gW, gb, bp_like)
    raise ValueError(f"unknown alignment reference {name!r}; allowed: {list(REFERENCES)}")


def alignment(
    system: DFCSystem,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str | Method | Update | None = None,
    *,
    against: Sequence[str] = REFERENCES,
    gamma: float = 0.1,
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
        generator: noise generator for simulating methods (used only if the config has noise).

    Returns:
        Dataset with coords ``reference`` and ``layer`` (1..L) and variables
        ``angle_W`` (reference, layer): angle of the weight update of layer i,
        ``angle_b`` (reference, layer): of the bias update (NaN without biases),
        ``angle_network`` (reference): of all weights and biases concatenated.

    Examples:
        DFC-SSA's update is its own ``ssa`` reference (angle 0) and a descent direction (less
        than 90 degrees from BP) on this batch:

        >>> import torch
        >>> from neurodfc.config import config_from_dict
        >>> from neurodfc.system import DFCSystem
        >>> system = DFCSystem.from_config(config_from_dict({"network": {"sizes": [4, 3, 2]}}))
        >>> x = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(5, 4)
        >>> y = torch.zeros(5, 2, dtype=torch.float64)  # MSE targets [B, n_L]
        >>> ds = alignment(system, x, y, "dfc_ssa", against=["bp", "ssa"])
        >>> dict(ds.sizes)
        {'reference': 2, 'layer': 2}
        >>> round(float(ds.angle_network.sel(reference="ssa")), 3)
        0.0
        >>> bool(ds.angle_network.sel(reference="bp") < 90)
        True
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
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
        ref = reference_update(system, x, y, name, gamma)
        for i in range(L):
            aW[k, i] = float(angle(up.grad_W[i], ref.grad_W[i]))
            if net.has_bias:
                ab[k, i] = float(angle(up.grad_b[i], ref.grad_b[i]))
        an[k] = float(angle(up.flat(net.has_bias), ref.flat(net.has_bias)))
    ds = xr.Dataset(
        {
            "angle_W": var(
                ("reference", "layer"), aW, "angle of the weight update of layer i", DEGREE
            ),
            "angle_b": var(
                ("reference", "layer"), ab, "angle of the bias update of layer i", DEGREE
            ),
            "angle_network": var(
                ("reference",), an, "angle of the whole-network update (W and b)", DEGREE
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
    )
