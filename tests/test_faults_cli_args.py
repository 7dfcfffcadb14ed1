"""Fault injection, command-line arguments and model folders: hostile names, paths, option
values, config.json contents and data arrays each end in one line (exit 1; 2 for click's usage
errors), never a traceback, and never a walk of the whole file system."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import genzoo
from genzoo.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_line(result, needle: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines


def test_a_ten_thousand_character_name():
    result = run("sample", "x" * 10_000)
    one_line(result, "(10000 characters) is not a model name")
    assert len(result.output) < 300


def test_the_root_folder_is_not_walked(monkeypatch):
    import genzoo.api as api
    monkeypatch.setattr(api, "_LISTING_MAX", 50)
    seen = []
    real = api.os.scandir

    def counting(path):
        seen.append(path)
        return real(path)
    monkeypatch.setattr(api.os, "scandir", counting)
    one_line(run("sample", "/"), "not a model genzoo can load")
    assert len(seen) < 60  # the top folder and a bounded number of its subfolders


def test_non_utf8_prompt_bytes():
    one_line(run("sample", "textlm-shakespeare", "--prompt", "ROMEO\udcff", "--max-new-tokens",
                 "2"), "must be a string of valid UTF-8 text")


@pytest.mark.parametrize("args,needle,code", [
    (["--temperature", "nan"], "must be a finite number", 1),
    (["--temperature", "-1"], ">= 0", 1),
    (["--batch-size", "0"], "Invalid value for '--batch-size'", 2),
    (["--batch-size", "-1"], "Invalid value for '--batch-size'", 2),
    (["-n", "0"], "Invalid value for '-n'", 2),
])
def test_bad_numbers(args, needle, code, tmp_path):
    result = run("sample", "vae-mnist", "-o", str(tmp_path / "x.png"), *args)
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vae") / "model"
    genzoo.load("vae-mnist", device="cpu").save_pretrained(folder)
    return folder


@pytest.mark.parametrize("key,value,needle", [
    ("latent_dim", "abc", "invalid literal"),
    ("latent_dim", -4, "negative dimension"),
    ("hidden", [1, 2], "does not describe a valid vae-conv model"),
])
def test_config_with_wrong_value_types(vae_folder, tmp_path, key, value, needle):
    import shutil
    folder = tmp_path / "edited"
    shutil.copytree(vae_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    result = run("sample", str(folder), "-o", str(tmp_path / "x.png"))
    one_line(result, needle)
    assert f"{folder / 'config.json'}: does not describe a valid vae-conv model" in result.output


@pytest.mark.parametrize("array", [np.array([["a", "b"]]), np.array([[1, 2]], dtype=object)])
def test_npz_with_string_or_object_arrays(array, tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=array)
    result = run("finetune", "vae-mnist", "--data", str(path), "--steps", "1", "-o",
                 str(tmp_path / "run"))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1
