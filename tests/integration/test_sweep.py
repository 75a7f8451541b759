"""Sweeps on a real dask.distributed LocalCluster: merge, mean +- std, resume, failures.

Runs a tiny teacher-student config (a few hundred samples, 2 epochs) so that the cost is the
cluster's start; one cluster is shared by the tests that pass a client in.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("distributed")

from neurodfc.cli import main  # noqa: E402
from neurodfc.config import ExperimentConfig, load_config, to_toml  # noqa: E402
from neurodfc.sweep import (  # noqa: E402
    Axis,
    SweepPlan,
    TaskOutcome,
    TaskSpec,
    make_plan,
    merge_sweep,
    parse_grid,
    parse_seeds,
    plan_grid_sweep,
    run_sweep,
    run_task,
)
from neurodfc.training import train  # noqa: E402
from tests.helpers import make_config  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client, LocalCluster


def _tiny(tmp: Path) -> Path:
    """A 6-8-3 DFC-SSA teacher-student config with learned feedback, 2 epochs, as TOML."""
    cfg = make_config(
        [6, 8, 3],
        k_p=1.0,
        alpha=0.01,
        lam=0.05,
        reduction="mean",
        fb_init="xavier_normal",
        sim={"dt": 0.02, "steps": 60},
        data={"dataset": "teacher_student", "n_train": 96, "n_val": 32, "n_test": 32},
        method={"name": "dfc_ssa", "include_non_converged": True},
        training={"epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
        feedback={"learned": True},
        feedback_learning={
            "pretrain_epochs": 1,
            "extra_epochs": 1,
            "steps": 8,
            "sigma": 0.05,
            "dt": 0.002,
            "tau_ratio": 0.01,
        },
    )
    path = tmp / "tiny.toml"
    path.write_text(to_toml(cfg))
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One LocalCluster (2 single-threaded worker processes) for the tests below."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A client of the shared cluster."""
    from distributed import Client

    with Client(cluster) as c:
        yield c


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.glob("runs/*/*/*"))}


# ---------------------------------------------------------------------------- parsing
def test_grid_and_seed_parsing() -> None:
    ax = parse_grid("network.sizes=[6, 8, 3],[6, 4, 3]")
    assert ax.values == ([6, 8, 3], [6, 4, 3]) and ax.labels == ("[6, 8, 3]", "[6, 4, 3]")
    ax = parse_grid("training.lr=1e-3,0.01")
    assert ax.values == (1e-3, 0.01)
    assert ax.coordinate().dtype == np.float64
    assert list(parse_grid("method.name=dfc,dfa").coordinate()) == ["dfc", "dfa"]
    assert parse_seeds(3, None) == (0, 1, 2)
    assert parse_seeds(None, "5,7") == (5, 7)
    for bad in ("training.lr", "training.lr=1,1", "seed=1,2", "training.lr=1,"):
        with pytest.raises(ValueError):
            parse_grid(bad)
    with pytest.raises(ValueError):
        parse_seeds(None, "1,1")


# ---------------------------------------------------------------------------- the CLI
def test_cli_sweep_merges_runs_with_mean_and_std_and_skips_finished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 seeds x 2 learning rates through `neurodfc sweep` (its own LocalCluster)."""
    out = tmp_path / "sw"
    args = [
        "sweep",
        str(_tiny(tmp_path)),
        "--seeds",
        "2",
        "--grid",
        "training.lr=1e-3,1e-2",
        "--workers",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    ds = xr.open_dataset(out / "sweep.nc").load()
    assert ds["test_loss"].dims == ("training.lr", "seed", "epoch")
    assert list(ds["training.lr"].values) == [1e-3, 1e-2]
    assert list(ds["seed"].values) == [0, 1] and list(ds["epoch"].values) == [1, 2]
    assert (ds["status"].values == "done").all()
    with open(out / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for i, lr_label in enumerate(("1e-3", "1e-2")):
        per_run = [
            xr.open_dataset(out / "runs" / f"training.lr={lr_label}" / f"seed_{s}" / "metrics.nc")
            for s in (0, 1)
        ]
        for s, run in enumerate(per_run):
            assert (
                load_config(
                    out / "runs" / f"training.lr={lr_label}" / f"seed_{s}" / "config.toml"
                ).seed
                == s
            )
            np.testing.assert_array_equal(
                ds["test_loss"].isel({"training.lr": i, "seed": s}).values, run["test_loss"].values
            )
        best = np.array([r.attrs["test_loss_at_best_val"] for r in per_run])
        final = np.array([float(r["train_loss"].values[-1]) for r in per_run])
        assert float(rows[i]["training.lr"]) == float(ds["training.lr"].values[i])
        assert int(rows[i]["n"]) == 2
        assert float(rows[i]["test_loss_at_best_val_mean"]) == pytest.approx(best.mean())
        assert float(rows[i]["test_loss_at_best_val_std"]) == pytest.approx(best.std(ddof=1))
        assert float(rows[i]["final_train_loss_mean"]) == pytest.approx(final.mean())
        assert float(rows[i]["final_train_loss_std"]) == pytest.approx(final.std(ddof=1))
        md = (out / "table.md").read_text()
        assert f"{best.mean():.4g} +- {best.std(ddof=1):.2g}" in md
    # the same command again: every run is finished, nothing is recomputed or rewritten
    before = _mtimes(out)
    capsys.readouterr()
    assert main(args) == 0
    assert "0 to run, 4 already finished" in capsys.readouterr().out
    assert _mtimes(out) == before
    # the folders do not count for another config (they would be refused, not overwritten)
    grid = [parse_grid("training.lr=1e-3,1e-2")]
    other = plan_grid_sweep(_tiny(tmp_path), out, (0, 1), grid, ["training.batch_size=16"])
    merged = merge_sweep(other)
    assert (merged["status"].values == "foreign").all()
    assert np.isnan(merged["test_loss_at_best_val"].values).all()


def test_cli_sweep_reports_a_failing_task_and_finishes_the_others(
    tmp_path: Path, cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """cross_entropy on a regression task fails inside the worker; lr < 0 fails validation."""
    out = tmp_path / "sw"
    code = main(
        [
            "sweep",
            str(_tiny(tmp_path)),
            "--seed-list",
            "3",
            "--grid",
            "loss.loss=mse,cross_entropy",
            "--grid",
            "training.lr=1e-3,-1",
            "--scheduler",
            cluster.scheduler_address,
            "--quiet",
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 1
    err = capsys.readouterr()
    assert "2 of 4 runs failed" not in err.err  # three fail: cross_entropy x 2 and lr = -1
    assert "3 of 4 runs failed" in err.err
    assert "needs a classification data set" in err.out
    assert "training.lr" in err.out and ("greater than 0" in err.out or "> 0" in err.out)
    ds = xr.open_dataset(out / "sweep.nc")
    st = ds["status"].sel({"loss.loss": "mse", "training.lr": 1e-3, "seed": 3})
    assert str(st.values) == "done"
    assert int((ds["status"].values == "failed").sum()) == 3
    log = out / "logs" / "loss.loss=cross_entropy__training.lr=1e-3__seed_3.log"
    assert "Traceback" in log.read_text()


def test_cli_sweep_without_dask_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = main(["sweep", str(_tiny(tmp_path)), "--seeds", "1", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "pip install -e '.[sweep]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- robustness
CRASH_RUN = "training.lr=0.01/seed_1"


def _crash_once(spec: TaskSpec) -> TaskOutcome:
    """run_task, except that the last run trains one epoch and then kills its worker process
    (once, via a marker file). Every call is appended to SWEEP_DIR/calls.txt."""
    root = Path(spec.run_dir).parents[2]
    with (root / "calls.txt").open("a") as fh:
        fh.write(spec.name + "\n")
    marker = root / "crashed"
    if spec.name == CRASH_RUN and not marker.exists():
        marker.touch()
        cfg = ExperimentConfig.model_validate_json(spec.config_json)
        one = cfg.model_copy(update={"training": cfg.training.model_copy(update={"epochs": 1})})
        train(one, spec.run_dir, quiet=True, log=lambda _: None)
        os._exit(1)  # the worker process dies in the middle of the run
    return run_task(spec)


def _plan(tmp_path: Path, lrs: str = "1e-3,0.01", seeds: int = 2) -> SweepPlan:
    return plan_grid_sweep(
        _tiny(tmp_path),
        tmp_path / "sw",
        parse_seeds(seeds, None),
        [parse_grid(f"training.lr={lrs}")],
    )


def test_a_killed_worker_loses_nothing_and_its_run_resumes(tmp_path: Path, client: Client) -> None:
    plan = _plan(tmp_path)
    report = run_sweep(plan, client=client, task_fn=_crash_once, quiet=True, log=lambda _: None)
    assert report.count("done") == 4 and not report.failed
    calls = (tmp_path / "sw" / "calls.txt").read_text().split()
    assert sorted(set(calls)) == sorted(t.name for t in plan.tasks)
    assert calls.count(CRASH_RUN) == 2  # re-run by the scheduler after the worker died
    for t in plan.tasks:  # every run trained once (run_task logs "start" when it trains)
        assert t.log_path.read_text().count(" start ") == 1, t.name
    crashed = next(t for t in plan.tasks if t.name == CRASH_RUN)
    assert "resuming" in crashed.log_path.read_text()  # continued from its checkpoint
    ds = xr.open_dataset(tmp_path / "sw" / "sweep.nc")
    assert (ds["status"].values == "done").all()
    assert np.isfinite(ds["test_loss"].values).all()
    # a second call skips everything without a task
    before = _mtimes(tmp_path / "sw")
    again = run_sweep(plan, client=client, task_fn=_crash_once, quiet=True, log=lambda _: None)
    assert again.count("skipped") == 4
    assert (tmp_path / "sw" / "calls.txt").read_text().split() == calls
    assert _mtimes(tmp_path / "sw") == before


def test_ctrl_c_keeps_finished_runs_and_the_same_call_continues(
    tmp_path: Path, client: Client
) -> None:
    plan = _plan(tmp_path, lrs="1e-3", seeds=3)
    seen: list[TaskOutcome] = []

    def interrupt(o: TaskOutcome) -> None:
        seen.append(o)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, client=client, quiet=True, on_outcome=interrupt, log=lambda _: None)
    first = next(t for t in plan.tasks if t.name == seen[0].name)
    assert seen[0].status == "done"
    ds = xr.open_dataset(first.run_dir / "metrics.nc")
    assert list(ds["epoch"].values) == [1, 2]
    report = run_sweep(plan, client=client, quiet=True, log=lambda _: None)
    assert report.outcomes[first.name].status == "skipped"
    assert report.count("done") + report.count("skipped") == 3


def test_an_interrupt_survives_a_cluster_that_fails_to_close(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C inside ``dask_client``: the KeyboardInterrupt propagates unchanged although
    closing the half-dead client and cluster raises (as ``CommClosedError`` does), nothing is
    logged, and the local cluster's workers were started with SIGINT ignored."""
    import signal

    import distributed
    from distributed.comm.core import CommClosedError

    from neurodfc.sweep import dask_client

    seen: dict[str, Any] = {}

    class Dying:
        def __init__(self, *a: Any, **kw: Any) -> None:
            seen.setdefault("sigint", signal.getsignal(signal.SIGINT))

        def close(self, timeout: float | None = None) -> None:
            seen[type(self).__name__] = True
            import logging

            logging.getLogger("distributed.core").error("CommClosedError while closing")
            raise CommClosedError("in <TCP (closed)>: Stream is closed")

    class FakeCluster(Dying):
        pass

    class FakeClient(Dying):
        pass

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", FakeClient)
    with pytest.raises(KeyboardInterrupt), dask_client(workers=1):
        raise KeyboardInterrupt
    assert seen["FakeClient"] and seen["FakeCluster"]  # both closed, both failed
    assert seen["sigint"] is signal.SIG_IGN  # the workers are spawned ignoring SIGINT
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # restored here
    assert not [r for r in caplog.records if r.name.startswith("distributed")]


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_exits_130_without_a_traceback_and_the_sweep_continues(
    tmp_path: Path,
) -> None:
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) while the first run
    trains: exit 130, no traceback (no CommClosedError), and the same command finishes the
    sweep, resuming the interrupted run (about a minute: two local clusters)."""
    import signal
    import subprocess
    import time

    out = tmp_path / "sw"
    argv = [
        sys.executable,
        "-m",
        "neurodfc.cli",
        "sweep",
        str(_tiny(tmp_path)),
        "--seeds",
        "3",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not any(out.glob("runs/*/seed_*/checkpoint.pt")):  # a run is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "CommClosedError" not in stderr, stderr
    assert "interrupted" in stdout + stderr
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    ds = xr.open_dataset(out / "sweep.nc")
    assert (ds["status"].values == "done").all()


def test_make_plan_with_named_axes_and_invalid_points(tmp_path: Path) -> None:
    """The generic planner (used by analyses/table1.py): axes need not be config keys."""
    base = load_config(_tiny(tmp_path))

    def build(values: Mapping[str, Any], labels: Mapping[str, str], seed: int) -> ExperimentConfig:
        if values["method"] == "bad":
            load_config(_tiny(tmp_path), ["training.lr=-1"])
        return base.model_copy(update={"seed": seed})

    ax = Axis("method", ("dfc_ssa", "bad"), ("dfc_ssa", "bad"))
    plan = make_plan(tmp_path / "p", [ax], [0, 1], build)
    assert [t.name for t in plan.tasks] == [
        "method=dfc_ssa/seed_0",
        "method=dfc_ssa/seed_1",
        "method=bad/seed_0",
        "method=bad/seed_1",
    ]
    assert [t.config is None for t in plan.tasks] == [False, False, True, True]
    assert "training.lr" in str(plan.tasks[-1].error)
    out = run_task(
        TaskSpec(
            plan.tasks[0].name,
            plan.tasks[0].config.model_dump_json(),  # type: ignore[union-attr]
            str(plan.tasks[0].run_dir),
            str(plan.tasks[0].log_path),
        )
    )
    assert out.status == "done" and out.epochs_done == 2


# ---------------------------------------------------------------------------- Table 1
def _table1() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "analyses" / "table1.py"
    spec = importlib.util.spec_from_file_location("analyses_table1", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_table1_quick_subset_next_to_the_paper(
    tmp_path: Path, cluster: LocalCluster, data_dir: Path
) -> None:
    """analyses/table1.py --quick on two MNIST rows, on the shared cluster."""
    t1 = _table1()
    out = tmp_path / "t1"
    argv = ["--quick", "--datasets", "mnist", "--methods", "bp", "dfc_ssa", "--quiet"]
    assert t1.main([*argv, "--scheduler", cluster.scheduler_address, "--out", str(out)]) == 0
    ds = xr.open_dataset(out / "sweep.nc")
    assert ds["test_loss"].dims == ("dataset", "method", "seed", "epoch")
    assert list(ds["method"].values) == ["bp", "dfc_ssa"] and list(ds["seed"].values) == [0, 1]
    md = (out / "table1.md").read_text()
    assert "| BP | " in md and "2.08 +- 0.15" in md and "| DFC-SSA | " in md
    with open(out / "table1.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["n"]) for r in rows] == [("bp", "2"), ("dfc_ssa", "2")]
    for r in rows:
        err = ds["test_error_percent_at_best_val"].sel({"dataset": "mnist", "method": r["method"]})
        assert float(r["mean"]) == pytest.approx(float(err.mean()))
        assert float(r["std"]) == pytest.approx(float(err.std(ddof=1)))
        paper_mean, paper_std = t1.PAPER["mnist"][r["method"]]
        assert float(r["diff_in_paper_std"]) == pytest.approx(
            (float(err.mean()) - paper_mean) / paper_std
        )


@pytest.mark.slow
def test_table1_quick_full_grid(tmp_path: Path, data_dir: Path) -> None:
    """The whole --quick table (3 datasets x 8 methods x 2 seeds, its own LocalCluster)."""
    t1 = _table1()
    assert t1.main(["--quick", "--quiet", "--out", str(tmp_path / "t1")]) == 0
    ds = xr.open_dataset(tmp_path / "t1" / "sweep.nc")
    assert dict(ds.sizes) == {"dataset": 3, "method": 8, "seed": 2, "epoch": 1}
    assert (ds["status"].values == "done").all()
