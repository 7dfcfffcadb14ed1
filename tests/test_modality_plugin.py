"""docs/plugins.md's "Adding a modality" example is real: its three files, taken from the guide
as written, are installed as a plugin (a site folder with a ``.dist-info`` entry point), and a
model of the ``table`` modality they add writes CSV through ``genzoo sample -o`` — with no
change to genzoo's core. A modality plugin that is broken is recorded against itself and
stops nothing else."""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from genzoo.catalog import registry
from genzoo.cli import cli
from genzoo.plugins import manager as plugins

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
PACKAGES = ("genzoo_table", "genzoo_badmod")


def guide_files() -> dict[str, str]:
    """The guide's Python blocks that open with a ``# genzoo_table/FILE.py`` line, by path."""
    section = GUIDE.read_text(encoding="utf-8").split("## Adding a modality", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (genzoo_table/\w+\.py)\n(.*?)```", section, flags=re.S)
    return {path: code for path, code in blocks}


def install(site: Path, package: str, files: dict[str, str]) -> None:
    """``files`` (path -> source) as the installed distribution of ``package``."""
    for path, code in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(code)
    dist = package.replace("_", "-")
    info = site / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genzoo]\n{package.split('_', 1)[1]} = {package}\n")


BROKEN = {
    "genzoo_badmod/__init__.py": (
        "import genzoo\n\n\n"
        "class NotAModality:\n    name = 'plain'\n\n\n"
        "@genzoo.hookimpl\ndef genzoo_modalities():\n"
        "    return [{'name': 'plain', 'target': 'genzoo_badmod:NotAModality'},\n"
        "            {'name': 'boom', 'target': 'genzoo_badmod.boom:BoomModality'}]\n\n\n"
        "@genzoo.hookimpl\ndef genzoo_architectures():\n"
        "    return [{'name': 'plain-rows', 'family': 'badmod',\n"
        "             'target': 'genzoo_badmod.model:PlainRows'}]\n"),
    "genzoo_badmod/boom.py": "raise RuntimeError('the boom module cannot load')\n",
    "genzoo_badmod/model.py": (
        "from genzoo_table.model import GaussRows\n\n\n"
        "class PlainRows(GaussRows):\n    arch = 'plain-rows'\n    family = 'badmod'\n"
        "    modality = 'plain'\n"),
}


@pytest.fixture
def table_plugin(tmp_path, monkeypatch) -> Iterator[Path]:
    """genzoo-table installed from the guide's code; yields a saved ``table-gauss`` model."""
    site = tmp_path / "site"
    files = guide_files()
    assert sorted(files) == ["genzoo_table/__init__.py", "genzoo_table/modality.py",
                             "genzoo_table/model.py"], "the guide's example changed"
    install(site, "genzoo_table", files)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)
    plugins.reset()
    registry.reset()
    from genzoo_table.model import GaussRows
    model = GaussRows({})
    with __import__("torch").no_grad():
        model.mean.copy_(__import__("torch").tensor([170.0, 70.0]))
    model.save_pretrained(tmp_path / "rows-model")
    yield tmp_path / "rows-model"
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[name]
    plugins.reset()
    registry.reset()


def run(*args: str):
    """``genzoo ARGS`` in-process."""
    return CliRunner().invoke(cli, list(args))


def test_sample_writes_the_rows_as_csv(table_plugin, tmp_path):
    import genzoo
    out = tmp_path / "rows.csv"
    result = run("sample", str(table_plugin), "-n", "5", "-o", str(out))
    assert result.exit_code == 0, result.output
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    want = genzoo.load(str(table_plugin)).sample(5, seed=0).data
    assert isinstance(want, list) and len(rows) == 5 and list(rows[0]) == ["height", "weight"]
    assert [{k: float(v) for k, v in r.items()} for r in rows] == want
    assert 150 < float(rows[0]["height"]) < 190  # the saved mean, so the weights came through


def test_a_folder_gets_one_csv_per_row_and_a_tensor_becomes_rows(table_plugin, tmp_path):
    result = run("sample", str(table_plugin), "-n", "3", "-o", str(tmp_path / "rows") + "/")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "rows").iterdir())
    assert [f.suffix for f in files] == [".csv"] * 3
    assert all(len(f.read_text().splitlines()) == 2 for f in files)  # header + its row
    import torch
    from genzoo.samples import modality
    rows = modality("table").check_batch(torch.tensor([[1.0, 2.0]]), "m", 0)
    assert rows == [{"c0": 1.0, "c1": 2.0}]
    default = run("sample", str(table_plugin))  # the modality's default n and output
    assert default.exit_code == 0, default.output
    written = tmp_path / "rows-model.csv"  # named after the model, the modality's suffix
    assert len(written.read_text().splitlines()) == 1 + 10


def test_an_unknown_suffix_lists_the_modality_writers(table_plugin, tmp_path):
    result = run("sample", str(table_plugin), "-n", "2", "-o", str(tmp_path / "rows.xlsx"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and ".csv" in lines[0], lines
    assert not (tmp_path / "rows.xlsx").exists()


def test_genzoo_plugins_lists_the_modality(table_plugin):
    found = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    assert found["table"]["modalities"] == ["table"] and found["table"]["status"] == "ok"
    assert found["core"]["modalities"] == ["image", "text", "audio"]
    table = run("plugins").output.splitlines()
    assert "MODALITIES" in table[0]
    assert re.search(r"^table .* table\s*$", "\n".join(table), flags=re.M), table


def test_a_broken_modality_is_recorded_against_its_plugin(table_plugin, tmp_path):
    install(tmp_path / "site", "genzoo_badmod", BROKEN)
    plugins.reset()
    registry.reset()
    found = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    bad = found["badmod"]
    assert bad["status"] == "error", bad
    assert "genzoo_badmod:NotAModality is not a genzoo.samples.Modality subclass" in bad["error"]
    assert "cannot import modality 'boom'" in bad["error"]
    assert "the boom module cannot load" in bad["error"]
    assert found["table"]["status"] == "ok" and found["core"]["status"] == "ok"
    assert "badmod" in run("plugins").output  # the table shows it too
    ok = run("sample", str(table_plugin), "-n", "2", "-o", str(tmp_path / "still.csv"))
    assert ok.exit_code == 0, ok.output  # every other model still samples
    # a model of the broken modality (its own save would need the modality: edit a copy)
    config = json.loads((table_plugin / "config.json").read_text())
    config["genzoo"].update(arch="plain-rows", family="badmod")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    (tmp_path / "plain" / "model.safetensors").write_bytes(
        (table_plugin / "model.safetensors").read_bytes())
    refused = run("sample", str(tmp_path / "plain"), "-n", "2", "-o", str(tmp_path / "p.csv"))
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [refused.output.strip()]
    assert "not a genzoo.samples.Modality subclass" in refused.output


def test_strict_plugins_make_a_broken_modality_fatal(table_plugin, tmp_path, monkeypatch):
    install(tmp_path / "site", "genzoo_badmod", BROKEN)
    monkeypatch.setenv("GENZOO_STRICT_PLUGINS", "1")
    plugins.reset()
    registry.reset()
    result = run("plugins")
    assert result.exit_code == 1 and "GENZOO_STRICT_PLUGINS" in result.output, result.output
