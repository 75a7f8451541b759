"""Reading and writing configs: TOML files, ``--set`` overrides, validation with one-line
errors, and serialisation back to TOML."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from neurodfc.config.base import ConfigError
from neurodfc.config.experiment import ExperimentConfig
from neurodfc.config_errors import one_line, validation_problems

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TOML_START = tuple("[{\"'+-.0123456789")


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {p!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``section.field=value``; the value is read as a TOML literal (``1e-3``, ``true``,
    ``[1, 2]``, ``"text"``); a bare word that is no TOML literal is taken as a string
    (``data.dataset=mnist``), anything else that fails to parse is an error.

    Args:
        item: one ``--set`` argument.

    Returns:
        ``(dotted key, value)``.

    Raises:
        ConfigError: no ``=``, a malformed key, an empty or malformed value.

    Examples:
        >>> parse_override("controller.k_p=1.5")
        ('controller.k_p', 1.5)
        >>> parse_override('network.hidden_activation=["tanh", "relu"]')
        ('network.hidden_activation', ['tanh', 'relu'])
        >>> parse_override("data.dataset=mnist")
        ('data.dataset', 'mnist')
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. controller.k_p=0.5")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not _KEY.fullmatch(key):
        raise ConfigError(
            f"--set {item!r}: {key!r} is not a key; expected section.field=value with names of "
            "letters, digits and _ (e.g. controller.k_p=0.5)"
        )
    if not raw:
        raise ConfigError(
            f'--set {key}= has no value; give a TOML value (1.5, true, "text", [1, 2])'
        )
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as err:
        if raw.startswith(_TOML_START) or raw in ("true", "false", "inf", "nan"):
            raise ConfigError(f"--set {key}={raw}: not a valid TOML value ({err})") from None
        return key, raw
    if list(parsed) != ["v"]:
        raise ConfigError(f"--set {key}={raw!r}: one value expected")
    return key, parsed["v"]


def config_from_dict(
    tree: dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    source: str = "<dict>",
    model: type[ExperimentConfig] = ExperimentConfig,
    config_dir: str | Path | None = None,
) -> ExperimentConfig:
    """Validate a nested dict (as read from TOML) with optional ``section.field=value``
    overrides; raises :class:`ConfigError` with one line naming every bad field, its value
    and what it allows.

    Args:
        tree: the config as nested dicts (sections as sub-dicts); not modified.
        overrides: ``section.field=value`` strings applied on top (see :func:`parse_override`).
        source: where the tree came from, for error messages.
        model: the config class (:class:`ExperimentConfig` or a subclass).
        config_dir: the folder of the config file, where ``[components]`` factories are
            looked up first (None: ``sys.path`` only, or their ``search_dir``).

    Examples:
        >>> cfg = config_from_dict({"network": {"sizes": [4, 3, 2]}}, ["controller.k_p=0.5"])
        >>> cfg.network.sizes, cfg.controller.k_p, cfg.simulation.solver
        ([4, 3, 2], 0.5, 'etdrk4')
        >>> config_from_dict({"controller": {"alpha": -1}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        neurodfc.config.ConfigError: <dict>: controller.alpha = -1: must be a finite number >= 0
    """
    tree = _copy_tree(tree)
    marks = []
    for item in overrides:
        key, value = parse_override(item)
        _set_path(tree, key, value)
        marks.append(key)
    try:
        context = {"config_dir": None if config_dir is None else str(config_dir)}
        return model.model_validate(tree, context=context)
    except ValidationError as err:
        problems = validation_problems(err, model, marks)
        raise ConfigError(one_line(source, problems), problems) from None


def _copy_tree(tree: Any) -> Any:
    """A deep copy of nested dicts and lists (values shared: they are immutable scalars)."""
    if isinstance(tree, dict):
        return {k: _copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_copy_tree(v) for v in tree]
    return tree


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; a missing, unreadable, binary, malformed or empty file raises
    :class:`ConfigError` naming it.

    Args:
        path: the TOML file.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a TOML config file")
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{p}: not a UTF-8 TOML file (byte {err.start} is 0x{raw[err.start]:02x})"
        ) from None
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML ({err})") from None
    if not tree:
        raise ConfigError(
            f"{p}: holds no settings (the file is empty or only comments); start from a config "
            "in models/"
        )
    return tree


def load_config(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    model: type[ExperimentConfig] = ExperimentConfig,
) -> ExperimentConfig:
    """Load a TOML config (e.g. from ``models/``) into a validated, frozen config.

    Args:
        path: the TOML file.
        overrides: ``section.field=value`` strings applied on top (the CLI's ``--set``).
        model: the config class (:class:`ExperimentConfig` or a subclass).
    """
    tree = load_toml(path)
    return config_from_dict(tree, overrides, str(path), model, config_dir=Path(path).parent)


def to_toml(cfg: BaseModel) -> str:
    """Serialise a config as TOML with tomli-w (sections as tables, ``None`` fields omitted);
    the result loads back into an equal config.

    Args:
        cfg: the config (any pydantic model of this package).

    Examples:
        >>> text = to_toml(config_from_dict({"simulation": {"atol": 1e-12}}))
        >>> config_from_dict(tomllib.loads(text)).simulation.atol
        1e-12
    """
    _check_representable(cfg)
    return tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True))


def _check_representable(cfg: BaseModel, prefix: str = "") -> None:
    """TOML has no null: a ``None`` is written by omission, which only round-trips when the
    field's default is ``None`` too."""
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            _check_representable(value, f"{prefix}{name}.")
        elif value is None and field.default is not None:
            raise ConfigError(
                f"{prefix}{name} = None cannot be written to TOML (its default is "
                f"{field.default!r}); set a value"
            )
