"""The package's import graph is acyclic and one-way: nothing imports a higher layer.

The graph is built statically: every module of ``neurodfc/`` is parsed with :mod:`ast` and each
``import`` / ``from ... import`` is resolved (relative imports included) to the module it loads.

* Function-level (lazy) imports count like top-level ones: they run too, only later. Imports
  under ``if TYPE_CHECKING:`` do not (they never run).
* Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a.b`` above it, so it adds an
  edge to each of them too (except the importer's own packages, which are already running).
* ``importlib.import_module("neurodfc....")`` with a literal name counts as an import. The
  method registry (:data:`neurodfc.methods.METHODS`, ``name -> "module:Class"`` imported on
  first use) is checked for layers only: a lazy lookup by name runs after every module
  involved is initialised, so it cannot take part in an import cycle.

Layers, lowest first (:data:`LAYERS`; a module may import its own layer and any layer below,
as long as no cycle forms). The longest matching prefix places a module; a module that no
prefix places fails the test, so a new module must be given its place here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "neurodfc"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # what a run is made of, and its inputs: no model code below them
    (
        "config",
        ("neurodfc.config", "neurodfc.config_errors", "neurodfc.preflight", "neurodfc.data"),
    ),
    # neurons (activation and its increment), controller, feedback, output target
    ("components", ("neurodfc.components", "neurodfc.increments")),
    # the network, the closed loop assembled from components (core), the system
    ("network/system", ("neurodfc.network", "neurodfc.system", "neurodfc.core")),
    # solvers of the closed loop; Strong-DFC's own simulation loop
    (
        "solvers",
        (
            "neurodfc.solve",
            "neurodfc.solvers",
            "neurodfc.integrators",
            "neurodfc.fastpath",
            "neurodfc.strong.dynamics",
        ),
    ),
    # learning methods; the strong package's __init__ re-exports its dynamics and methods
    ("methods", ("neurodfc.methods", "neurodfc.strong.methods", "neurodfc.strong")),
    # the training loop (it takes its callbacks), run folders and the glue of `neurodfc simulate`
    (
        "training",
        (
            "neurodfc.trainer",
            "neurodfc.faults",
            "neurodfc.epoch",
            "neurodfc.callbacks",
            "neurodfc.runs",
            "neurodfc.results",
            "neurodfc.experiment",
        ),
    ),
    ("analysis", ("neurodfc.analysis", "neurodfc.strong.analysis")),
    # user-facing: reports, sweeps, the command lines, figures; `train()` (neurodfc.training),
    # which composes the loop with the analysis logging its config asks for; the top-level
    # package, whose exports are lazy (names resolved on first use)
    (
        "report/sweep/cli",
        (
            "neurodfc.training",
            "neurodfc.ensemble",
            "neurodfc.strong.training",
            "neurodfc.report",
            "neurodfc.sweep",
            "neurodfc.cli",
            "neurodfc.figures",
            "neurodfc.plotting",
            "neurodfc.strong.__main__",
            "neurodfc",
        ),
    ),
]
"""``(layer name, module prefixes)`` from the lowest layer to the highest."""

PENDING: dict[tuple[str, str], str] = {}
"""Known violations being removed (importer, imported) -> who removes them. The test fails
when one of them no longer occurs, so this list only shrinks."""


def _module_names() -> dict[str, Path]:
    """Dotted name -> file for every module of the package."""
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, name: str | None, level: int, is_package: bool) -> str:
    """The absolute module that ``from <level dots><name> import ...`` in ``module`` means."""
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([name] if name else []))


def direct_imports(module: str) -> set[str]:
    """The ``neurodfc`` modules that ``module`` imports, as written (submodules resolved)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node.module, node.level, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return {m for m in out if m.split(".")[0] == "neurodfc" and m != module}


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def edges(pending: bool = True) -> dict[str, set[str]]:
    """module -> the modules that importing it runs directly (package ``__init__`` included).

    Args:
        pending: keep the :data:`PENDING` imports (False: leave them out).
    """
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        own = set(_ancestors(module))
        targets: set[str] = set()
        for target in direct_imports(module):
            if not pending and (module, target) in PENDING:
                continue
            for m in [*_ancestors(target), target]:
                if m != "neurodfc" and m not in own and m != module:
                    targets.add(m)
        graph[module] = targets
    return graph


def layer_of(module: str) -> int:
    """Index into :data:`LAYERS` of the longest prefix matching ``module``.

    Args:
        module: dotted module name.

    Raises:
        LookupError: when no prefix matches.
    """
    best, best_len = -1, -1
    for k, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = k, len(p)
    if best < 0:
        raise LookupError(module)
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


# --------------------------------------------------------------------------- the graph tool


def test_the_graph_sees_relative_lazy_and_package_imports(tmp_path: Path) -> None:
    """The parser on known snippets: relative, function-level, TYPE_CHECKING, import_module."""
    src = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sources\n"
        "from .idx import read_idx\n"
        "from ..config import ExperimentConfig\n"
        "if TYPE_CHECKING:\n"
        "    from neurodfc.training import Trainer\n"
        "def f():\n"
        "    import neurodfc.solve\n"
        "    import importlib\n"
        "    return importlib.import_module('neurodfc.report')\n"
    )
    (tmp_path / "probe.py").write_text(src)
    MODULES["neurodfc.data._layering_probe"] = tmp_path / "probe.py"
    try:
        found = direct_imports("neurodfc.data._layering_probe")
    finally:
        del MODULES["neurodfc.data._layering_probe"]
    assert found == {
        "neurodfc.data.sources",
        "neurodfc.data.idx",
        "neurodfc.config",
        "neurodfc.solve",
        "neurodfc.report",
    }
    # importing neurodfc.methods.base runs neurodfc/methods/__init__.py first
    assert {"neurodfc.methods", "neurodfc.methods.base"} <= edges()["neurodfc.strong.methods"]
    assert "neurodfc.data" not in edges()["neurodfc.data.datasets"]  # its own package
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# --------------------------------------------------------------------------- the package


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for m in MODULES:
        try:
            layer_of(m)
        except LookupError:
            unplaced.append(m)
    assert not unplaced, f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_no_import_cycles() -> None:
    found = cycles(edges(pending=False))
    assert not found, "import cycles (each list imports itself around):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_no_upward_imports() -> None:
    upward = []
    for module, targets in edges(pending=False).items():
        for target in sorted(targets):
            lo, hi = layer_of(module), layer_of(target)
            if hi > lo:
                upward.append(f"{module} ({LAYERS[lo][0]}) -> {target} ({LAYERS[hi][0]})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_the_method_registry_points_at_the_methods_layer() -> None:
    from neurodfc.methods import METHODS

    methods = [k for k, (name, _) in enumerate(LAYERS) if name == "methods"][0]
    for name, target in METHODS.items():
        module = target.partition(":")[0]
        assert module in MODULES, f"METHODS[{name!r}] = {target!r}: no such module"
        assert layer_of(module) <= methods, f"METHODS[{name!r}] = {target!r} is above methods"


@pytest.mark.parametrize(("importer", "imported"), sorted(PENDING))
def test_pending_violations_still_exist(importer: str, imported: str) -> None:
    """Each PENDING entry must still occur; when it is gone, delete it from PENDING."""
    assert imported in direct_imports(importer), (
        f"{importer} no longer imports {imported}: remove it from PENDING in {__file__}"
    )
