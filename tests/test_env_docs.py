"""README's "Environment" table names every environment variable genzoo and its first-party
plugins read: found in the source (os.environ / os.getenv / click envvar= / the plugin
manager's _env_* helpers), not kept by hand."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "genzoo").rglob("*.py")),
           *sorted(ROOT.glob("plugins/*/genzoo_*/**/*.py"))]


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` (or a bare ``environ``)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id == "environ")


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def env_names(source: str) -> set[str]:
    """Variable names a module reads: ``os.environ.get("X")``, ``os.environ["X"]``,
    ``"X" in os.environ``, ``os.getenv("X")``, ``envvar="X"``, ``_env_*("X")``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            first = _literal(node.args[0]) if node.args else None
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") \
                    and _is_environ(func.value) and first:
                names.add(first)
            elif (isinstance(func, ast.Attribute) and func.attr == "getenv"
                  or isinstance(func, ast.Name) and (func.id == "getenv"
                                                     or func.id.startswith("_env_"))) and first:
                names.add(first)
            for kw in node.keywords:
                if kw.arg == "envvar" and _literal(kw.value):
                    names.add(_literal(kw.value))  # type: ignore[arg-type]
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and _literal(node.slice):
            names.add(_literal(node.slice))  # type: ignore[arg-type]
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators) \
                and _literal(node.left):
            names.add(_literal(node.left))  # type: ignore[arg-type]
    return names


def environment_section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Environment\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match, "README.md has no '## Environment' section"
    return match.group(1)


def test_every_variable_genzoo_reads_is_in_the_readme_table():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", environment_section()))
    used: dict[str, list[str]] = {}
    for path in SOURCES:
        for name in env_names(path.read_text(encoding="utf-8")):
            used.setdefault(name, []).append(str(path.relative_to(ROOT)))
    # the ones issue 18 names, so a broken scanner cannot pass by finding nothing
    assert {"GENZOO_HOME", "GENZOO_REGISTRY", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
            "GENZOO_STRICT_PLUGINS", "GENZOO_PLUGINS", "GENZOO_TRUSTED_PLUGINS", "HF_HOME",
            "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN"} <= set(used), used
    missing = {name: files for name, files in used.items() if name not in documented}
    assert not missing, f"add these to README's Environment table: {missing}"


def test_the_scanner_sees_each_way_of_reading_a_variable():
    code = '''
import os, click
os.environ.get("A1"); os.environ["A2"]; "A3" in os.environ; os.getenv("A4")
_env_true("A5"); click.option("--t", envvar="A6"); os.environ.get(name)
'''
    assert env_names(code) == {"A1", "A2", "A3", "A4", "A5", "A6"}


def test_the_completion_lines_in_the_readme_name_each_shell():
    readme = (ROOT / "README.md").read_text()
    for shell in ("bash", "zsh", "fish"):
        assert f"_GENZOO_COMPLETE={shell}_source genzoo" in readme, shell
