"""Record the golden corpus ``tests/golden/corpus.npz`` (see README.md in this folder).

What it records: every case of :func:`tests.golden.cases.all_cases` (every config of
``models/``: simulation ends and its method's update; the DFC / DFC-SS / DFC-SSA / MN / GN / BP /
DFA and sleep-phase updates and every solver and reference-scheme flag on ``fig3_dfc`` and
``mnist_dfc``; the Strong-DFC updates with white and OU noise; three very short trainings),
float64, fixed seeds, digested by :func:`tests.golden.cases.digest`. Keys are
``"<case>|<array>"``; the file also holds ``__meta__|commit`` and each case's run time is printed.

How to re-run (only when a change of numbers is intended and explained in the commit)::

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.golden.make_golden            # all cases
    OMP_NUM_THREADS=1 .venv/bin/python -m tests.golden.make_golden --dry-run  # time them only

The original corpus was made from the pristine commit 7c5807e, exported with
``git archive 7c5807e | tar -x -C /work/golden_base`` and run as
``cd /work/golden_base && PYTHONPATH=/work/golden_base python -m tests.golden.make_golden
--out /work/main/tests/golden/corpus.npz`` (this folder copied there), so that nothing edited
in the working tree could leak into it. ``--repeat`` records every case twice and refuses to
write if the two runs differ (the corpus holds only what is deterministic on CPU).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tests.golden.cases import REPO, SEP, all_cases, data_available, digest

CORPUS = Path(__file__).resolve().parent / "corpus.npz"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    bad = [k for k in a if k not in b or a[k].shape != b[k].shape]
    bad += [k for k in a if k not in bad and not np.array_equal(a[k], b[k], equal_nan=True)]
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=CORPUS, help="corpus file to write")
    parser.add_argument("--only", default="*", help="fnmatch pattern of case names")
    parser.add_argument("--dry-run", action="store_true", help="time the cases, write nothing")
    parser.add_argument("--repeat", action="store_true", help="run twice, require equality")
    parser.add_argument("--commit", default=None, help="commit recorded in the metadata")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if data_available() and "NEURODFC_DATA" not in os.environ:
        os.environ["NEURODFC_DATA"] = str(REPO.parent / "shared" / "data")
    import neurodfc

    print(f"neurodfc from {neurodfc.__file__}", flush=True)
    arrays: dict[str, np.ndarray] = {}
    total = 0.0
    failed: list[str] = []
    for case in all_cases():
        if not fnmatch.fnmatch(case.name, args.only):
            continue
        if case.needs_data and not data_available():
            print(f"SKIP {case.name}: no data folder", flush=True)
            continue
        t0 = time.process_time()  # CPU time: the machine may be shared
        got = digest(case.run())
        dt = time.process_time() - t0
        total += dt
        size = sum(a.nbytes for a in got.values())
        note = ""
        if args.repeat:
            bad = _same(got, digest(case.run()))
            if bad:
                failed.append(case.name)
                note = f"  NOT DETERMINISTIC: {bad[:4]}"
        print(f"{dt:7.2f} s {size / 1024:8.1f} KiB  {case.name}{note}", flush=True)
        arrays |= {f"{case.name}{SEP}{k}": v for k, v in got.items()}
    print(f"total {total:.1f} s CPU, {sum(a.nbytes for a in arrays.values()) / 2**20:.2f} MiB raw")
    if failed:
        print(f"refusing to write: not deterministic: {failed}", file=sys.stderr)
        return 1
    if not args.dry_run:
        arrays[f"__meta__{SEP}commit"] = np.array(args.commit or _commit())
        np.savez_compressed(args.out, **arrays)
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
