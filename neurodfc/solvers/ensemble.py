"""Several simulation problems solved together: the members of an ensemble
(:func:`neurodfc.ensemble.train_ensemble`) that simulate at the same moment.

Problems that can share one run of the fused reference scheme (:func:`batch_key`: the same
solver settings, layer structure, batch shape and recording; the built-in neurons and PI
controller; no early stop and no Ornstein-Uhlenbeck noise; one forward rule summed, problems
that sum none ride along) are stacked along a leading member
dimension and simulated as one system: per-member weights, inputs, targets, noise (each
member draws from its own generator, exactly what it would draw alone) and scalars (``alpha``,
``k_p``, ``tau_v / tau_u``, the noise levels, shared values stay Python floats). Every other
problem is solved on its own by its registered solver. Either way each member gets the
:class:`~neurodfc.core.solution.Solution` it would get alone (to rounding: batched products
instead of single ones; ``tests/unit/test_ensemble_solve.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import torch

from neurodfc.core.noise import NoiseSource
from neurodfc.core.solution import Solution
from neurodfc.fastpath import EulerRun, run_fused
from neurodfc.fastpath.ops import Scalar
from neurodfc.fastpath.stack import StackedNetwork
from neurodfc.solvers.base import Problem, get_solver
from neurodfc.solvers.euler import finish, fused_settings, raw_run, recorded_steps

CPU_STACK_ELEMENTS = 1 << 17
"""On the CPU, a stack holds at most this many state elements (members x batch x units, about
1 MB per float64 buffer): beyond it a stacked step's buffers leave the cache and batching stops
paying (MNIST-sized members, ``B N`` near 1e5, measured no faster stacked on this project's
CPU); a larger group is split into stacks of this size, a member too large for it is solved
on its own. GPUs have no such limit."""


def batch_key(p: Problem) -> Hashable | None:
    """What problems must share to be simulated as one batched system (None: ``p`` is solved
    on its own).

    Args:
        p: a simulation problem.
    """
    sim = p.sim
    if sim.solver != "euler_reference" or not p.builtin or sim.early_stop:
        return None
    if p.noise_tau is not None:
        return None
    net = p.net
    return (
        tuple(net.sizes),
        tuple(net.act_names),
        net.has_bias,
        tuple(p.x.shape),
        tuple(p.r_target.shape),
        p.x.dtype,
        p.x.device,
        sim.dt,
        sim.n_steps,
        tuple(recorded_steps(p)),
        sim.inst_transmission,
        sim.proactive_controller,
        sim.inst_system_dynamics,
        sim.cuda_graphs,
        p.pi.leak,
        p.record_v,
        p.record_apical,
        p.accumulate_feedback,
        p.noisy,
        p.apical_tau,
        p.error,
    )


def solve_together(problems: Sequence[Problem], workers: int = 1) -> list[Solution | BaseException]:
    """Solve ``problems``: compatible ones as one batched system, the others one by one.

    Args:
        problems: the problems (e.g. one per ensemble member).
        workers: threads that solve the groups (and the lone problems) at the same time
            (1: one after another); the results do not depend on it.

    Returns:
        Per problem its :class:`Solution`, or the exception its solving raised (an error in
        one group never reaches another).
    """
    groups: dict[Hashable, list[int]] = {}
    units: list[list[int]] = []
    for k, p in enumerate(problems):
        key = batch_key(p)
        if key is None:
            units.append([k])
        else:
            groups.setdefault(key, []).append(k)
    for members in groups.values():
        for stack in _by_rule(problems, members):
            units.extend(_split(problems, stack))
    out: list[Solution | BaseException | None] = [None] * len(problems)

    def solve_unit(members: list[int]) -> None:
        try:
            if len(members) == 1:
                p = problems[members[0]]
                sols: list[Solution | BaseException] = [get_solver(p.sim.solver).solve(p)]
            else:
                sols = list(solve_stacked([problems[k] for k in members]))
        except Exception as err:  # noqa: BLE001 - reported to each member of the unit
            sols = [err] * len(members)
        for k, sol in zip(members, sols, strict=True):
            out[k] = sol

    if workers > 1 and len(units) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(units))) as pool:
            list(pool.map(solve_unit, units))
    else:
        for unit in units:
            solve_unit(unit)
    assert all(o is not None for o in out), "every problem belongs to one unit"
    return [o for o in out if o is not None]


def _by_rule(problems: Sequence[Problem], members: list[int]) -> list[list[int]]:
    """Split a group by the forward rule its problems sum: one stack per rule; problems that
    sum none join the first stack (their sums are computed and dropped, cheaper than a
    separate run)."""
    stacks: dict[str | None, list[int]] = {}
    for k in members:
        stacks.setdefault(problems[k].accumulate, []).append(k)
    plain = stacks.pop(None, [])
    if not stacks:
        return [plain]
    out = list(stacks.values())
    out[0] = sorted(out[0] + plain)
    return out


def _split(problems: Sequence[Problem], stack: list[int]) -> list[list[int]]:
    """A stack cut into pieces of at most :data:`CPU_STACK_ELEMENTS` state elements on the
    CPU (whole elsewhere)."""
    p = problems[stack[0]]
    if p.x.device.type != "cpu":
        return [stack]
    per_member = p.x.shape[0] * sum(p.net.sizes[1:])
    size = max(1, CPU_STACK_ELEMENTS // per_member)
    return [stack[i : i + size] for i in range(0, len(stack), size)]


class StackedNoise:
    """The members' noise sources drawn together: their next normals stacked [M, B, N].

    Args:
        sources: one source per member (each draws exactly what it would draw alone).
    """

    def __init__(self, sources: Sequence[NoiseSource]) -> None:
        self.sources = list(sources)

    def next(self) -> torch.Tensor:
        """The next step's normals of every member [M, B, N]."""
        return torch.stack([s.next() for s in self.sources])


def _per_member(values: list[float], like: torch.Tensor) -> Scalar:
    """One shared float when the members agree, else a tensor [M, 1, 1]."""
    if all(v == values[0] for v in values):
        return float(values[0])
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def solve_stacked(problems: Sequence[Problem]) -> list[Solution]:
    """Problems with the same :func:`batch_key` as one run of the fused scheme.

    Args:
        problems: at least one problem; all with the same batch key.

    Returns:
        Each problem's :class:`Solution`.
    """
    first = problems[0]
    keys = {batch_key(p) for p in problems}
    rules = {p.accumulate for p in problems} - {None}
    if len(keys) != 1 or None in keys or len(rules) > 1:
        raise ValueError("solve_stacked needs problems with one batch key and one rule")
    rec = recorded_steps(first)
    x = torch.stack([p.x for p in problems])
    r_target = torch.stack([p.r_target for p in problems])
    net = StackedNetwork([p.net for p in problems])
    cfg = replace(
        fused_settings(first, rec),
        accumulate=next(iter(rules), None),
        alpha=_per_member([p.pi.alpha for p in problems], x),
        k_p=_per_member([p.pi.k_p for p in problems], x),
        tau_ratio=_per_member([p.tau_ratio for p in problems], x),
        noise=(
            _per_member([p.noise[0] for p in problems], x),
            _per_member([p.noise[1] for p in problems], x),
        ),
    )
    src = StackedNoise([p.noise_normals() for p in problems]) if first.noisy else None
    run = run_fused(net, x, r_target, cfg, noise_source=src)
    return [finish(p, raw_run(p, member_run(run, m), rec)) for m, p in enumerate(problems)]


def member_run(run: EulerRun, m: int) -> EulerRun:
    """Member ``m``'s part of an ensemble's fused run (views, no copies).

    Args:
        run: the ensemble's run (leading member dimension; records [n_rec, M, ...]).
        m: the member.
    """
    return EulerRun(
        v=[t[m] for t in run.v],
        r=[t[m] for t in run.r],
        vb=[t[m] for t in run.vb],
        u=run.u[m],
        u_int=run.u_int[m],
        rec_steps=run.rec_steps,
        r_rec=run.r_rec[:, m],
        u_rec=run.u_rec[:, m],
        e_rec=run.e_rec[:, m],
        v_rec=[t[:, m] for t in run.v_rec],
        steps_run=run.steps_run,
        a_rec=[t[:, m] for t in run.a_rec],
        acc_W=[t[m] for t in run.acc_W],
        acc_b=[t[m] for t in run.acc_b],
        acc_Q=[t[m] for t in run.acc_Q],
    )
