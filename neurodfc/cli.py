"""The ``neurodfc`` command: ``simulate``, ``train``, ``report``.

Bad input (a missing file, an unknown key, a value out of range) is reported in one message
naming the field and the allowed range, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from neurodfc.config import ConfigError, ExperimentConfig, load_config

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: printed as one message, exit status 2."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="TOML experiment config (see models/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set controller.k_p=0.5 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (overrides the config's)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")


def _load(args: argparse.Namespace, extra: Sequence[str] = ()) -> ExperimentConfig:
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.device is not None:
        overrides.append(f'device="{args.device}"')
    overrides.extend(extra)
    return load_config(args.config, overrides)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run a dynamics study and write it as netCDF (and optionally a PNG)."""
    from neurodfc.experiment import simulate_experiment
    from neurodfc.results import write_netcdf

    cfg = _load(args)
    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    ds = simulate_experiment(cfg, samples=args.samples)
    out = write_netcdf(ds, args.out)
    counts = {s: int((ds["status"] == s).sum()) for s in set(ds["status"].values.tolist())}
    print(f"wrote {out} ({ds.sizes['sample']} samples, {ds.sizes['time']} time points; "
          f"status: {counts})")
    if args.plot is not None:
        from neurodfc.plotting import plot_dynamics

        png = plot_dynamics(ds, args.plot)
        print(f"wrote {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neurodfc`` command."""
    parser = argparse.ArgumentParser(
        prog="neurodfc",
        description="Deep Feedback Control: simulate, train and analyse (Meulemans et al. 2021).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="simulate the network + controller dynamics")
    _common(p)
    p.add_argument("--samples", type=int, default=3, help="number of samples (default 3)")
    p.add_argument("--out", type=Path, required=True, help="output netCDF file")
    p.add_argument("--plot", type=Path, default=None, help="also write a PNG of r_L(t) and u(t)")
    p.set_defaults(func=cmd_simulate)
    _register_optional(sub)
    return parser


def _register_optional(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Sub-commands provided by the training and analysis layers."""
    try:
        from neurodfc import training
    except ImportError:  # pragma: no cover - training layer absent
        return
    register: Callable[[argparse._SubParsersAction], None] | None = getattr(  # type: ignore[type-arg]
        training, "register_cli", None
    )
    if register is not None:
        register(sub)
    try:
        from neurodfc import report
    except ImportError:  # pragma: no cover
        return
    register = getattr(report, "register_cli", None)
    if register is not None:
        register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, UsageError, FileNotFoundError) as err:
        print(f"neurodfc {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as err:
        print(f"neurodfc {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"neurodfc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
