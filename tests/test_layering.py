"""The package's layering: the tree shows it, and imports keep to it.

The plugin-facing contract sits flat at the top of ``genzoo/``; the subpackages named for
their job sit on it, and dependencies point down: cli/serve/kit -> api -> eval/engine ->
catalog -> plugins -> the contract, never up. Read from the source with ``ast`` (nothing is
imported), counting every import of a genzoo module — at module level, in class bodies and
inside functions (a lazy import is still a dependency) — except those under
``if TYPE_CHECKING:``, which never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genzoo"

#: Layer of each subpackage; a top-level module is the contract (0) unless named here.
LAYERS: dict[str, int] = {"plugins": 1, "modalities": 1, "catalog": 2, "engine": 3, "eval": 3, "api": 4,
                          "kit": 5, "serve": 5, "cli": 6}

#: The documented ways up: the deprecated ``GenerativeModel.finetune`` alias calls the engine;
#: ``genzoo.testing`` is the pytest face of the kit; ``__init__`` exposes the API lazily;
#: ``_moved`` aliases the old flat names.
ALLOWED_UP: set[tuple[str, str]] = {
    ("model", "engine.train"), ("testing", "kit.conformance"), ("testing", "kit.train"),
    ("testing", "kit.config"), ("testing", "kit.conditions"), ("testing", "kit.devices"),
    ("testing", "kit.learning"), ("testing", "kit.writing"), ("__init__", "api"),
    ("__init__", "engine.train"), ("__main__", "cli"),
    # a Samples' modality is looked up among the plugins' registrations
    ("samples", "plugins.modalities"), ("writers", "plugins.modalities"),
}


def module_names() -> dict[str, Path]:
    """Every genzoo module as a dotted name below ``genzoo`` (``engine.train``, ``model``,
    ``cli`` for a package's ``__init__``), mapped to its file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if "templates" in rel.parts:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def layer(name: str) -> int:
    """The layer of a module: its subpackage's, or its own for a top-level one."""
    return LAYERS.get(name.split(".")[0], 0)


def _resolve(base: str, names: list[str]) -> list[str]:
    """The genzoo modules that ``from genzoo.BASE import NAMES`` pulls in."""
    found = []
    for n in names:
        full = f"{base}.{n}" if base else n
        if full in MODULES:
            found.append(full)
    if base in MODULES and not found:
        found.append(base)
    return found


def _genzoo_targets(node: ast.Import | ast.ImportFrom, here: str) -> list[str]:
    """The genzoo modules one import statement names."""
    if isinstance(node, ast.Import):
        return [a.name[len("genzoo."):] for a in node.names
                if a.name.startswith("genzoo.") and a.name[len("genzoo."):] in MODULES]
    names = [a.name for a in node.names]
    if node.level:
        pkg = here.split(".")[: -node.level] if "." in here else []
        base = ".".join(pkg + ([node.module] if node.module else []))
        return _resolve(base, names)
    if node.module == "genzoo":
        return _resolve("", names)
    if node.module and node.module.startswith("genzoo."):
        return _resolve(node.module[len("genzoo."):], names)
    return []


def imports_of(name: str, path: Path | None = None) -> dict[str, bool]:
    """genzoo module -> True when module ``name`` imports it at import time (module level or
    a class body), False when only inside a function."""
    found: dict[str, bool] = {}

    def visit(nodes: list[ast.stmt], at_import: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse, at_import)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _genzoo_targets(node, name):
                    found[target] = found.get(target, False) or at_import
            lazy = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child], at_import and not lazy)
                elif isinstance(child, ast.excepthandler):
                    visit(child.body, at_import and not lazy)

    visit(ast.parse((path or MODULES[name]).read_text()).body, True)
    found.pop(name, None)
    return found


def import_graph() -> dict[str, dict[str, bool]]:
    """Every genzoo module -> the genzoo modules it imports (see ``imports_of``)."""
    return {name: imports_of(name) for name in MODULES}


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


def test_the_parser_sees_every_kind_of_import(tmp_path):
    assert imports_of("catalog.hub")["catalog.integrity"] is True
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nfrom .. import errors\n"
                     "import genzoo.catalog.hub\nfrom . import registry\n"
                     "if TYPE_CHECKING:\n    from genzoo.model import X\n"
                     "class A:\n    from genzoo.samples import Samples\n"
                     "def f():\n    from genzoo.engine.train import finetune\n")
    assert imports_of("catalog.probe", probe) == {
        "errors": True, "catalog.hub": True, "catalog.registry": True, "samples": True,
        "engine.train": False}
    assert find_cycles({"a": {"b": False}, "b": {"c": True}, "c": {"a": True}, "d": {"a": True}}
                       ) == {frozenset("abc")}
    assert find_cycles({"a": {"b": True}, "b": {}}) == set()


def test_the_top_level_is_the_contract_and_short():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 20, f"genzoo/ has {len(top)} top-level modules: {top}"
    for sub in LAYERS:
        if sub != "api":
            assert (PACKAGE / sub / "__init__.py").is_file(), sub


def test_dependencies_point_down():
    upward = []
    for name, targets in import_graph().items():
        for target in targets:
            if layer(target) > layer(name) and (name, target) not in ALLOWED_UP:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that point up: " + "; ".join(sorted(upward))


def test_the_up_exceptions_are_lazy_and_still_needed():
    graph = import_graph()
    for name, target in ALLOWED_UP:
        if name in ("__init__", "__main__"):
            continue
        assert graph[name].get(target) is False, f"{name} -> {target} must stay inside a function"


@pytest.mark.parametrize("module, forbidden", [
    ("catalog.cards", "plugins"),        # cards are data; they know nothing of plugins
    ("plugins.manager", "catalog"),      # the manager discovers and records; the registry merges
    ("model", "engine"),                 # only the deprecated finetune alias (ALLOWED_UP)
    ("catalog.hub", "catalog.registry"),  # the registry parses sources with hub
    ("catalog.hub", "catalog.cache"),
    ("devices", "model"),
])
def test_a_lower_module_never_imports_a_higher_one(module, forbidden):
    bad = [t for t in imports_of(module) if (t == forbidden or t.startswith(forbidden + "."))
           and (module, t) not in ALLOWED_UP]
    assert not bad, f"genzoo/{module} imports {bad}"


def _engine_imports(tree: ast.AST) -> list[ast.stmt]:
    """The statements of ``tree`` that import ``genzoo.engine`` or a module in it."""
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module else []
        else:
            continue
        if any(n == "genzoo.engine" or n.startswith("genzoo.engine.") for n in names):
            found.append(node)
    return found


def _knows_lora(tree: ast.AST) -> bool:
    """Whether code (not a docstring) looks for a LoRA adapter: ``x.lora_adapter`` or
    ``getattr(x, "lora_adapter")``."""
    return any((isinstance(n, ast.Attribute) and n.attr == "lora_adapter")
               or (isinstance(n, ast.Constant) and n.value == "lora_adapter")
               for n in ast.walk(tree))


def test_only_the_finetune_alias_in_the_contract_knows_the_engine_or_lora():
    model = ast.parse(MODULES["model"].read_text())
    alias = next(n for n in ast.walk(model) if isinstance(n, ast.FunctionDef)
                 and n.name == "finetune")
    assert len(_engine_imports(model)) == 1, "model.py imports the engine outside the alias"
    assert _engine_imports(alias), "the engine import must be the one inside model.finetune"
    for name in MODULES:
        if layer(name) == 0 and name not in ("__init__", "_moved"):
            tree = ast.parse(MODULES[name].read_text())
            if name != "model":
                assert not _engine_imports(tree), f"genzoo/{name} imports the engine"
            assert not _knows_lora(tree), f"genzoo/{name} looks for a LoRA adapter"


def test_the_contract_test_sees_what_it_forbids():
    assert len(_engine_imports(ast.parse("import genzoo.engine.train\n"
                                         "def f():\n    from genzoo.engine import lora\n"))) == 2
    assert not _engine_imports(ast.parse('"""genzoo.engine.train is named, not imported"""'))
    assert _knows_lora(ast.parse("getattr(m, 'lora_adapter', None)"))
    assert _knows_lora(ast.parse("m.lora_adapter.base"))
    assert not _knows_lora(ast.parse('"""a docstring may say lora"""'))


def test_the_package_has_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycle(s): " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)
