"""A third-party family reports its own figure through the metrics extension point
(``GenerativeModel.evaluate_metrics``), and ``genzoo eval --write-card`` writes it into the
card file the plugin ships beside its weights — with no change to genzoo's core.

The plugin (tests/flow_plugin) is installed for real: a site folder with a ``.dist-info``."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from genzoo.plugins import manager as plugins
from genzoo.catalog import registry as registry
from genzoo.cli import cli

from _site import forget, install_package

SRC = Path(__file__).resolve().parent / "flow_plugin" / "genzoo_testflow"


@pytest.fixture
def flow_plugin(tmp_path, monkeypatch) -> Path:
    """genzoo-testflow installed, with a bundled model ``flow-test`` and its card file."""
    site = tmp_path / "site"
    weights = install_package(site, SRC, "genzoo-testflow", "testflow") / "weights"
    monkeypatch.syspath_prepend(str(site))
    from genzoo_testflow.model import PixelFlow
    PixelFlow({}).save_pretrained(weights / "flow-test")
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((weights / "flow-test").iterdir())}
    cards = weights / "cards.yaml"
    cards.write_text(yaml.safe_dump({"version": 1, "models": [
        {"name": "flow-test", "family": "testflow", "arch": "testflow-pixel",
         "summary": "per-pixel logistic flow", "source": "./flow-test", "files": files}]}))
    plugins.reset()
    registry.reset()
    yield cards
    forget("genzoo_testflow")


def test_family_metric_reaches_eval_json_and_the_plugins_card(flow_plugin):
    result = CliRunner().invoke(cli, ["eval", "flow-test", "--json", "--write-card"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 20  # the family's eval_defaults
    assert report["nll_bits_per_dim"] > 0 and "fd" in report
    card = yaml.safe_load(flow_plugin.read_text())["models"][0]
    assert card["metrics"]["nll_bits_per_dim"] == pytest.approx(report["nll_bits_per_dim"],
                                                                rel=1e-4)
    assert card["metrics"]["fd"] == pytest.approx(report["fd"], rel=1e-4)
    assert "class_histogram" not in card["metrics"]  # bookkeeping stays out of cards
    asked = CliRunner().invoke(cli, ["eval", "flow-test", "-n", "8", "--json"])
    assert asked.exit_code == 0, asked.output  # -n overrides the family's default n
    assert json.loads(asked.stdout)["n"] == 8


def test_family_options_are_cli_flags_and_checked(flow_plugin, tmp_path):
    out = tmp_path / "x.npz"
    ok = CliRunner().invoke(cli, ["sample", "flow-test", "-n", "2", "--scale", "0.5", "-o",
                                  str(out)])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(cli, ["sample", "flow-test", "-n", "2", "--scale", "9"])
    assert bad.exit_code == 1
    assert bad.output.strip() == ("Error: option 'scale' must be between 0 and 4; got '9'")
    info = CliRunner().invoke(cli, ["info", "flow-test", "--json"])
    options = {o["name"]: o for o in json.loads(info.stdout)["options"]}
    assert options["scale"]["max"] == 4.0 and options["scale"]["type"] == "float"
