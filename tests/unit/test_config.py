"""Configuration: bad input is one clear error naming the field and its allowed range, raised
before any compute; TOML files round-trip; the CLI turns bad input into exit status 2."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from neurodfc.cli import main
from neurodfc.config import (
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    load_config,
    load_toml,
    to_toml,
)
from neurodfc.experiment import load_data

REPO = Path(__file__).resolve().parents[2]
MODELS = sorted((REPO / "models").glob("*.toml"))
FIG1D = REPO / "models" / "fig1d.toml"


def _problem_lines(err: ConfigError) -> list[str]:
    """The per-field problems of a validation message (the message itself is one line)."""
    assert len(str(err).splitlines()) == 1, str(err)
    return err.problems


# ----------------------------------------------------------------------- bad config values
# (tree, overrides, substrings the single message must contain)
BAD_VALUES: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "negative_alpha": ({"controller": {"alpha": -0.1}}, [], ["controller.alpha"]),
    "dt_above_tau_ratio": (
        {"controller": {"tau_ratio": 0.2}, "simulation": {"solver": "euler", "dt": 0.5}},
        [],
        ["simulation.dt", "0.5", "(0, controller.tau_ratio = 0.2]"],
    ),
    "hidden_activation_length": (
        {"network": {"sizes": [3, 4, 5, 2], "hidden_activation": ["tanh"]}},
        [],
        ["hidden_activation", "1", "2 hidden layers"],
    ),
    "unknown_key": (
        {"controller": {"k_i": 1.0}},
        [],
        ["controller.k_i", "unknown key"],
    ),
    "unknown_activation": (
        {"network": {"hidden_activation": "swish"}},
        [],
        ["network.hidden_activation", "swish", '"tanh"', '"linear"', '"relu"', '"sigmoid"'],
    ),
    "unknown_output_activation": (
        {"network": {"output_activation": "softplus"}},
        [],
        ["network.output_activation", "softplus", '"tanh"', '"sigmoid"'],
    ),
    "set_unknown_field": ({}, ["controller.gain=2"], ["controller.gain", "unknown key"]),
    "set_unknown_section": ({}, ["optimizer.lr=0.1"], ["optimizer", "unknown key"]),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_value_is_a_config_error_naming_the_field(case: str) -> None:
    tree, overrides, needles = BAD_VALUES[case]
    with pytest.raises(ConfigError) as info:
        config_from_dict(tree, overrides, source="my.toml")
    msg = str(info.value)
    assert "my.toml" in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_negative_alpha_message_states_the_range() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"controller": {"alpha": -1e-3}})
    msg = str(info.value)
    assert "controller.alpha" in msg
    assert ">= 0" in msg or "greater than or equal to 0" in msg


@pytest.mark.parametrize(
    "case",
    [
        "negative_alpha",
        "dt_above_tau_ratio",
        "hidden_activation_length",
        "unknown_key",
        "unknown_activation",
        "unknown_output_activation",
        "set_unknown_field",
    ],
)
def test_one_bad_field_is_reported_once(case: str) -> None:
    tree, overrides, _ = BAD_VALUES[case]
    with pytest.raises(ConfigError) as info:
        config_from_dict(tree, overrides)
    assert len(_problem_lines(info.value)) == 1, str(info.value)


def test_every_bad_field_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"controller": {"alpha": -1.0, "k_p": -2.0}, "loss": {"lam": 0}})
    msg = str(info.value)
    for field in ("controller.alpha", "controller.k_p", "loss.lam"):
        assert field in msg
    assert len(_problem_lines(info.value)) == 3


@pytest.mark.parametrize(
    "tree",
    [
        # the boundary dt = tau_ratio is allowed: (0, tau_ratio]
        {"controller": {"tau_ratio": 0.2}, "simulation": {"solver": "euler_reference", "dt": 0.2}},
        # adaptive solvers take dt only as the first step
        {"controller": {"tau_ratio": 0.2}, "simulation": {"solver": "dopri5", "dt": 0.5}},
        # without v-dynamics there is no tau_v constraint
        {
            "controller": {"tau_ratio": 0.2},
            "simulation": {"solver": "euler_reference", "dt": 0.5, "inst_system_dynamics": True},
        },
        {"network": {"sizes": [3, 4, 5, 2], "hidden_activation": ["tanh", "relu"]}},
        {"controller": {"alpha": 0.0}},
    ],
)
def test_valid_edge_cases_are_accepted(tree: dict[str, Any]) -> None:
    config_from_dict(tree)


def test_default_solver_is_the_continuous_path_with_its_own_tolerances() -> None:
    sim = ExperimentConfig().simulation
    assert sim.solver == "etdrk4"
    assert sim.tolerances == (2e-4, 1e-12)
    odeint = config_from_dict({"simulation": {"solver": "dopri5"}}).simulation
    assert odeint.tolerances == (1e-7, 1e-9)
    explicit = config_from_dict({"simulation": {"rtol": 1e-3, "atol": 1e-6}}).simulation
    assert explicit.tolerances == (1e-3, 1e-6)


@pytest.mark.parametrize(
    ("section", "fields", "needle"),
    [
        ("noise", {"sigma": 0.01}, "noise.sigma > 0 needs simulation.solver = 'euler_reference'"),
        ("noise", {"sigma_output": 0.01}, "noise.sigma > 0 needs"),
        ("simulation", {"inst_system_dynamics": True}, "simulation.inst_system_dynamics"),
    ],
)
def test_reference_scheme_features_are_refused_by_the_continuous_solver(
    section: str, fields: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config_from_dict({section: fields})
    # the same settings are valid with the reference scheme
    tree: dict[str, Any] = {"simulation": {"solver": "euler_reference"}}
    tree.setdefault(section, {}).update(fields)
    config_from_dict(tree)


def test_dt_rule_applies_to_every_fixed_step_solver() -> None:
    for solver in ("euler_reference", "euler", "midpoint", "rk4"):
        with pytest.raises(ConfigError, match="simulation.dt"):
            config_from_dict(
                {"controller": {"tau_ratio": 0.1}, "simulation": {"solver": solver, "dt": 0.11}}
            )


def test_set_without_equals_sign_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(FIG1D, ["controller.k_p"])


def test_set_override_is_parsed_as_toml() -> None:
    cfg = load_config(
        FIG1D,
        ["controller.k_p=0.5", "network.sizes=[15, 7, 1]", "name=plain words", "loss.lam=1e-3"],
    )
    assert cfg.controller.k_p == 0.5
    assert cfg.network.sizes == [15, 7, 1]
    assert cfg.name == "plain words"
    assert cfg.loss.lam == 1e-3


# ----------------------------------------------------------------------- files
def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "not found" in str(info.value)


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[network\nsizes = [1, 2]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "TOML" in msg and "line 2" in msg


def test_bad_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "neg.toml"
    path.write_text("[controller]\nalpha = -1.0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "controller.alpha" in str(info.value)


def test_network_sizes_must_fit_the_data(data_dir: Path) -> None:
    cfg = config_from_dict(
        {
            "network": {"sizes": [10, 5, 10]},
            "loss": {"loss": "cross_entropy"},
            "data": {"dataset": "mnist", "data_dir": str(data_dir / "mnist")},
        }
    )
    with pytest.raises(ValueError) as info:
        load_data(cfg)
    msg = str(info.value)
    assert "network.sizes" in msg and "784" in msg


# ----------------------------------------------------------------------- round trip
@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_model_file_loads_and_round_trips(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    # every key of the file is a field (extra="forbid") and survives validation unchanged
    raw = load_toml(path)
    dumped = cfg.model_dump(mode="json")
    for section, table in raw.items():
        if isinstance(table, dict):
            for key, value in table.items():
                assert dumped[section][key] == value, (section, key)
        else:
            assert dumped[section] == table
    again = config_from_dict(tomllib.loads(to_toml(cfg)))
    assert again == cfg


ROUND_TRIP_CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "hidden_list": {"network": {"sizes": [3, 4, 5, 2], "hidden_activation": ["relu", "tanh"]}},
    "optional_fields_set": {
        "apical": {"tau": 0.05},
        "noise": {"sigma": 0.01, "sigma_output": 0.0},
        "simulation": {"solver": "euler_reference", "dt": 0.01},
        "data": {"data_dir": 'C:\\data "quoted"\n', "max_train_samples": 7},
    },
    "extreme_floats": {"simulation": {"rtol": 1e-300, "atol": 1.5e-12, "dt": 1e-7}},
    "bmp_unicode_name": {"name": "Fig. 1D \u2013 \u03bb sweep"},
    "t_max_without_steps": {"simulation": {"steps": None, "t_max": 5.0}},
    "non_bmp_name": {"name": "run \U0001f9e0"},
}


@pytest.mark.parametrize(
    "case",
    [
        "defaults",
        "hidden_list",
        "optional_fields_set",
        "extreme_floats",
        "bmp_unicode_name",
        "t_max_without_steps",
        "non_bmp_name",
    ],
)
def test_to_toml_round_trip(case: str) -> None:
    cfg = config_from_dict(ROUND_TRIP_CASES[case])
    again = config_from_dict(tomllib.loads(to_toml(cfg)))
    assert again == cfg


# ----------------------------------------------------------------------- CLI exit codes
# (argv after "simulate CONFIG --out OUT", a substring the message must contain)
CLI_BAD: dict[str, tuple[list[str], str]] = {
    "negative_alpha": (["--set", "controller.alpha=-0.5"], "controller.alpha"),
    "dt_above_tau_ratio": (["--set", "simulation.dt=0.5"], "simulation.dt"),
    "hidden_activation_length": (
        ["--set", 'network.hidden_activation=["tanh"]'],
        "hidden_activation",
    ),
    "unknown_key": (["--set", "controller.gain=2"], "controller.gain"),
    "unknown_activation": (["--set", "network.hidden_activation=swish"], "swish"),
    "zero_samples": (["--samples", "0"], "--samples"),
}


def _run_cli(
    capsys: pytest.CaptureFixture[str], config: Path, out: Path, extra: list[str]
) -> tuple[int, str, str]:
    rc = main(["simulate", str(config), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _assert_clean_usage_error(rc: int, out: str, err: str, needle: str) -> None:
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("neurodfc simulate: error: ")
    assert err.count("error:") == 1
    assert needle in err


@pytest.mark.parametrize("case", list(CLI_BAD))
def test_cli_bad_value_exits_2_without_traceback(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra, needle = CLI_BAD[case]
    out_file = tmp_path / "out.nc"
    rc, out, err = _run_cli(capsys, FIG1D, out_file, extra)
    _assert_clean_usage_error(rc, out, err, needle)
    assert not out_file.exists() and list(tmp_path.iterdir()) == []  # nothing was computed


@pytest.mark.parametrize("case", list(CLI_BAD))
def test_cli_bad_value_is_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra, _ = CLI_BAD[case]
    _, _, err = _run_cli(capsys, FIG1D, tmp_path / "out.nc", extra)
    assert len(err.strip().splitlines()) == 1, err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    rc, out, err = _run_cli(capsys, missing, tmp_path / "out.nc", [])
    _assert_clean_usage_error(rc, out, err, str(missing))
    assert len(err.strip().splitlines()) == 1


def test_cli_malformed_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[controller]\nk_p = = 1\n")
    rc, out, err = _run_cli(capsys, bad, tmp_path / "out.nc", [])
    _assert_clean_usage_error(rc, out, err, str(bad))
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.nc").exists()


def test_cli_sizes_not_fitting_the_data(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = [
        "--set",
        "data.dataset=mnist",
        "--set",
        "loss.loss=cross_entropy",
        "--set",
        "network.sizes=[15, 10, 10]",
        "--set",
        f'data.data_dir="{data_dir / "mnist"}"',
    ]
    rc, out, err = _run_cli(capsys, FIG1D, tmp_path / "out.nc", extra)
    _assert_clean_usage_error(rc, out, err, "network.sizes")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.nc").exists()


def test_cli_subprocess_missing_file_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "neurodfc.cli", "simulate", "missing.toml", "--out", "x.nc"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "neurodfc simulate: error: config file not found: missing.toml"
    ]
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "--help"]])
def test_cli_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "simulate" in out and "usage:" in out


# ----------------------------------------------------------------------- strict mode (issue 13)
# (tree, the message must contain all of these)
STRICT_BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "bool_for_float": ({"controller": {"k_p": True}}, ["controller.k_p = true", "a finite number"]),
    "string_for_bool": ({"network": {"bias": "yes"}}, ['network.bias = "yes"', "true or false"]),
    "int_for_bool": ({"network": {"bias": 1}}, ["network.bias = 1", "true or false"]),
    "bool_for_lr": ({"training": {"lr": True}}, ["training.lr = true"]),
    "float_for_int": ({"training": {"epochs": 10.0}}, ["training.epochs = 10.0", "an integer"]),
    "string_for_int": ({"data": {"n_train": "100"}}, ['data.n_train = "100"', "an integer"]),
    "inf_tau_ratio": ({"controller": {"tau_ratio": math.inf}}, ["controller.tau_ratio = inf"]),
    "nan_rtol": ({"simulation": {"rtol": math.nan}}, ["simulation.rtol = nan", "finite"]),
    "inf_gamma": ({"method": {"gamma": math.inf}}, ["method.gamma = inf"]),
    "inf_fb_lr": ({"feedback_learning": {"lr": math.inf}}, ["feedback_learning.lr = inf"]),
    "nan_beta": ({"training": {"betas": [math.nan, 0.9]}}, ["training.betas[0] = nan"]),
    "beta_above_1": ({"training": {"betas": [1.5, 0.9]}}, ["training.betas[0] = 1.5", "[0, 1)"]),
    "beta_is_1": ({"feedback_learning": {"betas": [0.9, 1.0]}}, ["betas[1] = 1.0", "[0, 1)"]),
    "nan_gammas": ({"analysis": {"gammas": [0.1, math.nan]}}, ["analysis.gammas[1] = nan"]),
    "size_zero": ({"network": {"sizes": [3, 0, 1]}}, ["network.sizes[1] = 0", ">= 1"]),
    "size_float": ({"network": {"sizes": [3, 2.5, 1]}}, ["network.sizes[1] = 2.5", "integer"]),
    "steps_huge": ({"simulation": {"steps": 10**12}}, ["simulation.steps", "10000000"]),
    "t_max_huge": ({"simulation": {"t_max": 1e300}}, ["simulation.t_max = 1e+300"]),
    "t_max_over_dt": (
        {"simulation": {"t_max": 1e5, "dt": 1e-6}},
        ["simulation.t_max / simulation.dt", "10000000 time points"],
    ),
    "horizon_huge": ({"simulation": {"dt": 1e300, "steps": 10}}, ["simulation.steps x"]),
    "seed_too_big": ({"seed": 2**64}, ["seed = 18446744073709551616", "[0, 2**63 - 1]"]),
    "seed_negative": ({"seed": -1}, ["seed = -1"]),
    "teacher_seed": ({"data": {"teacher_seed": 2**63}}, ["data.teacher_seed"]),
    "device_typo": ({"device": "cuda:x"}, ['device = "cuda:x"', '"cpu"']),
    "section_scalar": ({"controller": 3}, ["controller = 3", "table"]),
}


@pytest.mark.parametrize("case", list(STRICT_BAD))
def test_strict_types_and_ranges(case: str) -> None:
    tree, needles = STRICT_BAD[case]
    with pytest.raises(ConfigError) as info:
        config_from_dict(tree, source="f.toml")
    msg = str(info.value)
    assert msg.startswith("f.toml: ") and len(msg.splitlines()) == 1, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_int_for_float_is_fine_and_ints_stay_ints() -> None:
    cfg = config_from_dict({"controller": {"k_p": 2}, "training": {"epochs": 3}})
    assert cfg.controller.k_p == 2.0 and isinstance(cfg.controller.k_p, float)
    assert isinstance(cfg.training.epochs, int)


def test_numpy_scalars_and_paths_from_python_are_accepted(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    cfg = config_from_dict(
        {
            "network": {"sizes": [np.int64(4), 3, np.int32(2)], "bias": np.bool_(False)},
            "controller": {"k_p": np.float32(0.5)},
            "data": {"data_dir": tmp_path},
        }
    )
    assert cfg.network.sizes == [4, 3, 2] and type(cfg.network.sizes[0]) is int
    assert cfg.network.bias is False and cfg.data.data_dir == str(tmp_path)


def test_many_bad_fields_one_line_with_a_count() -> None:
    tree = {"controller": {"alpha": -1.0, "k_p": -1.0, "tau_ratio": 0.0}, "loss": {"lam": 0}}
    tree["training"] = {"lr": -1.0, "eps": 0.0}
    with pytest.raises(ConfigError) as info:
        config_from_dict(tree)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and msg.endswith("(and 2 more)"), msg
    assert len(info.value.problems) == 6


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        (
            {"method": {"name": "strong_dfc"}, "simulation": {"inst_system_dynamics": True}},
            "simulation.inst_system_dynamics = true is not supported",
        ),
        (
            {
                "method": {"name": "strong_dfc_single"},
                "simulation": {"solver": "etdrk4", "dt": 0.5},
            },
            "simulation.dt = 0.5 must lie in (0, controller.tau_ratio = 0.2]",
        ),
        (
            {"method": {"name": "strong_dfc"}, "apical": {"tau": 0.01}},
            "simulation.dt = 0.02 must lie in (0, apical.tau = 0.01]",
        ),
        (
            {
                "method": {"name": "strong_dfc"},
                "noise": {"sigma": 0.1},
                "strong": {"noise": "ou", "tau_noise": 0.01},
            },
            "(0, strong.tau_noise = 0.01]",
        ),
        (
            {
                "method": {"name": "strong_dfc"},
                "feedback": {"learned": True},
                "feedback_learning": {"apical_tau": 0.001},
            },
            "feedback_learning.dt = 0.00203 must lie in (0, feedback_learning.apical_tau = 0.001]",
        ),
        (
            {"feedback": {"learned": True}, "feedback_learning": {"apical_tau": 0.001}},
            "feedback_learning.apical_tau = 0.001]",
        ),
    ],
)
def test_run_time_refusals_are_made_at_validation(tree: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(tree)
    assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize("content", ["", "   \n\n", "# only a comment\n\n# another\n"])
def test_empty_config_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match="holds no settings"):
        load_config(path)
    assert config_from_dict({}) == ExperimentConfig()  # from Python, {} means the defaults


def test_binary_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "image.toml"
    path.write_bytes(b"name = 1\n\xff\xfe")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not a UTF-8 TOML file (byte 9 is 0xff)"


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("=1", "'' is not a key"),
        (".k_p=1", "'.k_p' is not a key"),
        ("controller.=1", "not a key"),
        ("controller.k p=1", "not a key"),
        ("controller.k_p=", "no value"),
        ("network.sizes=[1, 2", "not a valid TOML value"),
        ('name="unterminated', "not a valid TOML value"),
        ("seed=1\nname = 2", "one value expected"),
    ],
)
def test_malformed_set_is_refused(item: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [item])
    assert needle in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_model_file_round_trips_through_a_written_file(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    written = tmp_path / "config.toml"
    written.write_text(to_toml(cfg))
    assert load_config(written) == cfg


def test_to_toml_keeps_tiny_floats_and_tables() -> None:
    cfg = config_from_dict(
        {
            "simulation": {"atol": 1e-12, "rtol": 1.0000000000000002e-7, "max_step": 5e-324},
            "training": {"betas": [0.0, 0.999999999999]},
            "analysis": {"gammas": [0.0, 1e-300, 1e300]},
        }
    )
    text = to_toml(cfg)
    assert "[simulation]" in text and "[training]" in text
    again = config_from_dict(tomllib.loads(text))
    assert again == cfg
    assert again.simulation.max_step == 5e-324 and again.analysis.gammas[1] == 1e-300
