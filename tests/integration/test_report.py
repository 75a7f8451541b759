"""``neurodfc report``: a tiny training run with analysis logging, then the report.

Checks: every PNG exists and is a readable image, report.md embeds every PNG, every logged
metric has its figure, the TOML block reproduces the run's config, and the report also works
on a simulation ``.nc`` file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import xarray as xr

from neurodfc.cli import main
from neurodfc.config import config_from_dict
from neurodfc.report import step_metrics
from neurodfc.training import train
from tests.helpers import make_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    cfg = make_config(
        [15, 6, 5],
        k_p=1.0,
        alpha=0.01,
        reduction="mean",
        method={"name": "dfc", "include_non_converged": True},
        sim={"dt": 0.02, "steps": 120},
        data={"dataset": "teacher_student", "n_train": 64, "n_val": 16, "n_test": 16},
        training={"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.01},
        analysis={
            "log_interval": 1,
            "metrics": ["alignment", "conditions", "stability", "convergence"],
        },
    )
    out = tmp_path_factory.mktemp("report") / "run"
    train(cfg, out, quiet=True, log=lambda s: None)
    return out, cfg


def test_report_writes_every_figure_and_embeds_it(
    run_dir: tuple[Path, object], capsys: pytest.CaptureFixture[str]
) -> None:
    run, cfg = run_dir
    assert main(["report", str(run)]) == 0
    assert "report.md" in capsys.readouterr().out
    rep = run / "report"
    md = (rep / "report.md").read_text()
    pngs = sorted(rep.glob("*.png"))
    assert pngs
    embedded = set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md))
    assert embedded == {p.name for p in pngs}
    for p in pngs:
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    with xr.open_dataset(run / "metrics.nc") as ds:
        names = step_metrics(ds.load())
    assert {"condition2", "angle_network", "stability_measure", "decay_rate"} <= set(names)
    for name in names:
        assert (rep / f"{name}.png").is_file(), name
    for fig in ("losses.png", "fig3_panels.png", "status.png"):
        assert (rep / fig).is_file()
    # key numbers and the config
    assert "| final train_loss |" in md and "condition2 (last 10 % of logs)" in md
    block = md.split("```toml\n", 1)[1].split("```", 1)[0]
    assert config_from_dict(tomllib.loads(block)) == cfg


def test_report_of_a_simulation_file(tmp_path: Path) -> None:
    cfg_path = tmp_path / "sim.toml"
    cfg_path.write_text(
        '[network]\nsizes = [4, 5, 2]\n[data]\ndataset = "random"\nn_train = 8\n'
        "[simulation]\ndt = 0.02\nsteps = 100\n[controller]\nk_p = 1.0\nalpha = 0.01\n"
    )
    nc = tmp_path / "sim.nc"
    assert main(["simulate", str(cfg_path), "--out", str(nc), "--samples", "2"]) == 0
    out = tmp_path / "rep"
    assert main(["report", str(nc), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "(dynamics.png)" in md
    assert mpimg.imread(out / "dynamics.png").ndim == 3
    # default folder next to a .nc file
    assert main(["report", str(nc)]) == 0
    assert (tmp_path / "sim_report" / "report.md").is_file()


def test_report_of_a_missing_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results file" in capsys.readouterr().err


def test_report_of_several_stacked_runs(run_dir: tuple[Path, object], tmp_path: Path) -> None:
    """A Dataset with a ``run`` dim (what the analyses/ scripts write) gets per-run curves."""
    run, _ = run_dir
    with xr.open_dataset(run / "metrics.nc") as ds:
        one = ds.load()
    both = xr.concat([one, one], dim=xr.Variable("run", ["a", "b"]))
    write = tmp_path / "two.nc"
    both.to_netcdf(write)
    assert main(["report", str(write)]) == 0
    out = tmp_path / "two_report"
    md = (out / "report.md").read_text()
    assert "| a: final train_loss |" in md and "| b: final train_loss |" in md
    for name in ("losses.png", "fig3_panels.png", "condition2.png", "angle_network.png"):
        assert mpimg.imread(out / name).ndim == 3
