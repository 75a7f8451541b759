"""``neurodfc sweep --ensemble``: runs packed into ensembles give the plain sweep's outputs.

The oracle is the plain sweep (one task per run, each run trained alone): the ensemble sweep's
``sweep.nc`` must equal it at 1e-12 (wall times aside), a diverging member is recorded exactly
as the failing run of the plain sweep while its ensemble's other members finish, and finished
runs are skipped, not packed. A tiny Fig.-3 DFC config (40 Euler steps, 32 training samples,
one epoch) keeps the cost at the cluster's start.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import xarray as xr

from neurodfc.cli import main
from neurodfc.config import load_config, to_toml
from neurodfc.sweep import (
    EnsembleSpec,
    SweepTask,
    TaskSpec,
    pack_tasks,
    packing_key,
    parse_grid,
    plan_grid_sweep,
    run_ensemble_task,
    run_sweep,
)
from neurodfc.sweep.cluster import _unit_outcomes
from neurodfc.training import train

if TYPE_CHECKING:  # pragma: no cover
    from distributed import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "simulation.steps=40",
    "data.n_train=32",
    "data.n_val=16",
    "data.n_test=16",
    "training.epochs=1",
    "training.batch_size=16",
    "feedback_learning.pretrain_epochs=1",
    "feedback_learning.extra_epochs=0",
    "feedback_learning.steps=20",
    "analysis.log_interval=0",
]


def _tiny(tmp: Path, model: str = "fig3_dfc") -> Path:
    """A tiny copy of ``models/<model>.toml`` as a TOML file in ``tmp``."""
    path = tmp / f"{model}_tiny.toml"
    path.write_text(to_toml(load_config(ROOT / "models" / f"{model}.toml", TINY)))
    return path


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One LocalCluster (2 single-threaded worker processes) for the tests below."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as c:
        yield c


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.glob("runs/*/*/*"))}


# ---------------------------------------------------------------------------- packing
def test_packing_key_holds_what_members_must_share(tmp_path: Path) -> None:
    base = load_config(_tiny(tmp_path))
    key = packing_key(base)
    assert key is not None

    def k(*overrides: str, model: str = "fig3_dfc") -> str | None:
        return packing_key(load_config(ROOT / "models" / f"{model}.toml", [*TINY, *overrides]))

    # scalars, seeds and learned-or-fixed feedback may differ
    for same in (
        ["seed=3"],
        ["training.lr=0.02", "controller.k_p=2.0", "controller.alpha=0.003"],
        ["loss.lam=0.1", "controller.tau_ratio=0.3", "feedback_learning.sigma=0.02"],
        ["feedback.learned=false"],
        ["data.n_train=64"],
    ):
        assert k(*same) == key, same
    # the structure of the simulated system may not
    for other in (
        ["simulation.steps=41"],
        ["simulation.dt=0.004"],
        ["simulation.proactive_controller=true"],
        ["network.sizes=[15, 12, 10, 5]"],
        ["network.hidden_activation='relu'"],
        ["network.bias=false"],
        ["training.batch_size=8"],
        ["dtype='float32'"],
        ["noise.sigma=0.01"],
        ["apical.tau=0.3"],
        ["method.name='dfc_ss'"],
    ):
        assert k(*other) != key, other
    # noise levels are per-member scalars, only on/off is structural
    assert k("noise.sigma=0.01") == k("noise.sigma=0.02")
    # runs that never share a simulation get no key (they stay plain tasks)
    assert k("simulation.solver='etdrk4'") is None
    assert k("simulation.early_stop=true") is None
    assert k(model="mnist_bp") is None
    assert k(model="fig3_fixed_dfc_ssa") is None  # DFC-SSA simulates only to learn feedback
    assert k(model="fig3_dfc_ssa") is not None


def _tasks(tmp_path: Path, seeds: int = 3) -> list[SweepTask]:
    grid = [
        parse_grid("controller.k_p=1.0,2.0"),
        parse_grid("simulation.dt=0.005,0.004"),
        parse_grid("simulation.solver=euler_reference,etdrk4"),
    ]
    return list(plan_grid_sweep(_tiny(tmp_path), tmp_path / "p", range(seeds), grid).tasks)


def test_pack_tasks_respects_the_key_and_max_members(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)  # 2 x 2 x 2 points x 3 seeds = 24 runs; 12 on etdrk4
    pos = {t.name: i for i, t in enumerate(tasks)}
    for m in (1, 2, 4, 5, 6, 35):
        units = pack_tasks(tasks, m)
        assert sorted(t.name for u in units for t in u) == sorted(pos)  # each run once
        assert [pos[u[0].name] for u in units] == sorted(pos[u[0].name] for u in units)
        assert units == pack_tasks(tasks, m)  # deterministic
        for u in units:
            assert 1 <= len(u) <= m
            assert [pos[t.name] for t in u] == sorted(pos[t.name] for t in u)
            keys = {packing_key(t.config) for t in u}  # type: ignore[arg-type]
            assert len(keys) == 1
            if len(u) > 1:
                assert None not in keys
        # etdrk4 runs are alone; the 12 others form 2 keys (dt) of 6 runs, split evenly
        sizes = sorted(len(u) for u in units if len(u) > 1)
        expected = {1: [], 2: [2] * 6, 4: [3] * 4, 5: [3] * 4, 6: [6, 6], 35: [6, 6]}[m]
        assert sizes == expected, m
        assert sum(len(u) == 1 for u in units) == 24 - sum(sizes)
    with pytest.raises(ValueError, match="max_members"):
        pack_tasks(tasks, 0)


# ---------------------------------------------------------------------------- one ensemble task
def _spec(t: SweepTask) -> TaskSpec:
    assert t.config is not None
    return TaskSpec(t.name, t.config.model_dump_json(), str(t.run_dir), str(t.log_path))


def test_ensemble_task_skips_finished_runs_and_reports_a_failing_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one process: a finished member is skipped, the others are simulated as one stacked
    system, a diverging one fails with its traceback in its own log while the others train;
    every member's lines land in its own log."""
    from neurodfc.solvers import ensemble as batched

    stacked: list[int] = []
    real = batched.solve_stacked

    def spy(problems: Any) -> Any:
        stacked.append(len(problems))
        return real(problems)

    monkeypatch.setattr(batched, "solve_stacked", spy)
    grid = [parse_grid("controller.k_p=1.5,1e6")]
    plan = plan_grid_sweep(_tiny(tmp_path), tmp_path / "sw", (0, 1), grid)
    ok0, ok1, bad0, bad1 = plan.tasks
    assert ok0.config is not None
    train(ok0.config, ok0.run_dir, quiet=True, log=_quiet)
    before = _mtimes(tmp_path / "sw")
    out = run_ensemble_task(EnsembleSpec(tuple(_spec(t) for t in plan.tasks)))
    assert [o.name for o in out] == [t.name for t in plan.tasks]
    assert [o.status for o in out] == ["skipped", "done", "failed", "failed"]
    assert max(stacked) == 3  # the three unfinished runs really batched
    assert all(v == _mtimes(tmp_path / "sw")[p] for p, v in before.items())
    assert out[1].epochs_done == 1
    assert "DivergedError" in str(out[2].error)
    assert not ok0.log_path.exists()  # skipped without a word, as run_task does
    text = {t.name: t.log_path.read_text() for t in (ok1, bad0, bad1)}
    assert "ensemble member 1 of 3" in text[ok1.name] and "epoch 1/1" in text[ok1.name]
    assert f"done {ok1.name}: 1 epochs" in text[ok1.name]
    for t in (bad0, bad1):
        assert "Traceback" in text[t.name] and "DivergedError" in text[t.name]
        assert "epoch 1/1 |" not in text[t.name]  # the members' lines are not mixed
        assert "[seed_" not in text[t.name]


def test_ensemble_task_leaves_out_of_memory_to_dask_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member out of memory: the task raises it (dask's retries run the ensemble again, which
    skips the finished members); a member's ordinary error is still its own failed outcome;
    a lost ensemble's members that finished count as done."""
    import neurodfc.ensemble as ens

    plan = plan_grid_sweep(_tiny(tmp_path), tmp_path / "sw", (0, 1), [])

    def fake(cfgs: Any, out: Any, **kw: Any) -> Any:
        return ens.EnsembleResult(
            paths=list(out), runs=[None, None], errors=[MemoryError("oom"), ValueError("bad")]
        )

    monkeypatch.setattr(ens, "train_ensemble", fake)
    with pytest.raises(MemoryError):
        run_ensemble_task(EnsembleSpec(tuple(_spec(t) for t in plan.tasks)))
    assert "out of memory" in plan.tasks[0].log_path.read_text()
    assert "ValueError: bad" in plan.tasks[1].log_path.read_text()
    first = plan.tasks[0]
    assert first.config is not None
    train(first.config, first.run_dir, quiet=True, log=_quiet)
    lost = SimpleNamespace(status="error", exception=lambda: MemoryError("oom"))
    outs = _unit_outcomes(lost, plan.tasks)
    assert [o.status for o in outs] == ["done", "failed"]
    assert "MemoryError: oom" in str(outs[1].error)


# ---------------------------------------------------------------------------- whole sweeps
def _assert_same_sweep(a: xr.Dataset, b: xr.Dataset) -> None:
    assert dict(a.sizes) == dict(b.sizes) and list(a.data_vars) == list(b.data_vars)
    assert a.attrs == b.attrs
    for c in a.coords:
        np.testing.assert_array_equal(a[c].values, b[c].values)
    for v in a.data_vars:
        if v == "wall_time":
            continue
        x, y = a[v].values, b[v].values
        if x.dtype.kind == "f":
            assert (np.isnan(x) == np.isnan(y)).all(), v
            ok = np.isnan(x) | (np.abs(x - y) <= 1e-12 * (1 + np.abs(y)))
            assert ok.all(), v
        else:
            np.testing.assert_array_equal(x, y, err_msg=str(v))


def test_ensemble_sweep_equals_the_plain_sweep(tmp_path: Path, cluster: LocalCluster) -> None:
    """8 runs (k_p x dt x 2 seeds; k_p = 1e6 diverges) with and without ensembles of at most
    3 members: the same sweep.nc, tables and per-run outcomes; a second call skips the
    finished runs without packing them."""
    from distributed import Client

    grid = [parse_grid("controller.k_p=1.5,1e6"), parse_grid("simulation.dt=0.005,0.004")]
    cfg = _tiny(tmp_path)
    plans = {n: plan_grid_sweep(cfg, tmp_path / n, (0, 1), grid) for n in ("plain", "ens")}
    lines: list[str] = []
    with Client(cluster) as client:
        plain = run_sweep(plans["plain"], client=client, quiet=True, log=_quiet)
        ens = run_sweep(
            plans["ens"], client=client, quiet=True, log=lines.append, ensemble=True, max_members=3
        )
    assert "packed into 4 ensembles (2, 2, 2, 2 runs) and 0 single runs" in "\n".join(lines)
    assert plain.count("done") == ens.count("done") == 4
    assert [o.name for o in plain.failed] == [o.name for o in ens.failed] and len(ens.failed) == 4
    for name, o in plain.outcomes.items():
        e = ens.outcomes[name]
        assert (e.status, e.epochs_done) == (o.status, o.epochs_done), name
        assert str(e.error).replace("/ens/", "/plain/") == str(o.error), name
    a, b = (xr.open_dataset(tmp_path / n / "sweep.nc").load() for n in ("plain", "ens"))
    assert list(b["status"].sel({"controller.k_p": 1.5}).values.ravel()) == ["done"] * 4
    assert list(b["status"].sel({"controller.k_p": 1e6}).values.ravel()) == ["failed"] * 4
    _assert_same_sweep(a, b)
    with open(tmp_path / "plain" / "table.csv") as fa, open(tmp_path / "ens" / "table.csv") as fb:
        ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert len(ra) == len(rb) == 4
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for col in x:
            try:
                assert float(x[col]) == pytest.approx(float(y[col]), rel=1e-12, nan_ok=True)
            except ValueError:
                assert x[col] == y[col]
    for t in plans["ens"].tasks:
        if "1e6" not in t.name:
            assert "(ensemble member" in t.log_path.read_text()
    # again: the finished runs are skipped (not packed), the failed ones packed and re-run
    before = _mtimes(tmp_path / "ens")
    lines.clear()
    with Client(cluster) as client:
        again = run_sweep(
            plans["ens"], client=client, quiet=True, log=lines.append, ensemble=True, max_members=3
        )
    assert "4 to run, 4 already finished" in lines[0]
    assert "packed into 2 ensembles (2, 2 runs)" in lines[1]
    assert again.count("skipped") == 4 and len(again.failed) == 4
    assert all(_mtimes(tmp_path / "ens")[p] == v for p, v in before.items() if "1e6" not in p)


# ---------------------------------------------------------------------------- the CLI
def test_cli_sweep_ensemble_flag(
    tmp_path: Path, cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(_tiny(tmp_path, "fig3_fixed_dfc"))
    base = ["sweep", cfg, "--seeds", "3", "--quiet", "--scheduler", cluster.scheduler_address]
    for bad, msg in (
        (["--ensemble", "--max-members", "0"], "--max-members must be >= 1, got 0"),
        (["--max-members", "2"], "--max-members needs --ensemble"),
    ):
        assert main([*base, *bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err
        assert not (tmp_path / "bad").exists()
    out = tmp_path / "sw"
    assert main([*base, "--ensemble", "--max-members", "2", "--out", str(out)]) == 0
    assert "packed into 1 ensembles (2 runs) and 1 single runs" in capsys.readouterr().out
    ds = xr.open_dataset(out / "sweep.nc")
    assert (ds["status"].values == "done").all()
    assert list(ds["seed"].values) == [0, 1, 2]
