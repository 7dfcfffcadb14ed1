"""`genzoo new-plugin`: the names it derives, the files it writes, and — the real test — that
the generated plugin, registered through a real entry point, passes its own tests (the
conformance kit among them) and shows its model in `genzoo list`."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import yaml

from genzoo.catalog import registry
from genzoo.catalog.cards import load_catalog
from genzoo.cli.plugin import new_plugin_command
from genzoo.errors import OptionError
from genzoo.kit.scaffold import create_plugin, plugin_names
from genzoo.plugins import manager as plugins


def test_names_derive_from_the_distribution_name():
    n = plugin_names("genzoo-toy")
    assert (n.dist, n.package, n.entry_point, n.family, n.arch, n.card, n.class_name) == \
        ("genzoo-toy", "genzoo_toy", "toy", "toy", "toy-mlp", "toy", "ToyModel")
    n = plugin_names("pixel-art")
    assert (n.dist, n.package, n.entry_point, n.arch, n.class_name) == \
        ("pixel-art", "pixel_art", "pixel-art", "pixel-art-mlp", "PixelArtModel")


@pytest.mark.parametrize("bad", ["Genzoo-Toy", "toy_", "1toy", "genzoo", "genzoo-", "a--b", "",
                                 "toy/../x"])
def test_bad_names_are_one_line_option_errors(bad):
    with pytest.raises(OptionError) as err:
        plugin_names(bad)
    assert "\n" not in str(err.value)


def _env_with(*paths: Path) -> dict[str, str]:
    old = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), *old])}


def _install(root: Path, site: Path) -> Path:
    """"Install" the generated plugin: a dist-info with its entry point, as pip would write
    (no pip, no network), in ``site``; returns ``site``."""
    dist_info = site / "genzoo_toy-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-toy\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text("[genzoo]\ntoy = genzoo_toy\n")
    return site


def test_scaffold_writes_a_complete_light_project(tmp_path):
    root = create_plugin("genzoo-toy", tmp_path, weights=False)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "genzoo_toy/__init__.py", "genzoo_toy/build.py",
                     "genzoo_toy/model.py", "genzoo_toy/weights/cards.yaml", "pyproject.toml",
                     "tests/test_conformance.py", "tests/test_model.py"]
    for f in files:
        text = (root / f).read_text()
        assert "{{" not in text and "__package__" not in text, f"unfilled placeholder in {f}"
        if f.endswith(".py"):
            compile(text, f, "exec")
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "genzoo-toy"
    assert meta["project"]["entry-points"]["genzoo"] == {"toy": "genzoo_toy"}
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["genzoo_toy"]
    assert 'arch = "toy-mlp"' in (root / "tests/test_conformance.py").read_text()
    # The entry-point module is light; its cards are a catalog file, empty until weights are built.
    code = ("import sys, genzoo_toy as p; a = p.genzoo_architectures(); c = p.genzoo_model_cards();"
            "print(a[0]['name'], a[0]['target'], *c, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env_with(root), capture_output=True,
                         text=True, check=True).stdout.split()
    cards = root / "genzoo_toy" / "weights" / "cards.yaml"
    assert out == ["toy-mlp", "genzoo_toy.model:ToyModel", str(cards), "False"]
    assert load_catalog(cards) == []


def test_an_existing_folder_is_refused_unless_forced(tmp_path):
    (tmp_path / "genzoo-toy").mkdir()
    (tmp_path / "genzoo-toy" / "notes.txt").write_text("mine")
    with pytest.raises(OptionError, match="already exists"):
        create_plugin("genzoo-toy", tmp_path, weights=False)
    root = create_plugin("genzoo-toy", tmp_path, weights=False, force=True)
    assert (root / "notes.txt").read_text() == "mine" and (root / "pyproject.toml").is_file()


def test_an_entry_point_name_taken_by_another_distribution_is_refused(tmp_path, monkeypatch):
    taken = importlib.metadata.EntryPoint("toy", "other_toy", "genzoo")
    monkeypatch.setattr("genzoo.kit.scaffold.importlib.metadata.entry_points", lambda group: [taken])
    with pytest.raises(OptionError, match="'toy' is already used by the installed plugin"):
        create_plugin("genzoo-toy", tmp_path, weights=False)


def test_cli_command(tmp_path):
    runner = CliRunner()
    result = runner.invoke(new_plugin_command, ["genzoo-toy", "--dir", str(tmp_path),
                                                "--no-weights"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "genzoo-toy" / "pyproject.toml").is_file()
    assert "architecture toy-mlp" in result.output
    assert f'pip install -e "{tmp_path / "genzoo-toy"}[test]"' in result.output  # brings pytest
    readme = (tmp_path / "genzoo-toy" / "README.md").read_text()
    assert 'pip install -e ".[test]"' in readme and "pip install -e .  " not in readme
    result = runner.invoke(new_plugin_command, ["Bad_Name", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("Error: plugin name 'Bad_Name'")


@pytest.mark.slow
def test_the_generated_plugin_passes_its_own_tests_and_lists_its_model(tmp_path):
    root = create_plugin("genzoo-toy", tmp_path / "src")
    [card] = load_catalog(root / "genzoo_toy" / "weights" / "cards.yaml")
    assert set(card.files) == {"config.json", "model.safetensors"} and card.params > 0
    site = _install(root, tmp_path / "site")
    env = _env_with(root, site)
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-W", "error::pytest.PytestDeprecationWarning"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    # 19 conformance tests (test_cuda_bf16 skips without a GPU) + the model's own 4
    assert passed and int(passed.group(1)) >= 23 and "failed" not in summary, summary
    listing = subprocess.run([sys.executable, "-m", "genzoo", "list", "toy", "--json"], env=env,
                             capture_output=True, text=True, check=True)
    [card] = [c for c in json.loads(listing.stdout) if c["name"] == "toy"]
    assert (card["arch"], card["status"], card["package"]) == ("toy-mlp", "ready", "genzoo-toy")


def test_eval_write_card_writes_the_scaffolds_cards_yaml(tmp_path, monkeypatch):
    """The built card lives in weights/cards.yaml (digests from the build), which
    ``genzoo eval --write-card`` targets and updates, keeping the file's comments."""
    from genzoo.cli.eval import card_target, write_card_metrics
    root = create_plugin("genzoo-toy", tmp_path / "src")
    cards = root / "genzoo_toy" / "weights" / "cards.yaml"
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.syspath_prepend(str(_install(root, tmp_path / "site")))
    plugins.reset()
    registry.reset()
    try:
        assert card_target("toy") == cards
        assert write_card_metrics("toy", {"fd": 1.25}) == str(cards)
        text = cards.read_text()
        assert text.startswith("# The model cards genzoo-toy ships")
        assert yaml.safe_load(text)["models"][0]["metrics"] == {"fd": 1.25}
        assert registry.get_registry().get("toy").metrics["fd"] == 1.25
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "genzoo_toy"]:
            del sys.modules[name]
        plugins.reset()
        registry.reset()
