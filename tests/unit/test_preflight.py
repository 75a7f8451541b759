"""Preflight: the memory estimate against independent counts (the tensors a run really
allocates), the refusal when the device has less, data/loss fit and output paths (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurodfc import preflight as pf
from neurodfc.config import config_from_dict
from neurodfc.experiment import load_data, simulate_experiment
from neurodfc.preflight import PreflightError, estimate_memory, preflight
from neurodfc.system import DFCSystem

SMALL = {
    "network": {"sizes": [6, 5, 4, 3]},
    "simulation": {"solver": "euler_reference", "dt": 0.05, "steps": 62, "record_every": 4},
    "data": {"n_train": 20, "n_val": 7, "n_test": 9},
}


def test_weights_part_counts_every_parameter_tensor() -> None:
    cfg = config_from_dict(SMALL)
    net = DFCSystem.from_config(cfg).network
    tensors = [*net.W, *net.b, *net.Q]
    allocated = sum(t.numel() * t.element_size() for t in tensors)
    assert estimate_memory(cfg, "simulate").parts["network weights"][0] == allocated


def test_data_part_covers_the_loaded_splits() -> None:
    cfg = config_from_dict({**SMALL, "data": {**SMALL["data"], "dataset": "random"}})
    splits = load_data(cfg)
    loaded = sum(
        t.numel() * t.element_size()
        for s in (splits.train, splits.val, splits.test)
        for t in (s.x, s.y)
    )
    assert estimate_memory(cfg, "train").parts["data set"][0] == loaded


def test_recorded_trajectories_bound_the_written_dataset() -> None:
    """The netCDF arrays of a study (float64, one value per record, sample and unit of ``r_L``,
    ``u``, ``e`` and every ``v_i``) are the float64 half of the estimate's part."""
    cfg = config_from_dict(SMALL)
    samples = 3
    ds = simulate_experiment(cfg, samples=samples)
    n_rec = ds.sizes["time"]
    units = 3 * 3 + (5 + 4 + 3)
    assert n_rec == len(range(0, 62, 4)) + 1  # steps 0, 4, ..., 60 and the last, 61
    part = estimate_memory(cfg, "simulate", samples).parts["recorded trajectories"][0]
    assert part == n_rec * samples * units * (8 + 8)
    recorded = sum(
        ds[name].nbytes
        for name in ds.data_vars
        if "time" in ds[name].dims and "sample" in ds[name].dims
    )
    assert recorded >= part // 2


def test_too_little_memory_is_refused_with_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config_from_dict(SMALL)
    need = estimate_memory(cfg, "train").total
    monkeypatch.setattr(pf, "available_memory", lambda device: need - 1)
    with pytest.raises(PreflightError) as info:
        preflight(cfg, "train", source="s.toml")
    msg = str(info.value)
    assert msg.startswith("s.toml: the training needs at least") and "available" in msg
    assert pf.human_bytes(need) in msg and pf.human_bytes(need - 1) in msg
    monkeypatch.setattr(pf, "available_memory", lambda device: need)
    preflight(cfg, "train")  # exactly enough
    monkeypatch.setattr(pf, "available_memory", lambda device: 0)
    monkeypatch.setenv(pf.SKIP_MEMORY_ENV, "1")
    preflight(cfg, "train")  # the check is off


def test_available_memory_is_within_the_machine() -> None:
    free = pf.available_memory("cpu")
    meminfo = Path("/proc/meminfo")
    if free is None or not meminfo.exists():
        pytest.skip("no memory information on this machine")
    total_kb = next(
        int(ln.split()[1]) for ln in meminfo.read_text().splitlines() if "MemTotal" in ln
    )
    assert 0 < free <= total_kb * 1024


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        ({"data": {"dataset": "mnist"}}, "the input size must be 784 and the output size 10"),
        (
            {"network": {"sizes": [784, 5, 784]}, "data": {"dataset": "mnist_autoencoder"}},
            None,
        ),
        (
            {
                "network": {"sizes": [784, 5, 10]},
                "data": {"dataset": "fashion_mnist"},
                "loss": {"loss": "mse"},
            },
            'loss.loss = "mse" needs a regression data set',
        ),
        (
            {
                "network": {"sizes": [784, 5, 10]},
                "data": {"dataset": "mnist", "val_size": 60000},
                "loss": {"loss": "cross_entropy"},
            },
            "data.val_size = 60000 leaves no training images",
        ),
    ],
)
def test_data_fit_is_known_without_reading_data(
    tree: dict[str, object], needle: str | None
) -> None:
    cfg = config_from_dict(tree)
    if needle is None:
        pf.check_data(cfg)
        return
    with pytest.raises(PreflightError, match=needle):
        pf.check_data(cfg)


def test_training_samples_follow_the_data_config() -> None:
    def n(data: dict[str, object]) -> int:
        tree = {"network": {"sizes": [784, 5, 10]}, "loss": {"loss": "cross_entropy"}}
        return pf.training_samples(config_from_dict({**tree, "data": data}))

    assert n({"dataset": "mnist"}) == 55000
    assert n({"dataset": "mnist", "val_size": 0, "max_train_samples": 100}) == 100
    assert n({"dataset": "teacher_student", "n_train": 33}) == 33


def test_output_checks(tmp_path: Path) -> None:
    pf.check_output(tmp_path / "new" / "deeper" / "run", "folder")  # created later: fine
    pf.check_output(tmp_path / "o.nc", "file")
    (tmp_path / "o.nc").write_text("old")
    pf.check_output(tmp_path / "o.nc", "file")  # overwriting a file is allowed
    with pytest.raises(PreflightError, match="is a file"):
        pf.check_output(tmp_path / "o.nc", "folder")
    with pytest.raises(PreflightError, match="is a folder"):
        pf.check_output(tmp_path, "file", "--plot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nc"]
