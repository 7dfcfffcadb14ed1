"""docs/plugins.md documents the contract as the code defines it: every hook with its exact
signature, every card field, the GenerativeModel members a family implements, the kit's
attributes, tests and options, and the plugin environment variables. (Like datasette's
test_docs.py: when the code changes, this fails until the guide follows.)"""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from genzoo import hookspecs
from genzoo.catalog.registry import _FIELDS
from genzoo.testing import Conformance

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def _hookspecs() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, "genzoo_spec")}


def _signature(fn) -> str:
    """``name(a: T, b: U) -> R`` with annotations as written in the source."""
    sig = inspect.signature(fn)

    def text(annotation) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    params = ", ".join(f"{p.name}: {text(p.annotation)}" if p.annotation is not p.empty
                       else p.name for p in sig.parameters.values())
    ret = "" if sig.return_annotation is sig.empty else f" -> {text(sig.return_annotation)}"
    return f"{fn.__name__}({params}){ret}"


def test_there_are_hookspecs_to_document():
    assert {"genzoo_architectures", "genzoo_model_cards"} <= set(_hookspecs())


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hook_is_documented_with_its_exact_signature(name):
    signature = _signature(_hookspecs()[name])
    assert f"### `{signature}`" in GUIDE, f"docs/plugins.md lacks a heading `### `{signature}``"


def test_no_documented_hook_is_missing_from_the_specs():
    documented = set(re.findall(r"^### `(genzoo_\w+)\(", GUIDE, flags=re.M))
    assert documented == set(_hookspecs())


@pytest.mark.parametrize("field", sorted(_FIELDS))
def test_every_card_field_is_documented(field):
    section = GUIDE.split("## Model cards", 1)[1].split("\n## ", 1)[0]
    assert f"| `{field}` |" in section


def _model_members() -> dict[str, ast.AST]:
    """GenerativeModel's methods and class attributes, read from the source (no torch)."""
    tree = ast.parse((ROOT / "genzoo" / "model.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GenerativeModel")
    members = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            members[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members[node.target.id] = node
    return members


FAMILY_METHODS = ["generate", "training_loss", "train_stages", "prepare_data", "ema_module",
                  "from_config", "save_extra_files", "load_extra_files"]
FAMILY_ATTRIBUTES = ["arch", "family", "modality", "sample_defaults", "train_defaults", "uses_ema"]


@pytest.mark.parametrize("name", FAMILY_METHODS)
def test_family_methods_are_documented_with_their_parameters(name):
    node = _model_members().get(name)
    assert isinstance(node, ast.FunctionDef), f"GenerativeModel.{name} no longer exists"
    a = node.args
    params = [p.arg for p in a.posonlyargs + a.args]
    params += [f"*{a.vararg.arg}"] if a.vararg else []
    params += [f"**{a.kwarg.arg}"] if a.kwarg else []
    assert f"`{name}({', '.join(params)})`" in GUIDE, f"document `{name}({', '.join(params)})`"


@pytest.mark.parametrize("name", FAMILY_ATTRIBUTES)
def test_family_attributes_are_documented(name):
    assert name in _model_members(), f"GenerativeModel.{name} no longer exists"
    section = GUIDE.split("## The model class", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"^\| [^|\n]*`{name}`", section, flags=re.M), f"document `{name}`"


def test_engine_hyper_parameters_are_documented():
    tree = ast.parse((ROOT / "genzoo" / "engine" / "train.py").read_text(encoding="utf-8"))
    [defaults] = [n.value for n in tree.body if isinstance(n, ast.AnnAssign)
                  and getattr(n.target, "id", None) == "DEFAULTS"]
    keys = [k.arg for k in defaults.keywords]
    assert "lr" in keys
    for key in keys:
        assert f"`{key}`" in GUIDE, f"document the train_defaults key `{key}`"


def test_the_kit_is_documented():
    attributes = [k for k, v in vars(Conformance).items()
                  if not k.startswith("_") and not callable(v)]
    tests = [k for k in vars(Conformance) if k.startswith("test_")]
    assert len(tests) >= 10
    for name in attributes + tests:
        assert f"| `{name}` |" in GUIDE, f"document Conformance.{name}"
    for option in ("--genzoo-arch", "--genzoo-config", "--genzoo-data"):
        assert option in GUIDE
    from genzoo.kit.conformance import HEAVY_MODULES
    kit = GUIDE[GUIDE.index("## Testing with the conformance kit"):GUIDE.index("## Checklist")]
    for module in HEAVY_MODULES:  # what test_registers_without_torch refuses at registration
        assert module in kit, f"name {module} among the kit's heavy modules"
    assert 'pip install -e ".[test]"' in kit  # pytest comes with the [test] extra


def test_commands_and_settings_named_in_the_guide_exist():
    from genzoo.cli.model import push_command
    from genzoo.cli.plugin import new_plugin_command
    assert new_plugin_command.name == "new-plugin" and "genzoo new-plugin" in GUIDE
    for option in ("--dir", "--force", "--no-weights"):
        assert option in {o for p in new_plugin_command.params for o in p.opts} and option in GUIDE
    assert push_command.name == "push" and "genzoo push DIR ORG/REPO" in GUIDE
    plugins_source = (ROOT / "genzoo" / "plugins" / "manager.py").read_text()
    for var in ("GENZOO_STRICT_PLUGINS", "GENZOO_PLUGINS", "GENZOO_TRUSTED_PLUGINS"):
        assert f'"{var}"' in plugins_source and f"`{var}=" in GUIDE


def test_precedence_rule_and_feature_net_fields_are_documented():
    """The guide names every first-party distribution of the precedence rule, and every key
    ``genzoo_feature_nets`` reads."""
    import genzoo.plugins.entries as entries
    from genzoo.plugins.manager import FIRST_PARTY
    section = GUIDE.split("### Precedence", 1)[1].split("\n## ", 1)[0]
    for dist in sorted(FIRST_PARTY):
        assert f"`{dist}`" in section, f"name {dist} in the precedence rule"
    source = inspect.getsource(entries.feature_net_info)
    keys = set(re.findall(r'entry(?:\.get\(|\[)"(\w+)"', source)) | {"name", "target"}
    assert keys == {"name", "target", "summary", "input_shape"}
    hook = GUIDE.split("### `genzoo_feature_nets()", 1)[1].split("\n### ", 1)[0]
    for key in keys:
        assert f"`{key}`" in hook, f"document the feature-net key `{key}`"
