"""Library notes go through the ``genzoo`` logger: notes (INFO) are silent for a library user
who configured no logging (warnings still reach stderr through logging's last resort), the CLI
shows notes on stderr, -q hides them, and none reaches stdout."""
from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from genzoo.cli import cli


@pytest.fixture
def rgb_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 80 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_library_notes_are_silent_without_logging_config(rgb_folder):
    code = ("from genzoo.data import load_image_dataset; "
            f"print(len(load_image_dataset({str(rgb_folder)!r}, (1, 4, 4))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3" and out.stderr == ""


def test_library_notes_reach_a_configured_logger(rgb_folder, caplog):
    from genzoo.data import load_image_dataset
    with caplog.at_level(logging.INFO, logger="genzoo"):
        load_image_dataset(str(rgb_folder), (1, 4, 4))
    assert any("converted" in r.getMessage() and r.name == "genzoo.data" for r in caplog.records)


def test_cli_shows_notes_on_stderr_and_quiet_hides_them(rgb_folder, tmp_path):
    runner = CliRunner()
    loud = runner.invoke(cli, ["finetune", "vae-mnist", "--data", str(rgb_folder), "--steps", "1",
                               "-o", str(tmp_path / "a"), "--json"])
    assert loud.exit_code == 0, loud.output
    assert "converted" in loud.stderr and "converted" not in loud.stdout
    quiet = runner.invoke(cli, ["-q", "finetune", "vae-mnist", "--data", str(rgb_folder),
                                "--steps", "1", "-o", str(tmp_path / "b"), "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert "converted" not in quiet.stderr
