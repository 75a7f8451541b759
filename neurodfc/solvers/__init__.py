"""Solvers of the closed loop, registered by ``simulation.solver`` name.

Each consumes the one definition of the loop (:mod:`neurodfc.core`): ``euler_reference``
(:class:`~neurodfc.solvers.euler.EulerReference`), ``etdrk4``
(:class:`~neurodfc.solvers.etdrk4.ETDRK4`) and torchdiffeq's methods
(:class:`~neurodfc.solvers.odeint.ODEInt`). Add one with :func:`register_solver`.
"""

from __future__ import annotations

from neurodfc.solvers.base import SOLVERS, Problem, Solver, get_solver, register_solver
from neurodfc.solvers.etdrk4 import ETDRK4
from neurodfc.solvers.euler import EulerReference
from neurodfc.solvers.linear_response import LinearResponse
from neurodfc.solvers.odeint import ADAPTIVE, FIXED, ODEInt

__all__ = ["SOLVERS", "Problem", "Solver", "get_solver", "register_solver"]

register_solver("euler_reference", EulerReference())
register_solver("etdrk4", ETDRK4())
register_solver("linear_response", LinearResponse())
for _name in (*ADAPTIVE, *FIXED):
    register_solver(_name, ODEInt(_name))
