"""The plugin manager, driven by real entry points of fake plugins (tests/fake_plugins)."""
from __future__ import annotations

import sys

import pytest

from genzoo import plugins
from genzoo.errors import PluginError, PluginMissingError


def _info(manager, name):
    return {p.name: p for p in manager.plugins()}[name]


def test_good_plugin_registers_its_architecture(fake_plugins):
    manager = fake_plugins("fakegood")
    archs = manager.architectures()
    assert list(archs) == ["tiny-arch"]
    assert archs["tiny-arch"].target == "fakegood.model:Tiny"
    assert archs["tiny-arch"].plugin == "fakegood"
    info = _info(manager, "fakegood")
    assert (info.distribution, info.version, info.status) == ("genzoo-fakegood", "1.0", "ok")
    assert info.architectures == ["tiny-arch"]
    assert "fakegood.model" not in sys.modules  # the class is imported only on load


def test_import_failure_is_recorded_and_isolated(fake_plugins):
    manager = fake_plugins("fakegood", "fakebroken")
    assert "tiny-arch" in manager.architectures()
    info = _info(manager, "fakebroken")
    assert info.status == "error"
    assert info.error == "failed to import fakebroken: ImportError: No module named 'torchy'"
    assert _info(manager, "fakegood").status == "ok"


def test_hook_raising_is_recorded_and_isolated(fake_plugins):
    manager = fake_plugins("fakeraises", "fakegood")
    assert list(manager.architectures()) == ["tiny-arch"]
    info = _info(manager, "fakeraises")
    assert info.status == "error"
    assert "genzoo_architectures raised RuntimeError: boom in architectures" in info.error


def test_duplicate_architecture_first_plugin_wins(fake_plugins):
    manager = fake_plugins("fakegood", "fakedup")
    archs = manager.architectures()
    assert archs["tiny-arch"].plugin == "fakedup"  # sorted by entry-point name: fakedup first
    assert archs["dup-other"].plugin == "fakedup"
    good = _info(manager, "fakegood")
    assert good.status == "error"
    assert "'tiny-arch' is already provided by plugin 'fakedup'" in good.error


def test_strict_mode_raises(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="fakebroken.*torchy.*GENZOO_STRICT_PLUGINS"):
        fake_plugins("fakegood", "fakebroken")
    manager = fake_plugins("fakeraises")
    with pytest.raises(PluginError, match="boom in architectures"):
        manager.architectures()


def test_allow_list_loads_only_named_plugins(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENZOO_PLUGINS", "fakegood")
    manager = fake_plugins("fakegood", "fakebroken", "fakeraises")
    assert list(manager.architectures()) == ["tiny-arch"]
    statuses = {p.name: p.status for p in manager.plugins()}
    assert statuses == {"fakebroken": "disabled", "fakegood": "ok", "fakeraises": "disabled"}
    assert "fakeraises" not in sys.modules  # never imported


def test_load_arch_class_imports_lazily(fake_plugins):
    fake_plugins("fakegood")
    cls = plugins.load_arch_class("tiny-arch")
    assert cls.__name__ == "Tiny" and cls.arch == "tiny-arch"


def test_missing_arch_names_the_pip_line(fake_plugins):
    fake_plugins("fakegood", "fakebroken")
    with pytest.raises(PluginMissingError) as e:
        plugins.load_arch_class("diffusion-unet")
    msg = str(e.value)
    assert "pip install genzoo-diffusion" in msg
    assert "fakebroken failed to load" in msg and "\n" not in msg
    with pytest.raises(PluginMissingError, match="pip install my-dist"):
        plugins.load_arch_class("whatever", package_hint="my-dist")


def test_broken_targets_name_the_plugin(fake_plugins):
    manager = fake_plugins("fakebadtarget")
    with pytest.raises(PluginError, match=r"plugin 'fakebadtarget' cannot import architecture "
                                          r"'missing-target'.*ModuleNotFoundError"):
        plugins.load_arch_class("missing-target")
    with pytest.raises(PluginError, match="not a genzoo.GenerativeModel subclass"):
        plugins.load_arch_class("not-a-model")
    # the malformed third entry is recorded, the two good ones still registered
    assert set(manager.architectures()) == {"missing-target", "not-a-model"}
    assert "'family' must be a non-empty string" in _info(manager, "fakebadtarget").error


def test_detect_arch(fake_plugins):
    manager = fake_plugins("fakebadtarget", "fakegood")
    assert plugins.detect_arch({"model_type": "tiny"}, ["config.json"]) == "tiny-arch"
    assert plugins.detect_arch({"model_type": "gpt2"}, []) is None
    assert plugins.detect_arch({"model_type": "weird"}, []) is None  # unknown answer ignored
    assert "unknown architecture 'no-such-arch'" in _info(manager, "fakebadtarget").error


def test_plugin_cards_are_collected(fake_plugins):
    manager = fake_plugins("fakegood", "fakebroken")
    cards = manager.model_cards()
    assert [(p, c["name"]) for p, c in cards] == [("fakegood", "tiny-bundled")]


def test_discovery_through_installed_distributions(fake_plugins):
    """With the fake site on sys.path, reset() discovers its dist-infos like installed ones."""
    fake_plugins()
    assert "tiny-arch" not in plugins.architectures()  # an explicit empty set of entry points
    plugins.reset()
    found = {p.name: p for p in plugins.plugins()}
    assert {"fakegood", "fakebroken", "fakeraises", "fakedup", "fakebadtarget"} <= set(found)
    assert found["fakebroken"].status == "error"
    assert found["fakedup"].distribution == "genzoo-fakedup"
    assert "dup-other" in plugins.architectures()
