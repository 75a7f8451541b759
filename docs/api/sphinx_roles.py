"""Griffe extension for the API reference: render the docstrings' Sphinx-style markup.

The docstrings are written for ``help()`` and use Sphinx roles (``:func:`simulate```,
``:class:`~neurodfc.methods.Update```) and ``text::`` before literal blocks. mkdocstrings reads
them as Markdown, so before rendering this extension rewrites, in every docstring of the
loaded package:

* a role whose target resolves to a public object of the package (looked up from the
  docstring's own scope outwards, then as an absolute path) into an autorefs cross-reference
  ``[`name`][canonical.path]``, which ``mkdocs build --strict`` checks;
* any other role (private objects, the standard library, other packages) into plain code;
* ``text::`` at the end of a paragraph into ``text:`` (the indented block after it is already a
  Markdown code block).

It is loaded by ``mkdocs.yml`` (``extensions`` option of the python handler) and changes only the
rendered site, never the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

logger = griffe.get_logger("sphinx_roles")

ROLE = re.compile(r":(func|class|meth|attr|mod|data|obj|exc):`(~?)([\w.]+)(?:\(\))?`")
LITERAL = re.compile(r"(\S)::\n(?=[ \t]*\n)")


def _public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles and ``::`` literal-block markers (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite every docstring of ``pkg`` once the package is loaded."""
        self._collection = loader.modules_collection
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj.docstring.value, obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]

    def _lookup(self, path: str) -> griffe.Object | griffe.Alias | None:
        try:
            return self._collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def _resolve(self, target: str, scope: griffe.Object, role: str) -> str | None:
        """The canonical path of ``target`` seen from ``scope``, or None."""
        candidates = []
        s: griffe.Object | None = scope
        while s is not None:
            candidates.append(f"{s.path}.{target}")
            s = s.parent
        candidates.append(target)
        for path in candidates:
            found = self._lookup(path)
            if found is None and path.startswith(f"{scope.path}.") and scope.is_class:
                # an inherited method (members lists only the class's own)
                found = scope.all_members.get(target)
            if found is None:
                continue
            name = target.rsplit(".", 1)[-1]
            if role != "mod" and found.is_module and name in found.members:
                # a package re-exports a function under its submodule's name (analysis.alignment)
                path, found = f"{path}.{name}", found.members[name]
            try:
                canonical = found.canonical_path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return None
            # objects re-exported from a private module are documented under the public name
            return canonical if _public(canonical) else (path if _public(path) else None)
        return None

    def _rewrite(self, text: str, obj: griffe.Object) -> str:
        scope = obj if obj.is_class or obj.is_module else (obj.parent or obj)

        def link(m: re.Match[str]) -> str:
            role, tilde, target = m.group(1), m.group(2), m.group(3)
            shown = target.rsplit(".", 1)[-1] if tilde else target
            path = self._resolve(target, scope, role)
            if path is None:
                logger.debug("%s: %s not linked", obj.path, m.group(0))
                return f"`{shown}`"
            return f"[`{shown}`][{path}]"

        return LITERAL.sub(r"\1:\n", ROLE.sub(link, text))
