"""The package's layering: genzoo's modules import one another without a cycle.

Read from the source with ``ast`` (nothing is imported), counting every import of a genzoo
module — at module level, in class bodies and inside functions (a lazy import is still a
dependency) — except those under ``if TYPE_CHECKING:``, which never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genzoo"


def _genzoo_targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The genzoo modules (``genzoo/NAME.py`` stems) one import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.startswith("genzoo.")]
        return [n.split(".")[1] for n in names]
    if node.level == 1:  # from .x import y / from . import x
        candidates = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
    elif node.level == 0 and node.module and node.module.startswith("genzoo."):
        candidates = [node.module.split(".")[1]]
    elif node.level == 0 and node.module == "genzoo":
        candidates = [a.name for a in node.names]
    else:
        return []
    return [c for c in candidates if (PACKAGE / f"{c}.py").is_file()]


def imports_of(path: Path) -> dict[str, bool]:
    """genzoo module -> True when ``path`` imports it at import time (module level or a class
    body), False when only inside a function."""
    found: dict[str, bool] = {}

    def visit(nodes: list[ast.stmt], at_import: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse, at_import)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _genzoo_targets(node):
                    found[target] = found.get(target, False) or at_import
            lazy = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child], at_import and not lazy)
                elif isinstance(child, ast.excepthandler):
                    visit(child.body, at_import and not lazy)

    visit(ast.parse(path.read_text()).body, True)
    found.pop(path.stem, None)
    return found


def import_graph() -> dict[str, dict[str, bool]]:
    """Every genzoo module -> the genzoo modules it imports (see ``imports_of``)."""
    return {p.stem: imports_of(p) for p in sorted(PACKAGE.glob("*.py"))}


def find_cycles(graph: dict[str, dict[str, bool]]) -> set[frozenset[str]]:
    """The modules of each import cycle: the strongly connected components of more than one
    module (Tarjan's algorithm; genzoo is small enough for recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for start in sorted(graph):
        if start not in index:
            visit(start)
    return found


#: Cycles known and not yet removed. Each entry must still exist: delete it when its cycle is
#: gone. (plugins <-> registry went when card data moved to genzoo.cards, below both.)
KNOWN_CYCLES: set[frozenset[str]] = set()


def test_the_parser_sees_every_kind_of_import(tmp_path):
    src = PACKAGE / "hub.py"  # a real module: relative, absolute and lazy forms around it
    assert imports_of(src)["integrity"] is True
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nfrom . import errors\n"
                     "import genzoo.hub\nif TYPE_CHECKING:\n    from .model import X\n"
                     "class A:\n    from .samples import Samples\n"
                     "def f():\n    from genzoo.registry import get_registry\n")
    assert imports_of(probe) == {"errors": True, "hub": True, "samples": True, "registry": False}
    assert find_cycles({"a": {"b": False}, "b": {"c": True}, "c": {"a": True}, "d": {"a": True}}
                       ) == {frozenset("abc")}
    assert find_cycles({"a": {"b": True}, "b": {}}) == set()


@pytest.mark.parametrize("module, forbidden", [
    ("hub", "registry"),     # the registry parses sources with hub; card-aware cache ops: cache.py
    ("hub", "cache"),
    ("train", "model"),      # model.finetune imports train; devices/dtypes come from devices.py
    ("devices", "model"),
    ("devices", "train"),
])
def test_a_lower_module_never_imports_a_higher_one(module, forbidden):
    assert forbidden not in imports_of(PACKAGE / f"{module}.py"), \
        f"genzoo/{module}.py imports genzoo.{forbidden}"


def test_the_package_has_no_import_cycle():
    cycles = find_cycles(import_graph())
    new = [" <-> ".join(sorted(c)) for c in cycles - KNOWN_CYCLES]
    assert not new, f"import cycle(s): {'; '.join(new)}"
    gone = [" <-> ".join(sorted(c)) for c in KNOWN_CYCLES - cycles]
    assert not gone, f"cycle(s) removed: delete them from KNOWN_CYCLES: {'; '.join(gone)}"
