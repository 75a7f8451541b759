"""The ``neurodfc`` command: ``simulate``, ``train``, ``sweep``, ``report``.

Bad input (a missing, binary or empty file, an unknown key, a value of the wrong type or out
of range, a device this machine lacks, a config too big for its memory, an output path that
cannot be written) is reported in one line on stderr naming the file, the field, the value and
what is allowed, with exit status 2, before anything is computed or written. A run that fails
on its own gets one line and exit status 1; an unexpected internal error one line and a hint
(``--debug`` shows the traceback), exit 1; Ctrl-C exit 130. No traceback reaches the user
otherwise (docs/errors.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from neurodfc.config import ConfigError, ExperimentConfig, load_config
from neurodfc.preflight import check_output, preflight

EXIT_USAGE = 2
"""Exit status of a usage error (bad file, key or value)."""
EXIT_FAILED = 1
"""Exit status of a run that failed, or of an internal error."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""


class UsageError(Exception):
    """A user error: printed as one message, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit with status 2.

        Args:
            message: argparse's description of the problem.
        """
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see {self.prog} -h)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


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
    _debug(p)


def _debug(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an internal error",
    )


def _load(args: argparse.Namespace, extra: Sequence[str] = ()) -> ExperimentConfig:
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.device is not None:
        overrides.append(f"device={json.dumps(args.device, ensure_ascii=False)}")
    overrides.extend(extra)
    return load_config(args.config, overrides)


def cmd_simulate(args: argparse.Namespace) -> int:
    """``neurodfc simulate``: run a dynamics study from the parsed ``args`` and write it as
    netCDF (and optionally a PNG)."""
    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    cfg = _load(args)
    preflight(cfg, "simulate", out=args.out, samples=args.samples, source=str(args.config))
    if args.plot is not None:
        check_output(args.plot, "file", "--plot")
    # torch and xarray load only now: bad input is answered without them
    from neurodfc.experiment import simulate_experiment
    from neurodfc.results import write_netcdf

    ds = simulate_experiment(cfg, samples=args.samples)
    out = write_netcdf(ds, args.out)
    counts = {s: int((ds["status"] == s).sum()) for s in set(ds["status"].values.tolist())}
    print(
        f"wrote {out} ({ds.sizes['sample']} samples, {ds.sizes['time']} time points; "
        f"status: {counts})"
    )
    if args.plot is not None:
        from neurodfc.plotting import plot_dynamics

        png = plot_dynamics(ds, args.plot)
        print(f"wrote {png}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``neurodfc train``: train the config of the parsed ``args`` into a run folder; exit 1
    (not 2) when training itself fails."""
    extra = [] if args.epochs is None else [f"training.epochs={args.epochs}"]
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    cfg = _load(args, extra)
    preflight(cfg, "train", out=args.out, source=str(args.config))
    from neurodfc.training import RunDirError, TrainingStopped, train

    try:
        result = train(cfg, args.out, resume=args.resume, quiet=args.quiet)
    except RunDirError as err:
        raise UsageError(str(err)) from None
    except TrainingStopped as err:
        print(f"neurodfc train: stopped: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    ds = result.metrics
    msg = f"wrote {result.path} (metrics.nc, checkpoint.pt, config.toml)"
    if "test_accuracy_at_best_val" in ds.attrs:
        msg += (
            f"; test accuracy at the best validation epoch "
            f"({ds.attrs['best_val_epoch']}): {100 * ds.attrs['test_accuracy_at_best_val']:.2f} %"
        )
    elif "test_loss_at_best_val" in ds.attrs:
        msg += f"; test loss at the best validation epoch: {ds.attrs['test_loss_at_best_val']:.4g}"
    print(msg)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``neurodfc sweep``: train every (grid point x seed) of the parsed ``args`` on
    dask.distributed; exit 1 when a run failed."""
    from neurodfc.sweep import (
        DEFAULT_MAX_MEMBERS,
        InvalidGridError,
        MissingDependencyError,
        parse_grid,
        parse_seeds,
        plan_grid_sweep,
        require_distributed,
        run_sweep,
    )

    try:
        require_distributed()
        seeds = parse_seeds(args.seeds, args.seed_list)
        grid = [parse_grid(g) for g in args.grid]
    except (MissingDependencyError, InvalidGridError) as err:
        raise UsageError(str(err)) from None
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.workers is not None and (args.workers < 1 or args.scheduler is not None):
        raise UsageError("--workers must be >= 1 and cannot be combined with --scheduler")
    if args.retries < 0:
        raise UsageError(f"--retries must be >= 0, got {args.retries}")
    if args.max_members is not None and args.max_members < 1:
        raise UsageError(f"--max-members must be >= 1, got {args.max_members}")
    if args.max_members is not None and not args.ensemble:
        raise UsageError("--max-members needs --ensemble")
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.device is not None:
        overrides.append(f"device={json.dumps(args.device, ensure_ascii=False)}")
    try:
        plan = plan_grid_sweep(args.config, args.out, seeds, grid, overrides)
    except InvalidGridError as err:
        raise UsageError(str(err)) from None
    invalid = [t for t in plan.tasks if t.config is None]
    if len(invalid) == len(plan.tasks):  # nothing can run: a plain usage error
        raise UsageError(str(invalid[0].error))
    report = run_sweep(
        plan,
        scheduler=args.scheduler,
        workers=args.workers,
        retries=args.retries,
        quiet=args.quiet,
        ensemble=args.ensemble,
        max_members=args.max_members or DEFAULT_MAX_MEMBERS,
    )
    if report.failed:
        print(
            f"neurodfc sweep: {len(report.failed)} of {len(plan.tasks)} runs failed "
            f"(see {args.out / 'logs'})",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``neurodfc report``: write PNG figures and report.md for the run folder or .nc file
    of the parsed ``args``."""
    from neurodfc.report import report

    md = report(args.run, args.out)
    print(f"wrote {md} and its figures")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neurodfc`` command."""
    parser = _Parser(
        prog="neurodfc",
        description="Deep Feedback Control: simulate, train and analyse (Meulemans et al. 2021).",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an internal error"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="simulate the network + controller dynamics")
    _common(p)
    p.add_argument("--samples", type=int, default=3, help="number of samples (default 3)")
    p.add_argument("--out", type=Path, required=True, help="output netCDF file")
    p.add_argument("--plot", type=Path, default=None, help="also write a PNG of r_L(t) and u(t)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a network with a learning method")
    _common(p)
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (overrides)")
    p.add_argument("--out", type=Path, required=True, help="run folder (RUN_DIR)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars (for logs)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sweep",
        help="train every (grid point x seed) as a task on dask.distributed",
        description="Train CONFIG for every seed and grid point on dask.distributed (a "
        "LocalCluster by default), then merge the runs into SWEEP_DIR/sweep.nc and write "
        "table.md / table.csv (mean +- std over seeds). Re-running the same command skips "
        "finished runs and resumes interrupted ones. Needs: pip install -e '.[sweep]'.",
    )
    p.add_argument("config", type=Path, help="TOML experiment config (see models/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field for every run (repeatable)",
    )
    seeds = p.add_mutually_exclusive_group(required=True)
    seeds.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1")
    seeds.add_argument("--seed-list", default=None, metavar="S1,S2,...", help="explicit seeds")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="SECTION.FIELD=V1,V2,...",
        help="a grid axis, e.g. --grid training.lr=1e-3,1e-2 (repeatable: full product)",
    )
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (overrides)")
    p.add_argument("--device", default=None, help="torch device of every run, e.g. cuda")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="use a running dask scheduler (e.g. tcp://host:8786) instead of a LocalCluster",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the LocalCluster (default: one per core)",
    )
    p.add_argument(
        "--retries", type=int, default=2, help="re-runs of a task whose worker died (default 2)"
    )
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="train runs that can share their simulations as ensembles (same outputs, faster)",
    )
    p.add_argument(
        "--max-members",
        type=int,
        default=None,
        metavar="N",
        help="most runs of one ensemble (default 35; with --ensemble)",
    )
    p.add_argument("--out", type=Path, required=True, help="sweep folder (SWEEP_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (for logs)")
    _debug(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="figures and report.md of a run folder or .nc file")
    p.add_argument("run", type=Path, help="RUN_DIR (with metrics.nc) or a .nc file")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/report)")
    _debug(p)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns
    the exit status (0 success, 1 a failed run or an internal error, 2 bad input, 130
    interrupted). ``--help`` exits through ``SystemExit(0)`` as argparse does.

    Args:
        argv: the command-line arguments without the program name.
    """
    prog = "neurodfc"
    debug = False
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:
            if done.code in (0, None):
                raise
            return EXIT_USAGE
        prog, debug = f"neurodfc {args.command}", bool(getattr(args, "debug", False))
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, UsageError, FileNotFoundError, ValueError) as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print(f"{prog}: error: out of memory; make the config smaller", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:  # a write failed after the checks (full disk, vanished folder)
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:
        if debug:
            traceback.print_exc()
        print(
            f"{prog}: internal error: {type(err).__name__}: {_one_line(err)} (run again with "
            "--debug to see the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
