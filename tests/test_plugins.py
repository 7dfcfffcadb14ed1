"""The plugin manager, driven by real entry points of fake plugins (tests/fake_plugins)."""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FAKE_SRC, HOSTILE_DISTS, ROOT, write_dist_infos
from genzoo.plugins import manager as plugins
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


def test_duplicate_architecture_first_registered_wins_not_alphabetical(fake_plugins, caplog):
    manager = fake_plugins("fakegood", "fakedup")  # discovery order: fakegood first
    archs = manager.architectures()
    assert archs["tiny-arch"].plugin == "fakegood"  # though "fakedup" sorts first
    assert archs["dup-other"].plugin == "fakedup"
    dup = _info(manager, "fakedup")
    assert dup.status == "conflict" and dup.architectures == ["dup-other"]
    assert "'tiny-arch' is also provided by plugin 'fakegood', which takes precedence" in dup.error
    assert _info(manager, "fakegood").status == "ok"
    warnings = [r.getMessage() for r in caplog.records if r.name == "genzoo.plugins.manager"]
    assert len(warnings) == 1 and "fakedup" in warnings[0] and "\n" not in warnings[0]
    manager = fake_plugins("fakedup", "fakegood")  # the other discovery order
    assert manager.architectures()["tiny-arch"].plugin == "fakedup"
    assert _info(manager, "fakegood").status == "conflict"


def test_first_party_and_trusted_plugins_rank_first(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENZOO_TRUSTED_PLUGINS", "fakegood")
    manager = fake_plugins("fakedup", "fakegood")
    assert manager.architectures()["tiny-arch"].plugin == "fakegood"
    assert _info(manager, "fakegood").first_party and not _info(manager, "fakedup").first_party
    assert [p.name for p in manager.plugins()] == ["fakegood", "fakedup"]  # precedence order


def test_strict_mode_raises(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="fakebroken.*torchy.*GENZOO_STRICT_PLUGINS"):
        fake_plugins("fakegood", "fakebroken")
    manager = fake_plugins("fakeraises")
    with pytest.raises(PluginError, match="boom in architectures"):
        manager.architectures()
    manager = fake_plugins("fakegood", "fakedup")
    with pytest.raises(PluginError, match="fakedup.*'tiny-arch' is also provided"):
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
    assert {"fakegood", "fakebroken", "fakeraises", "fakedup", "fakebadtarget",
            "core"} <= set(found)
    assert found["fakebroken"].status == "error"
    assert found["fakedup"].distribution == "genzoo-fakedup"
    assert "dup-other" in plugins.architectures()


# ---- hostile plugins (tests/fake_plugins, installed one at a time by plugin_site) ----------
def test_keyboard_interrupt_still_interrupts(tmp_path, monkeypatch):
    (tmp_path / "fakeinterrupt.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("fakeinterrupt", "fakeinterrupt", "genzoo")
    with pytest.raises(KeyboardInterrupt):
        plugins.PluginManager([ep])
    sys.modules.pop("fakeinterrupt", None)


def test_garbage_from_every_hook_is_recorded(plugin_site):
    plugin_site("fakegarbage")
    manager = plugins.get_manager()
    assert "gan-dcgan" in manager.architectures() and "mnist" in manager.feature_nets()
    assert plugins.detect_arch({"model_type": "anything"}, ["config.json"]) is None
    from genzoo.api import plugin_infos  # builds the catalog, which asks for the cards
    error = {p.name: p for p in plugin_infos()}["fakegarbage"].error
    for part in ("hook genzoo_architectures returned int, expected a list",
                 "hook genzoo_model_cards returned dict, expected a list",
                 "hook genzoo_feature_nets raised RuntimeError: generator broke midway",
                 "hook genzoo_detect_arch returned list, expected an architecture name"):
        assert part in error
    assert "garbage-net" not in manager.feature_nets()  # nothing kept from a broken generator


def test_cards_hook_errors_show_in_plugins(fake_plugins, tmp_path, monkeypatch):
    """A card file that cannot be read is the plugin's error, seen by `plugin_infos()` (what
    `genzoo plugins` shows) without building the catalog first."""
    from genzoo.api import plugin_infos
    manager = fake_plugins("fakegood")
    monkeypatch.setattr(manager, "_cards", [("fakegood", tmp_path / "missing.yaml")])
    info = {p.name: p for p in plugin_infos()}["fakegood"]
    assert info.status == "error" and "missing.yaml: cannot read catalog" in info.error


def test_the_manager_knows_nothing_of_the_catalog(fake_plugins):
    """The manager hands raw card entries on; only the catalog validates them and records
    what it made of them against the plugin."""
    from genzoo.catalog.registry import build_registry
    manager = fake_plugins("fakegood")
    assert _info(manager, "fakegood").cards == []  # nothing validated yet
    build_registry(manager=manager)
    build_registry(manager=manager)  # a rebuilt catalog notes each card once
    assert _info(manager, "fakegood").cards == ["tiny-bundled"]


@pytest.mark.parametrize("name, status, problem", [
    ("fakeshadow", "conflict", "model card 'gan-mnist' is also defined by plugin 'gan'"),
    ("fakegarbage", "error", "hook genzoo_architectures returned int, expected a list"),
    ("fakeexit", "error", "failed to import fakeexit: SystemExit: 3"),
    ("fakeargv", "error", "failed to import fakeargv: SystemExit: 2"),
    ("fakedcgan", "conflict", "architecture 'gan-dcgan' is also provided by plugin 'gan'"),
])
def test_hostile_plugin_stops_nothing(plugin_site, tmp_path, name, status, problem):
    """Each hostile plugin, found before the first-party ones, leaves list, sample NAME and
    sample FOLDER working, keeps the first-party names where they were, and is named by
    `genzoo plugins` with its problem."""
    from click.testing import CliRunner

    from genzoo.cli import cli
    plugin_site(name)
    run = lambda *args: CliRunner().invoke(cli, list(args))  # noqa: E731
    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    gan = {d["name"]: d for d in json.loads(listed.stdout)}["gan-mnist"]
    assert gan["plugin"] == "gan" and gan["status"] == "ready"
    by_name = run("sample", "gan-mnist", "-n", "2", "-o", str(tmp_path / "a.png"))
    assert by_name.exit_code == 0, by_name.output
    folder = ROOT / "plugins" / "gan" / "genzoo_gan" / "weights" / "gan-mnist"
    by_folder = run("sample", str(folder), "-n", "2", "-o", str(tmp_path / "b.png"))
    assert by_folder.exit_code == 0, by_folder.output
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()
    infos = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    assert infos[name]["status"] == status and problem in infos[name]["error"]
    assert infos["gan"]["status"] == "ok" and infos["gan"]["architectures"] == ["gan-dcgan"]
    assert infos["gan"]["cards"] == ["gan-mnist"]


def test_debug_plugins_prints_the_traceback(plugin_site):
    from click.testing import CliRunner

    from genzoo.cli import cli
    plugin_site("fakeexit")
    plain = CliRunner().invoke(cli, ["plugins"])
    assert plain.exit_code == 0 and "Traceback" not in plain.output
    debug = CliRunner().invoke(cli, ["--debug", "plugins"])
    assert debug.exit_code == 0
    assert "--- plugin 'fakeexit' (error) ---" in debug.stderr
    assert "Traceback" in debug.stderr and "sys.exit(3)" in debug.stderr


def test_hostile_plugins_in_a_real_process(tmp_path):
    """All hostile plugins at once, first on sys.path, in a real `genzoo` process: the
    conflicts print one warning line each on stderr; strict mode makes them fatal."""
    site = tmp_path / "site"
    site.mkdir()
    for module in ("fakeshadow", "fakegarbage", "fakeexit", "fakeargv", "fakedcgan"):
        if (FAKE_SRC / module).is_dir():
            shutil.copytree(FAKE_SRC / module, site / module)
        else:
            shutil.copy(FAKE_SRC / f"{module}.py", site)
    write_dist_infos(site, {k: v for k, v in HOSTILE_DISTS.items() if k != "fakefeature"})
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("GENZOO_STRICT_PLUGINS", None)

    def genzoo(*args, **extra):
        return subprocess.run([sys.executable, "-m", "genzoo", *args], capture_output=True,
                              text=True, timeout=120, env={**env, **extra})
    listed = genzoo("list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("gan-mnist ") and line.endswith("ready")
               for line in listed.stdout.splitlines())
    warnings = [line for line in listed.stderr.splitlines() if line.startswith("genzoo: plugin")]
    assert len(warnings) == 2 and any("'fakeshadow'" in w for w in warnings) and \
        any("'fakedcgan'" in w for w in warnings)
    assert "fakeexit: goodbye" in listed.stderr  # a plugin's print goes to stderr
    infos = {p["name"]: p for p in json.loads(genzoo("plugins", "--json").stdout)}
    assert {n: infos[n]["status"] for n in ("fakeshadow", "fakegarbage", "fakeexit", "fakeargv",
                                            "fakedcgan", "gan")} == {
        "fakeshadow": "conflict", "fakegarbage": "error", "fakeexit": "error",
        "fakeargv": "error", "fakedcgan": "conflict", "gan": "ok"}
    strict = genzoo("list", GENZOO_STRICT_PLUGINS="1")
    assert strict.returncode == 1 and strict.stderr.splitlines()[-1].startswith("Error: plugin '")
    assert "Traceback" not in strict.stderr


@pytest.mark.parametrize("entry, message", [
    ({"name": "a b", "target": "pkg.mod:Cls"}, "a modality name may hold only"),
    ({"name": "rows", "target": "pkg.mod"}, "must look like 'package.module:ClassName'"),
    ({"name": "rows"}, "'target' must be a non-empty string"),
])
def test_a_bad_modality_entry_is_refused_in_one_line(entry, message):
    from genzoo.plugins.entries import modality_info
    with pytest.raises(ValueError, match=message):
        modality_info(entry, "p")
