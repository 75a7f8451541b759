"""Fuzz the ``neurodfc`` command with bad input, as a user would meet it (issue 13).

Generates several hundred bad inputs: wrong types, non-finite and out-of-range values for every
config field (read from :class:`neurodfc.config.ExperimentConfig`), huge sizes, malformed
config files (empty, comment-only, binary, latin-1, broken TOML, a folder), bad ``--set``
items, bad options and output paths, data that does not fit the network. Each one runs
``python -m neurodfc.cli simulate|train`` in a subprocess in its own empty folder and is
classified:

- **clean**: exit status 2, exactly one line on stderr, no traceback, and nothing written (the
  folder holds only the inputs the case made);
- anything else (listed with its stderr).

Run it by hand (not collected by pytest)::

    OMP_NUM_THREADS=1 .venv/bin/python tests/fuzz/fuzz_cli.py [--workers 2] [--limit N]

It prints the fraction of clean outcomes and exits 1 unless every case was clean.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import tomli_w
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from neurodfc.config import ExperimentConfig  # noqa: E402
from tests.fuzz.fields import unwrap as _unwrap  # noqa: E402

BASE: dict[str, Any] = {
    "name": "tiny",
    "network": {"sizes": [3, 4, 2]},
    "simulation": {"solver": "euler_reference", "dt": 0.05, "steps": 40},
    "data": {"n_train": 8, "n_val": 4, "n_test": 4},
    "training": {"epochs": 1, "batch_size": 4},
}
"""A tiny valid config (a bad value that slips through ends in seconds, not minutes)."""
NAN, INF = float("nan"), float("inf")


@dataclass
class Case:
    """One bad input: files to create, then the command line after ``neurodfc``."""

    name: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """How one case ended."""

    case: Case
    clean: bool
    why: str
    seconds: float


# ----------------------------------------------------------------------- field catalogue
def _leaves(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_leaves(ann, (*prefix, name)))
        else:
            out.append(((*prefix, name), (ann, list(info.metadata))))
    return out


def _out_of_range(tp: Any, meta: list[Any], rng: random.Random) -> list[Any]:
    vals: list[Any] = []
    for m in meta:
        if isinstance(m, Gt | Ge):
            lo = m.gt if isinstance(m, Gt) else m.ge
            if tp is int:
                vals.append(lo - (1 if isinstance(m, Ge) else 0) - rng.choice([0, 7, 10**12]))
            else:
                vals.append(lo if isinstance(m, Gt) else lo - rng.choice([1e-9, 1.0, 1e300]))
        elif isinstance(m, Lt | Le):
            hi = m.lt if isinstance(m, Lt) else m.le
            if tp is int:
                vals.append(hi + (1 if isinstance(m, Le) else 0) + rng.choice([0, 10**18]))
            else:
                vals.append(hi if isinstance(m, Lt) else hi * 2 + 1)
    return vals


def bad_values(ann: Any, meta: list[Any], rng: random.Random) -> list[Any]:
    """A handful of values the field must refuse."""
    tp, meta = _unwrap(ann, meta)
    origin = get_origin(tp)
    if origin is Literal:
        return ["no_such_option", rng.choice([1, True, ["x"]])]
    if origin in (Union, types.UnionType):
        return [1, ["tanh", "swish"]]
    if origin in (list, tuple):
        item, item_meta = _unwrap(get_args(tp)[0], [])
        n = 2 if origin is tuple else 1
        good = 0.5 if item is float else (3 if item is int else "tanh")
        bad_item = rng.choice(
            [*_out_of_range(item, item_meta, rng), "x", True, NAN] if item in (int, float) else [1]
        )
        if get_origin(item) is Literal:
            bad_item = "no_such_option"
        return ["not a list", [bad_item] + [good] * (n - 1)] + (
            [[good] * 3] if origin is tuple else []
        )
    wrong = {
        bool: [1, "yes", 0.0],
        int: [True, 2.5, "3"],
        float: [True, "0.5", NAN, INF, -INF, {"a": 1}],
        str: [1, True, ["a"]],
    }.get(tp, [3.5, "not a table"])  # a nested table (e.g. a [components] entry)
    picks = rng.sample(wrong, k=min(2, len(wrong)))
    if tp in (int, float):
        picks += _out_of_range(tp, meta, rng)
    return picks


def _literal(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_literal(x)}" for k, x in v.items()) + "}"
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip().replace("\n", " ")


def _toml(tree: dict[str, Any]) -> bytes:
    return tomli_w.dumps(tree).encode()


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return tree


# ----------------------------------------------------------------------- the cases
def _cmd(i: int) -> str:
    return "simulate" if i % 2 == 0 else "train"


def _out(cmd: str) -> str:
    return "out.nc" if cmd == "simulate" else "run"


def field_cases(rng: random.Random) -> list[Case]:
    """Every field with bad values, alternately in the file and through ``--set``."""
    cases, i = [], 0
    for path, (ann, meta) in _leaves(ExperimentConfig):
        dotted = ".".join(path)
        for value in bad_values(ann, meta, rng):
            cmd, i = _cmd(i), i + 1
            if i % 3:  # in the file
                files = {"c.toml": _toml(_with(path, value))}
                argv = [cmd, "c.toml", "--out", _out(cmd)]
            else:
                files = {"c.toml": _toml(BASE)}
                argv = [cmd, "c.toml", "--out", _out(cmd), "--set", f"{dotted}={_literal(value)}"]
            cases.append(Case(f"{dotted}={_literal(value)[:40]}", argv, files))
    return cases


def file_cases(rng: random.Random) -> list[Case]:
    """Unusable config files."""
    good = _toml(BASE)
    contents = {
        "empty": b"",
        "whitespace": b" \n\t \n\n",
        "comments": b"# nothing\n   # here\n",
        "binary": bytes(rng.randrange(256) for _ in range(512)),
        "png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "latin1": 'name = "caf\xe9"\n'.encode("latin-1"),
        "nul": b'name = "x"\x00\n',
        "broken_table": b"[network\nsizes = [1, 2]\n",
        "duplicate_key": good + b"\nname = 'again'\n",
        "truncated": good + b"\n[data\nn_train = ",
        "cut_in_a_string": b'name = "tin',
        "unknown_section": good + b"\n[optimizer]\nlr = 1\n",
        "array_of_tables": b"[[network]]\nsizes = [3, 2]\n",
        "utf16": "name = 'x'\n".encode("utf-16"),
    }
    cases = []
    for name, content in contents.items():
        for cmd in ("simulate", "train"):
            argv = [cmd, "c.toml", "--out", _out(cmd)]
            cases.append(Case(f"file:{name}", argv, {"c.toml": content}))
    for cmd in ("simulate", "train"):
        cases.append(Case("file:missing", [cmd, "nope.toml", "--out", _out(cmd)]))
        cases.append(Case("file:folder", [cmd, "d", "--out", _out(cmd)], folders=["d"]))
    return cases


def set_cases() -> list[Case]:
    """Malformed ``--set`` items."""
    items = [
        "=1",
        ".k_p=1",
        "controller.k_p",
        "controller.k_p=",
        "controller..k_p=1",
        "controller.k_p=[1,",
        "controller.k_p=1.5.3",
        "controller.k_p=1e999",
        "controller.k_p=-inf",
        "controller=1",
        "seed.x=1",
        "seed=18446744073709551616",
        "optimizer.lr=0.1",
        "controller.gain=2",
        "network.sizes=1,2",
        'name="unterminated',
        "training.betas=[nan, 0.9]",
        "analysis.gammas=[nan]",
    ]
    cases = []
    for i, item in enumerate(items):
        cmd = _cmd(i)
        argv = [cmd, "c.toml", "--out", _out(cmd), "--set", item]
        cases.append(Case(f"set:{item}", argv, {"c.toml": _toml(BASE)}))
    return cases


def option_cases() -> list[Case]:
    """Bad options, devices, output paths, sizes, data that does not fit."""
    base = {"c.toml": _toml(BASE)}
    sim, train = ["simulate", "c.toml"], ["train", "c.toml"]
    specs: list[tuple[str, list[str], dict[str, bytes], list[str]]] = [
        ("samples=0", [*sim, "--out", "o.nc", "--samples", "0"], base, []),
        ("samples=x", [*sim, "--out", "o.nc", "--samples", "x"], base, []),
        ("samples>n_train", [*sim, "--out", "o.nc", "--samples", "9"], base, []),
        ("epochs=0", [*train, "--out", "run", "--epochs", "0"], base, []),
        ("epochs=1.5", [*train, "--out", "run", "--epochs", "1.5"], base, []),
        ("seed=-1", [*train, "--out", "run", "--seed", "-1"], base, []),
        ("seed=2**64", [*sim, "--out", "o.nc", "--seed", str(2**64)], base, []),
        ("unknown flag", [*train, "--out", "run", "--fast"], base, []),
        ("no --out", [*train], base, []),
        ("bad command", ["simulat", "c.toml"], base, []),
        ("device=gpu", [*sim, "--out", "o.nc", "--device", "gpu"], base, []),
        ("device=cuda:x", [*train, "--out", "run", "--device", "cuda:x"], base, []),
        ("out is a folder", [*sim, "--out", "d"], base, ["d"]),
        ("out below a file", [*sim, "--out", "f/o.nc"], {**base, "f": b"x"}, []),
        ("train out is a file", [*train, "--out", "f"], {**base, "f": b"x"}, []),
        ("train out below a file", [*train, "--out", "f/run"], {**base, "f": b"x"}, []),
        ("plot is a folder", [*sim, "--out", "o.nc", "--plot", "d"], base, ["d"]),
    ]
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        specs += [
            ("device=cuda", [*sim, "--out", "o.nc", "--device", "cuda"], base, []),
            ("device=cuda (train)", [*train, "--out", "run", "--device", "cuda"], base, []),
        ]
    huge = [
        ("network.sizes", [3, 3 * 10**9, 2]),
        ("network.sizes", [3, 10**12, 2]),
        ("data.n_train", 10**12),
        ("data.n_train", 10**15),
        ("simulation.steps", 10**12),
        ("simulation.steps", 1e12),
        ("simulation.t_max", 1e300),
        ("data.n_test", 10**13),
    ]
    for i, (key, value) in enumerate(huge):
        cmd = _cmd(i)
        argv = [cmd, "c.toml", "--out", _out(cmd), "--set", f"{key}={_literal(value)}"]
        specs.append((f"huge {key}", argv, base, []))
    rec = ["--set", "simulation.steps=10000000", "--set", "simulation.record_every=1"]
    rec += ["--set", "network.sizes=[3, 400, 2]"]  # 8 samples x 1e7 steps x 408 units
    specs.append(("huge recording", [*sim, "--out", "o.nc", "--samples", "8", *rec], base, []))
    mismatch = [
        ["data.dataset=mnist"],
        ["loss.loss=cross_entropy", "network.sizes=[3, 4, 1]"],
        ["loss.loss=cross_entropy"],
        ["data.dataset=mnist_autoencoder", "network.sizes=[784, 10, 10]"],
    ]
    for i, sets in enumerate(mismatch):
        cmd = _cmd(i + 1)
        argv = [cmd, "c.toml", "--out", _out(cmd)] + [a for s in sets for a in ("--set", s)]
        specs.append((f"mismatch {' '.join(sets)}", argv, base, []))
    return [Case(f"opt:{n}", argv, files, folders) for n, argv, files, folders in specs]


def all_cases(seed: int = 0) -> list[Case]:
    """Every generated case, in a fixed order for ``seed``."""
    rng = random.Random(seed)
    return field_cases(rng) + file_cases(rng) + set_cases() + option_cases()


# ----------------------------------------------------------------------- running
def run_case(case: Case, timeout: float) -> Outcome:
    """Run one case in a fresh folder and classify it."""
    with tempfile.TemporaryDirectory(prefix="neurodfc_fuzz_") as tmp:
        root = Path(tmp)
        for name, content in case.files.items():
            (root / name).write_bytes(content)
        for name in case.folders:
            (root / name).mkdir()
        before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "neurodfc.cli", *case.argv],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return Outcome(case, False, f"still running after {timeout:.0f} s", timeout)
        seconds = time.perf_counter() - start
        after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        problems = []
        if proc.returncode != 2:
            problems.append(f"exit {proc.returncode}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if "Traceback" in proc.stderr:
            problems.append("traceback")
        if after != before:
            problems.append(f"wrote {sorted(set(after) - set(before))}")
        why = "; ".join(problems) or lines[0]
        if problems:
            why += " | " + " / ".join(lines[-3:])[:300]
        return Outcome(case, not problems, why, seconds)


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print a summary and the unclean ones; exit 0 only if all were clean."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2, help="cases run at once (default 2)")
    p.add_argument("--limit", type=int, default=None, help="run only the first N cases")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated values")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds per case")
    p.add_argument("--verbose", action="store_true", help="print every outcome")
    p.add_argument("--only", default=None, help="run only cases whose name starts with this")
    args = p.parse_args(argv)
    cases = [c for c in all_cases(args.seed) if c.name.startswith(args.only or "")]
    cases = cases[: args.limit]
    start = time.perf_counter()
    run: Callable[[Case], Outcome] = lambda c: run_case(c, args.timeout)  # noqa: E731
    with ThreadPoolExecutor(args.workers) as pool:
        outcomes = list(pool.map(run, cases))
    clean = [o for o in outcomes if o.clean]
    for o in outcomes:
        if args.verbose or not o.clean:
            tag = "clean" if o.clean else "NOT CLEAN"
            print(f"[{tag}] {o.case.name}: {' '.join(o.case.argv)} -> {o.why}")
    total = len(outcomes)
    groups: dict[str, list[int]] = {}
    for o in outcomes:
        g = o.case.name.split(":", 1)[0] if ":" in o.case.name.split("=")[0] else "field"
        groups.setdefault(g, [0, 0])
        groups[g][0] += o.clean
        groups[g][1] += 1
    for g, (c, n) in groups.items():
        print(f"  {g:6s}: {c} / {n} clean")
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(
        f"clean: {len(clean)} / {total} = {100 * len(clean) / max(total, 1):.1f} % "
        f"({time.perf_counter() - start:.0f} s; slowest case {slowest.seconds:.1f} s: "
        f"{slowest.case.name})"
    )
    return 0 if len(clean) == total else 1


if __name__ == "__main__":
    sys.exit(main())
