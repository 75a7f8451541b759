"""``python -m neurodfc.strong CONFIG --out DIR [--set section.field=value ...]``: train a
Strong-DFC config with :func:`neurodfc.strong.training.train_strong` (logs to stdout; the same
as ``neurodfc train CONFIG --out DIR``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and train; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m neurodfc.strong", description=__doc__)
    p.add_argument("config", help="TOML config (method.name strong_dfc or strong_dfc_single)")
    p.add_argument("--out", default=None, help="folder for config.toml and metrics.nc")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    args = p.parse_args(argv)
    from neurodfc.strong.training import train_strong

    def log(msg: str) -> None:
        print(msg, flush=True)

    train_strong(
        args.config,
        args.out,
        overrides=args.overrides,
        resume=args.resume,
        log=log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
