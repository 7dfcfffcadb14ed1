"""Core never branches on a modality's name: it asks the ``Modality`` (``genzoo.samples``).

Read from the source with ``ast``: a comparison of something named ``modality`` or ``kind``
with the name of a modality (``model.modality == "text"``, ``kind in ("image", "text")``),
and a dict keyed by modality names (a branch in disguise: ``TAGS[model.modality]``), are
refused everywhere in ``genzoo/`` but in ``genzoo/modalities/``, where each modality states
its own name.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "genzoo"
#: The first-party modalities' names; a third party's are unknown to core by construction.
NAMES = {"image", "text", "audio"}


def _names_in(node: ast.AST) -> set[str]:
    """Modality names a constant or a literal tuple/list/set of constants holds."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names_in(e) for e in node.elts)) if node.elts else set()
    return set()


def branches(source: str) -> list[str]:
    """The modality-name branches in ``source``, as ``line: code``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = [s for s in sides if _names_in(s)]
            others = " ".join(ast.unparse(s) for s in sides if not _names_in(s))
            if named and ("modality" in others or "kind" in others):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None and _names_in(k)]
            if len(keys) >= 2:
                found.append(f"{node.lineno}: {{{', '.join(ast.unparse(k) for k in keys)}: ...}}")
    return found


def test_genzoo_holds_no_branch_on_a_modality_name():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "modalities" in path.relative_to(PACKAGE).parts:
            continue
        bad += [f"{path.relative_to(PACKAGE.parent)}:{b}" for b in branches(path.read_text())]
    assert not bad, "branches on a modality's name (ask the Modality instead):\n" + \
        "\n".join(bad)


def test_the_scan_sees_what_it_forbids():
    assert branches('if model.modality == "text":\n    pass\n')
    assert branches('x = samples.kind != "image"\n')
    assert branches('ok = cls.modality in ("image", "text")\n')
    assert branches('TAGS = {"text": "text-generation", "image": "unconditional"}\n')
    assert not branches('if opt.type == "image":\n    pass\n')  # an option's value type
    assert not branches('name = "audio"\nspec = modality(name)\n')
