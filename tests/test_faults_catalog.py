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


def _one_line_error(result) -> str:
    """The single ``Error: ...`` line a failed command printed (no traceback, exit 1)."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["a" * 300, "d/" + "a" * 300], ids=["long", "long-path"])
@pytest.mark.parametrize("command", [["info"], ["download"], ["sample", "-n", "1"]])
def test_a_name_no_file_system_takes_is_one_line(command, name, tmp_path):
    """A 300-character name is no card and too long for a file name (OSError: File name too
    long when asked whether it is a folder): one line, cut short, with no traceback."""
    args = [*command[:1], name, *command[1:], *(["-o", str(tmp_path / "x.png")]
                                               if command[0] == "sample" else [])]
    line = _one_line_error(CliRunner().invoke(cli, args))
    assert "... (30" in line and len(line) < 300


@pytest.mark.parametrize("command", [["info"], ["download"], ["sample", "-n", "1"]])
def test_a_model_hidden_by_the_plugin_filter_names_the_filter(command, monkeypatch, tmp_path):
    """GENZOO_PLUGINS=diffusion leaves the gan plugin, and with it gan-mnist's card, out: the
    error names the filter and the way back instead of "not a model name"."""
    monkeypatch.setenv("GENZOO_PLUGINS", "diffusion")
    args = [*command[:1], "gan-mnist", *command[1:],
            *(["-o", str(tmp_path / "x.png")] if command[0] == "sample" else [])]
    line = _one_line_error(CliRunner().invoke(cli, args))
    assert line == ("Error: gan-mnist's plugin is not loaded: GENZOO_PLUGINS=diffusion leaves "
                    "it out; unset GENZOO_PLUGINS or add gan to it")


def test_the_plugin_filter_is_named_for_a_hub_card_and_an_unknown_name(monkeypatch, tmp_path):
    """A card genzoo ships (gpt2) whose architecture's plugin is left out, and a name no left-out
    plugin seems to own: both name the filter."""
    monkeypatch.setenv("GENZOO_PLUGINS", "diffusion")
    line = _one_line_error(CliRunner().invoke(cli, ["sample", "gpt2", "-o",
                                                    str(tmp_path / "x.txt")]))
    assert "architecture textlm-gpt's plugin is not loaded: GENZOO_PLUGINS=diffusion" in line
    listed = CliRunner().invoke(cli, ["list", "gpt2"])
    assert listed.stdout.rstrip().endswith("plugin textlm left out by GENZOO_PLUGINS=diffusion")
    line = _one_line_error(CliRunner().invoke(cli, ["info", "mystery"]))
    assert line.startswith("Error: unknown model 'mystery'")
    left_out = line.partition("(GENZOO_PLUGINS=diffusion leaves out plugin(s) ")[2]
    assert left_out.endswith(")") and {"gan", "textlm", "vae"} <= set(left_out[:-1].split(", "))
