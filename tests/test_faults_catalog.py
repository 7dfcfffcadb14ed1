"""Fault injection, catalogs: a hostile or broken user catalog is one line naming the file,
never a traceback, an exhausted memory or a silently misread file."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from genzoo.catalog import registry as registry
from genzoo.catalog.cards import MAX_CATALOG_BYTES, load_catalog
from genzoo.cli import cli
from genzoo.errors import RegistryError

CARD = ("- name: mine\n  family: test\n  arch: tiny-arch\n  source: ./w\n"
        "  files: {model.safetensors: " + "a" * 64 + "}\n")


def _catalog(tmp_path, text: str | bytes):
    path = tmp_path / "catalog.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("text,needle", [
    (b"version: 1\nmodels:\n- name: caf\xe9\n", "not UTF-8 text (byte"),
    ("version: 99\nmodels:\n" + CARD, "catalog version 99 is not one this genzoo reads"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
     "models: [*h]\n", "YAML aliases (*name) are not allowed"),
    (b"version: 1\nmodels: []\n" + b"#" * (MAX_CATALOG_BYTES + 1), "too large for a catalog"),
])
def test_bad_catalog_files_are_one_line(tmp_path, monkeypatch, text, needle):
    path = _catalog(tmp_path, text)
    with pytest.raises(RegistryError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        load_catalog(path)
    monkeypatch.setenv("GENZOO_REGISTRY", str(path))
    registry.reset()
    for args in (["list", "--json"], ["info", "gan-mnist"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and needle in lines[0], lines


def test_version_1_and_unversioned_catalogs_still_load(tmp_path):
    (tmp_path / "w").mkdir()
    assert [c.name for c in load_catalog(_catalog(tmp_path, "version: 1\nmodels:\n" + CARD))] \
        == ["mine"]
    assert [c.name for c in load_catalog(_catalog(tmp_path, "models:\n" + CARD))] == ["mine"]
