"""Bad input through the ``neurodfc`` command: every case exits 2 with one line on stderr that
names the file or option, the field and what is allowed, before anything is written; internal
errors exit 1 with a hint, Ctrl-C exits 130 (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurodfc import cli
from neurodfc.cli import main

REPO = Path(__file__).resolve().parents[2]
FIG1D = REPO / "models" / "fig1d.toml"


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line_error(rc: int, err: str, *needles: str, status: int = 2) -> None:
    assert rc == status, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------- config files
@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.toml", b"", "holds no settings"),
        ("blank.toml", b"  \n\t\n\n", "holds no settings"),
        ("comments.toml", b"# a comment\n   # another\n", "holds no settings"),
        ("binary.toml", bytes(range(128, 256)) * 4, "not a UTF-8 TOML file"),
        ("nul.toml", b'name = "x"\x00\n', "not valid TOML"),
        ("latin1.toml", 'name = "caf\xe9"\n'.encode("latin-1"), "not a UTF-8 TOML file"),
        ("broken.toml", b"[network\nsizes = [1, 2]\n", "not valid TOML"),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "train"])
def test_unusable_config_file_is_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    name: str,
    content: bytes,
    needle: str,
) -> None:
    cfg = tmp_path / name
    cfg.write_bytes(content)
    out = tmp_path / "out"
    rc, _, err = _run(capsys, [command, str(cfg), "--out", str(out)])
    _assert_one_line_error(rc, err, str(cfg), needle, f"neurodfc {command}: error:")
    assert _listing(tmp_path) == [name]


def test_config_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, ["train", str(tmp_path), "--out", str(tmp_path / "run")])
    _assert_one_line_error(rc, err, str(tmp_path), "is a folder")
    assert _listing(tmp_path) == []


def test_unreadable_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "locked.toml"
    cfg.write_text(FIG1D.read_text())

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    rc, _, err = _run(capsys, ["simulate", str(cfg), "--out", str(tmp_path / "o.nc")])
    _assert_one_line_error(rc, err, str(cfg), "cannot be read", "Permission denied")


# ----------------------------------------------------------------------- --set
@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("=1", ["--set '=1'", "not a key"]),
        (".k_p=1", ["'.k_p' is not a key"]),
        ("controller..k_p=1", ["not a key"]),
        ("controller.k_p", ["section.field=value"]),
        ("controller.k_p=", ["controller.k_p", "no value"]),
        ("controller.k_p=[1,", ["controller.k_p", "not a valid TOML value"]),
        ("controller.k_p=1.5.3", ["controller.k_p", "not a valid TOML value"]),
        ("controller.k_p=abc", ["controller.k_p", '"abc"', "must be a finite number >= 0"]),
        ("controller.k_p=1e999", ["controller.k_p = inf", "finite"]),
        ("controller.k_p=nan", ["controller.k_p = nan", "finite"]),
        ("controller.k_p=true", ["controller.k_p = true", "must be a finite number"]),
        ("network.bias=yes", ["network.bias", "true or false"]),
        ("network.bias=1", ["network.bias = 1", "true or false"]),
        ("simulation.steps=1e3", ["simulation.steps = 1000.0", "an integer"]),
        ("seed=18446744073709551616", ["seed = 18446744073709551616", "2**63 - 1"]),
        ("seed=-1", ["seed = -1", "[0, 2**63 - 1]"]),
        ("seed.x=1", ["seed"]),
        ("controller=1", ["controller = 1", "table"]),
        ("optimizer.lr=1", ["optimizer", "unknown key"]),
        ("controller.gain=2", ["controller.gain", "unknown key", "k_p"]),
        ("training.betas=[nan, 0.9]", ["training.betas[0] = nan", "[0, 1)"]),
        ("training.betas=[1.5, 0.9]", ["training.betas[0] = 1.5", "[0, 1)"]),
        ("training.betas=[0.9]", ["training.betas", "2 finite numbers"]),
        ("analysis.gammas=[nan]", ["analysis.gammas[0] = nan"]),
        ("network.sizes=[15, 0, 1]", ["network.sizes[1] = 0", ">= 1"]),
        ("simulation.t_max=1e300", ["simulation.t_max", "(0, 1000000]"]),
        ("device=gpu", ["device", '"cuda:N"']),
    ],
)
def test_bad_set_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], item: str, needles: list[str]
) -> None:
    out = tmp_path / "o.nc"
    rc, _, err = _run(capsys, ["simulate", str(FIG1D), "--out", str(out), "--set", item])
    _assert_one_line_error(rc, err, *needles)
    assert _listing(tmp_path) == []


def test_set_value_is_marked_as_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _run(
        capsys, ["simulate", str(FIG1D), "--out", str(tmp_path / "o"), "--seed", "-3"]
    )
    _assert_one_line_error(rc, err, str(FIG1D), "seed = -3 (from the command line)")


# ----------------------------------------------------------------------- device
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("how", [["--device", "cuda"], ["--set", 'device="cuda:0"']])
@pytest.mark.parametrize("command", ["simulate", "train"])
def test_cuda_without_cuda_names_the_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: list[str], command: str
) -> None:
    out = tmp_path / "out"
    rc, _, err = _run(capsys, [command, str(FIG1D), "--out", str(out), *how])
    _assert_one_line_error(rc, err, "device = ", "CUDA is not available", '"cpu"')
    assert _listing(tmp_path) == []


# ----------------------------------------------------------------------- data, memory
@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (["data.dataset=mnist"], ["network.sizes", "784", "data.dataset"]),
        (["loss.loss=cross_entropy"], ["cross_entropy", "network.sizes[-1] >= 2"]),
        (
            ["loss.loss=cross_entropy", "network.sizes=[15, 10, 3]"],
            ["loss.loss", "classification", "teacher_student"],
        ),
        (
            [
                "data.dataset=mnist",
                "network.sizes=[784, 10, 10]",
                "loss.loss=cross_entropy",
                "data.val_size=60000",
            ],
            ["data.val_size = 60000"],
        ),
        (["data.n_train=1000000000000"], ["memory", "data.n_train", "available"]),
        (["network.sizes=[15, 3000000000, 1]"], ["memory", "network.sizes", "available"]),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "train"])
def test_run_that_cannot_fit_leaves_nothing_behind(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    sets: list[str],
    needles: list[str],
) -> None:
    argv = [command, str(FIG1D), "--out", str(tmp_path / "run" / "x")]
    for item in sets:
        argv += ["--set", item]
    rc, _, err = _run(capsys, argv)
    _assert_one_line_error(rc, err, *needles)
    assert _listing(tmp_path) == []


def test_recorded_trajectory_too_big(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", str(FIG1D), "--out", str(tmp_path / "o.nc"), "--samples", "5000"]
    argv += ["--set", "simulation.steps=10000000", "--set", "simulation.record_every=1"]
    rc, _, err = _run(capsys, argv)
    _assert_one_line_error(rc, err, "recorded trajectories", "simulation.steps", "GB")
    assert _listing(tmp_path) == []


def test_samples_above_the_training_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", str(FIG1D), "--out", str(tmp_path / "o.nc"), "--samples", "6000"]
    rc, _, err = _run(capsys, argv)
    _assert_one_line_error(rc, err, "samples = 6000", "5000 training samples")


# ----------------------------------------------------------------------- output paths
def test_simulate_out_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, ["simulate", str(FIG1D), "--out", str(tmp_path)])
    _assert_one_line_error(rc, err, "--out", "is a folder")


def test_out_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    for argv in (
        ["simulate", str(FIG1D), "--out", str(tmp_path / "afile" / "o.nc")],
        ["train", str(FIG1D), "--out", str(tmp_path / "afile" / "run")],
    ):
        rc, _, err = _run(capsys, argv)
        _assert_one_line_error(rc, err, "--out", "is a file, not a folder")
    assert _listing(tmp_path) == ["afile"]


def test_train_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").write_text("x")
    rc, _, err = _run(capsys, ["train", str(FIG1D), "--out", str(tmp_path / "run")])
    _assert_one_line_error(rc, err, "--out", "is a file")


def test_plot_path_checked_before_simulating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", str(FIG1D), "--out", str(tmp_path / "o.nc"), "--plot", str(tmp_path)]
    rc, _, err = _run(capsys, argv)
    _assert_one_line_error(rc, err, "--plot", "is a folder")
    assert _listing(tmp_path) == []


def test_read_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission bits do not bind root, so the refusal is checked through ``os.access``."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    for command, out in (("simulate", ro / "o.nc"), ("train", ro / "run"), ("train", ro)):
        rc, _, err = _run(capsys, [command, str(FIG1D), "--out", str(out)])
        _assert_one_line_error(rc, err, "--out", "not writable")
    assert _listing(ro) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = _run(capsys, ["train", str(FIG1D), "--out", str(ro / "run")])
        _assert_one_line_error(rc, err, "not writable")
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------- argparse, faults
@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["simulate"],
        ["simulate", str(FIG1D)],
        ["simulate", str(FIG1D), "--out", "o.nc", "--samples", "x"],
        ["train", str(FIG1D), "--out", "r", "--epochs", "1.5"],
        ["train", str(FIG1D), "--out", "r", "--no-such-flag"],
    ],
)
def test_usage_error_is_one_line(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(capsys, argv)
    _assert_one_line_error(rc, err, "error:", "-h")
    assert _listing(tmp_path) == []


def test_internal_error_is_one_line_with_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom(args: object) -> int:
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "cmd_simulate", boom)
    argv = ["simulate", str(FIG1D), "--out", str(tmp_path / "o.nc")]
    rc, _, err = _run(capsys, argv)
    _assert_one_line_error(rc, err, "internal error", "KeyError", "--debug", status=1)
    rc, _, err = _run(capsys, [*argv, "--debug"])
    assert rc == 1 and "Traceback" in err and "surprise" in err


def test_ctrl_c_exits_130_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_train", interrupted)
    rc, _, err = _run(capsys, ["train", str(FIG1D), "--out", str(tmp_path / "r")])
    _assert_one_line_error(rc, err, "interrupted", status=130)


def test_subprocess_binary_config_has_no_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bin.toml"
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    proc = subprocess.run(
        [sys.executable, "-m", "neurodfc.cli", "train", str(cfg), "--out", "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"neurodfc train: error: {cfg}: not a UTF-8 TOML file (byte 0 is 0x89)"
    ]
    assert _listing(tmp_path) == ["bin.toml"]
