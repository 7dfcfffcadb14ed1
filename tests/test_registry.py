"""The catalog: validation, merging, duplicates, wildcards, suggestions, caching."""
from __future__ import annotations

import os

import pytest

from conftest import ROOT, write_catalog
from genzoo import registry
from genzoo.errors import RegistryError, UnknownModelError
from genzoo.registry import card_from_dict, get_registry, load_catalog

SHA = "ab" * 32
FIRST_PARTY = ["diffusion-mnist", "gan-mnist", "gpt2", "mnist-features", "textlm-shakespeare",
               "vae-mnist"]


def card(**kw):
    base = {"name": "m1", "family": "vae", "arch": "vae-conv", "source": "/tmp/m1",
            "files": {"model.safetensors": SHA}}
    return {**base, **kw}


def test_packaged_catalog(fake_plugins):
    fake_plugins()
    assert registry.packaged_catalog_path() == ROOT / "registry.yaml"
    reg = get_registry()
    assert reg.names() == FIRST_PARTY
    gpt2 = reg.get("gpt2")
    assert gpt2.source.endswith("@607a30d783dfa663caf39e06633721c8d4cfcd7e")
    assert gpt2.files == {"config.json": None, "model.safetensors": None, "tokenizer.json": None}
    assert reg.get("vae-mnist").package == "genzoo-vae"  # default from the family
    assert reg.get("mnist-features").package == "genzoo"
    diffusion = reg.get("diffusion-mnist")
    assert set(diffusion.files) == {"config.json", "model.safetensors", "README.md"}
    assert all(len(d) == 64 for d in diffusion.files.values())


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


def test_duplicate_across_sources_names_both(tmp_path, monkeypatch, fake_plugins):
    fake_plugins()
    user = write_catalog(tmp_path / "mine.yaml", [card(name="vae-mnist")])
    monkeypatch.setenv("GENZOO_REGISTRY", str(user))
    with pytest.raises(RegistryError) as e:
        get_registry()
    assert str(ROOT / "registry.yaml") in str(e.value) and str(user) in str(e.value)


def test_user_catalogs_are_merged(tmp_path, monkeypatch, fake_plugins):
    fake_plugins("fakegood")
    a = write_catalog(tmp_path / "a.yaml", [card(name="from-a", source="weights/a")])
    b = write_catalog(tmp_path / "b.yaml", [card(name="from-b")])
    write_catalog(tmp_path / "config" / "genzoo" / "registry.yaml", [card(name="from-config")])
    monkeypatch.setenv("GENZOO_REGISTRY", os.pathsep.join([str(a), "", str(b)]))
    reg = get_registry()
    assert {"from-a", "from-b", "from-config", "tiny-bundled", "vae-mnist"} <= set(reg.names())
    assert reg.get("from-a").source == str(tmp_path / "weights" / "a")  # relative to the file
    assert reg.get("tiny-bundled").origin == "plugin 'fakegood'"
    monkeypatch.setenv("GENZOO_REGISTRY", str(tmp_path / "missing.yaml"))
    with pytest.raises(RegistryError, match="missing.yaml, which is not a file"):
        get_registry()


def test_invalid_plugin_card_is_recorded_not_fatal(fake_plugins, monkeypatch):
    manager = fake_plugins("fakegood")
    monkeypatch.setattr(manager, "model_cards", lambda: [("fakegood", {"name": "bad"})])
    reg = get_registry()
    assert "bad" not in reg and "vae-mnist" in reg
    info = {p.name: p for p in manager.plugins()}["fakegood"]
    assert info.status == "error" and "'family' is required" in info.error


def test_list_wildcards_and_family(fake_plugins):
    fake_plugins()
    reg = get_registry()
    names = lambda cards: [c.name for c in cards]  # noqa: E731
    assert names(reg.list("*-mnist")) == ["diffusion-mnist", "gan-mnist", "vae-mnist"]
    assert names(reg.list("mnist")) == ["diffusion-mnist", "gan-mnist", "mnist-features",
                                        "vae-mnist"]  # a plain word: substring
    assert names(reg.list("GPT?")) == ["gpt2"]
    assert names(reg.list(family="textlm")) == ["gpt2", "textlm-shakespeare"]
    assert names(reg.list("*mnist*", family="vae")) == ["vae-mnist"]
    assert reg.list("nothing-like-this") == []


def test_unknown_name_suggests_close_ones(fake_plugins):
    fake_plugins()
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
    text = (ROOT / "registry.yaml").read_text()
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
