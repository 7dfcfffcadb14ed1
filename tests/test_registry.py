"""The catalog: validation, merging, duplicates, wildcards, suggestions, caching."""
from __future__ import annotations

import os

import pytest

from conftest import ROOT, write_catalog
from genzoo.catalog import registry as registry
from genzoo.errors import RegistryError, UnknownModelError
from genzoo.catalog.registry import card_from_dict, get_registry, load_catalog

SHA = "ab" * 32
FIRST_PARTY = ["diffusion-mnist", "gan-mnist", "gpt2", "textlm-shakespeare", "vae-mnist"]
PLUGIN_CARDS = {"diffusion-mnist": "diffusion", "gan-mnist": "gan", "vae-mnist": "vae",
                "textlm-shakespeare": "textlm"}


def card(**kw):
    base = {"name": "m1", "family": "vae", "arch": "vae-conv", "source": "/tmp/m1",
            "files": {"model.safetensors": SHA}}
    return {**base, **kw}


def test_packaged_catalog_keeps_only_cards_no_plugin_owns(fake_plugins):
    fake_plugins()  # no plugins at all: genzoo's own registry.yaml alone
    assert registry.packaged_catalog_path() == ROOT / "registry.yaml"
    reg = get_registry()
    assert reg.names() == ["gpt2"]
    gpt2 = reg.get("gpt2")
    assert gpt2.source.endswith("@607a30d783dfa663caf39e06633721c8d4cfcd7e")
    assert gpt2.files == {"config.json": None, "model.safetensors": None, "tokenizer.json": None}
    assert gpt2.package == "genzoo-textlm" and gpt2.plugin is None
    assert gpt2.catalog == str(ROOT / "registry.yaml")


def test_first_party_plugins_ship_their_own_cards():
    """The installed first-party plugins return the card files beside their weights, as a
    third party would; each card names its plugin and file (``genzoo info --json`` shows it)."""
    from genzoo.api import model_info
    reg = get_registry()
    assert reg.names() == FIRST_PARTY  # mnist-features is a feature net's weights, not a model
    for name, plugin in PLUGIN_CARDS.items():
        card = reg.get(name)
        catalog = ROOT / "plugins" / plugin / f"genzoo_{plugin}" / "weights" / "cards.yaml"
        assert (card.plugin, card.catalog) == (plugin, str(catalog))
        assert card.origin == f"plugin {plugin!r} ({catalog})"
        assert card.package == f"genzoo-{plugin}"
        info = model_info(name)
        assert info["plugin"] == plugin and f"plugin {plugin!r}" in info["origin"]
    diffusion = reg.get("diffusion-mnist")
    assert set(diffusion.files) == {"config.json", "model.safetensors", "README.md"}
    assert all(len(d) == 64 for d in diffusion.files.values())
    assert reg.get("vae-mnist").package == "genzoo-vae"  # default from the family


def test_card_fields_and_defaults():
    c = card_from_dict(card(tags=["a", "b"], params=10, sampling={"steps": 20}), "x.yaml")
    assert c.tags == ("a", "b") and c.params == 10 and c.sampling == {"steps": 20}
    assert c.package == "genzoo-vae" and c.origin == "x.yaml"
    assert c.to_dict()["files"] == {"model.safetensors": SHA}


@pytest.mark.parametrize("bad, message", [
    ({"family": None}, "'family' is required"),
    ({"name": "a/b"}, "name may hold only"),
    ({"colour": "red"}, "unknown field(s) colour"),
    ({"files": {"model.safetensors": "abc"}}, "sha256 must be 64 hex"),
    ({"files": {"model.safetensors": None}}, "digests may be left out only for hf://"),
    ({"source": "hf://org/repo@main", "files": {"config.json": None}}, "pinned to a full commit"),
    ({"files": {"../x.safetensors": SHA}}, "must be a relative path"),
    ({"files": {"/etc/passwd": SHA}}, "must be a relative path"),
    ({"files": {"pytorch_model.bin": SHA}}, "pickle weights are never loaded"),
    ({"source": "hf://not a repo"}, "expected hf://org/repo"),
    ({"source": "pkg://genzoo/../etc"}, "escapes"),
    ({"source": "s3://bucket/x"}, "unknown scheme"),
    ({"params": -1}, "params must be a non-negative integer"),
    ({"tags": "mnist"}, "tags must be a list"),
    ({"metrics": [1]}, "metrics must be a mapping"),
])
def test_validation_errors_name_file_and_entry(tmp_path, bad, message):
    path = write_catalog(tmp_path / "cat.yaml", [card(name="ok"), card(**bad)])
    with pytest.raises(RegistryError) as e:
        load_catalog(path)
    text = str(e.value)
    assert message in text
    assert f"{path} (entry 2)" in text and "\n" not in text


def test_pinned_hf_source_may_omit_digests():
    c = card_from_dict(card(source="hf://org/repo@" + "a" * 40, files={"config.json": None}), "x")
    assert c.files == {"config.json": None}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nmodels:\n  - name: [unclosed\n")
    with pytest.raises(RegistryError, match=rf"{path}: line \d+: invalid YAML"):
        load_catalog(path)
    path.write_text("- just a list\n")
    with pytest.raises(RegistryError, match="expected a mapping with a 'models:' list"):
        load_catalog(path)


def test_duplicate_in_one_file(tmp_path):
    path = write_catalog(tmp_path / "cat.yaml", [card(), card()])
    with pytest.raises(RegistryError, match="'m1' is defined twice in this file"):
        load_catalog(path)


def test_user_catalog_duplicate_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    user = write_catalog(tmp_path / "mine.yaml", [card(name="vae-mnist"), card(name="mine")])
    monkeypatch.setenv("GENZOO_REGISTRY", str(user))
    reg = get_registry()
    assert reg.get("vae-mnist").plugin == "vae" and reg.get("mine").catalog == str(user)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "genzoo.catalog.registry"]
    assert str(user) in warning and "plugin 'vae'" in warning and "\n" not in warning


def test_plugin_card_conflicts_follow_precedence(fake_plugins, tmp_path, monkeypatch):
    """Two plugins' cards with one name: the first registered keeps it, the other is marked
    `conflict`; a card file broken inside is that plugin's error and hides nothing else."""
    manager = fake_plugins("fakegood", "fakedup", "fakebadtarget")
    same = write_catalog(tmp_path / "same.yaml", [card(name="tiny-bundled"), card(name="own")])
    twice = write_catalog(tmp_path / "twice.yaml", [card(name="t"), card(name="t")])
    good = manager.model_cards()  # fakegood's dict card, as its hook returns it
    monkeypatch.setattr(manager, "_cards", good + [("fakedup", same), ("fakebadtarget", twice)])
    reg = get_registry()
    assert reg.get("tiny-bundled").plugin == "fakegood" and reg.get("own").plugin == "fakedup"
    assert "t" not in reg and "gpt2" in reg
    infos = {p.name: p for p in manager.plugins()}
    assert infos["fakedup"].status == "conflict" and infos["fakedup"].cards == ["own"]
    assert "model card 'tiny-bundled' is also defined by plugin 'fakegood'" in \
        infos["fakedup"].error
    assert infos["fakebadtarget"].status == "error"
    assert "'t' is defined twice in this file" in infos["fakebadtarget"].error


def test_user_catalogs_are_merged(tmp_path, monkeypatch, fake_plugins):
    fake_plugins("fakegood")
    a = write_catalog(tmp_path / "a.yaml", [card(name="from-a", source="weights/a")])
    b = write_catalog(tmp_path / "b.yaml", [card(name="from-b")])
    write_catalog(tmp_path / "config" / "genzoo" / "registry.yaml", [card(name="from-config")])
    monkeypatch.setenv("GENZOO_REGISTRY", os.pathsep.join([str(a), "", str(b)]))
    reg = get_registry()
    assert {"from-a", "from-b", "from-config", "tiny-bundled", "gpt2"} <= set(reg.names())
    assert reg.get("from-a").source == str(tmp_path / "weights" / "a")  # relative to the file
    assert reg.get("tiny-bundled").origin == "plugin 'fakegood'"
    assert (reg.get("tiny-bundled").plugin, reg.get("tiny-bundled").catalog) == ("fakegood", None)
    assert (reg.get("from-a").plugin, reg.get("from-a").catalog) == (None, str(a))
    monkeypatch.setenv("GENZOO_REGISTRY", str(tmp_path / "missing.yaml"))
    with pytest.raises(RegistryError, match="missing.yaml, which is not a file"):
        get_registry()


def test_invalid_plugin_card_is_recorded_not_fatal(fake_plugins, monkeypatch):
    manager = fake_plugins("fakegood")
    monkeypatch.setattr(manager, "model_cards", lambda: [("fakegood", {"name": "bad"})])
    reg = get_registry()
    assert "bad" not in reg and "gpt2" in reg
    info = {p.name: p for p in manager.plugins()}["fakegood"]
    assert info.status == "error" and "'family' is required" in info.error


def test_list_wildcards_and_family():
    reg = get_registry()
    names = lambda cards: [c.name for c in cards]  # noqa: E731
    assert names(reg.list("*-mnist")) == ["diffusion-mnist", "gan-mnist", "vae-mnist"]
    assert names(reg.list("mnist")) == ["diffusion-mnist", "gan-mnist",
                                        "vae-mnist"]  # a plain word: substring
    assert names(reg.list("GPT?")) == ["gpt2"]
    assert names(reg.list(family="textlm")) == ["gpt2", "textlm-shakespeare"]
    assert names(reg.list("*mnist*", family="vae")) == ["vae-mnist"]
    assert reg.list("nothing-like-this") == []


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownModelError) as e:
        get_registry().get("difusion-mnist")
    assert "did you mean: diffusion-mnist" in str(e.value)
    with pytest.raises(UnknownModelError, match="`genzoo list` shows all models"):
        get_registry().get("zzzz")


def test_registry_is_cached_per_process(tmp_path, monkeypatch, fake_plugins):
    fake_plugins()
    first = get_registry()
    assert get_registry() is first
    monkeypatch.setenv("GENZOO_REGISTRY", str(write_catalog(tmp_path / "c.yaml", [card()])))
    assert "m1" in get_registry()  # the environment changed: rebuilt


def test_update_card_rewrites_and_keeps_header(tmp_path):
    path = tmp_path / "registry.yaml"
    text = (ROOT / "plugins" / "vae" / "genzoo_vae" / "weights" / "cards.yaml").read_text()
    path.write_text("# header line\n# second\n" + text[text.index("version: 1"):])
    registry.update_card(path, "vae-mnist", files={"model.safetensors": SHA}, params=1234,
                         size=5678, metrics={"fid": 3.2})
    assert path.read_text().startswith("# header line\n# second\n")
    c = {c.name: c for c in load_catalog(path)}["vae-mnist"]
    assert (c.files, c.params, c.size, c.metrics) == ({"model.safetensors": SHA}, 1234, 5678,
                                                      {"fid": 3.2})
    before = path.read_text()
    with pytest.raises(RegistryError):
        registry.update_card(path, "vae-mnist", files={"model.safetensors": "nope"})
    assert path.read_text() == before  # validated before writing
    with pytest.raises(UnknownModelError):
        registry.update_card(path, "nope", params=1)


def test_recipes_bundle_into_the_cards_own_catalog(fake_plugins, tmp_path, monkeypatch):
    """recipes/bundle.py writes digests into the file the card came from (a plugin's
    weights/cards.yaml), not into genzoo's registry.yaml."""
    import sys

    import genzoo
    from conftest import write_tiny_model
    fake_plugins("fakegood")
    write_tiny_model(tmp_path / "trained")
    cards = write_catalog(tmp_path / "plugin" / "cards.yaml",
                          [card(name="mine", family="tiny", arch="tiny-arch", source="weights",
                                files={}, tags=["unconditional"], metrics={"fd": 99.0})])
    monkeypatch.setenv("GENZOO_REGISTRY", str(cards))
    monkeypatch.syspath_prepend(str(ROOT / "recipes"))
    packaged_before = (ROOT / "registry.yaml").read_text()
    from bundle import bundle_model
    files = bundle_model(genzoo.load(tmp_path / "trained", device="cpu"), "mine",
                         tmp_path / "plugin" / "weights", fp16=False)
    [written] = load_catalog(cards)
    assert written.files == files and set(files) >= {"config.json", "model.safetensors"}
    assert written.params == 5 and written.size > 0
    # a new network: no figures of the old one; tags and capabilities are the new one's
    assert written.metrics == {} and list(written.capabilities) == []
    assert list(written.tags) == ["unconditional"]
    assert (ROOT / "registry.yaml").read_text() == packaged_before
    sys.modules.pop("bundle", None)


def test_info_names_the_plugin_that_shipped_the_card(plugin_site):
    """A card from one plugin whose architecture another plugin provides: `info` names the
    card's plugin as its origin and the architecture's separately."""
    from genzoo.api import model_info
    plugin_site("fakeshadow")
    info = model_info("shadow-own")
    assert (info["plugin"], info["arch_plugin"]) == ("fakeshadow", "gan")
    assert info["origin"].startswith("plugin 'fakeshadow' (") and info["catalog"].endswith(
        "fakeshadow/cards.yaml")
