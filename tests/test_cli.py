"""The command line, in process (click's CliRunner) and as a real subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import write_catalog, write_tiny_model
from genzoo import __version__
from genzoo.cli import cli

FIRST_PARTY = {"diffusion-mnist", "gan-mnist", "gpt2", "textlm-shakespeare", "vae-mnist"}


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


@pytest.fixture
def with_broken(fake_plugins):
    return fake_plugins("fakegood", "fakebroken", "fakeraises")


def test_list_table_and_json(with_broken):
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "PARAMS", "SIZE", "SOURCE", "STATUS"]
    # Only fake plugins: the first-party cards came with their plugins; gpt2 is genzoo's own.
    assert {line.split()[0] for line in lines[1:]} == {"gpt2", "tiny-bundled"}
    assert any(l.startswith("gpt2 ") and "pip install genzoo-textlm" in l for l in lines)
    assert any(l.startswith("gpt2 ") and "124.4M" in l for l in lines)
    assert any(l.startswith("tiny-bundled") and l.endswith("ready") for l in lines)
    data = json.loads(run("list", "--json").stdout)
    by_name = {d["name"]: d for d in data}
    assert by_name["gpt2"]["status"].startswith("plugin missing: pip install genzoo-textlm")
    assert by_name["tiny-bundled"]["plugin_installed"] is True
    assert by_name["gpt2"]["install"] == "pip install genzoo-textlm"


def test_list_filters(with_broken):
    names = lambda *a: [d["name"] for d in json.loads(run("list", "--json", *a).stdout)]  # noqa
    assert names("*-bundled") == ["tiny-bundled"]
    assert names("--family", "textlm") == ["gpt2"]
    result = run("list", "nomatch")
    assert result.exit_code == 0 and "no models match 'nomatch'" in result.stderr


def test_plugins_shows_broken_ones(with_broken):
    result = run("plugins")
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "genzoo-fakegood" in rows["fakegood"] and "tiny-arch" in rows["fakegood"]
    assert "error" in rows["fakebroken"] and "No module named 'torchy'" in rows["fakebroken"]
    assert "boom in architectures" in rows["fakeraises"]
    data = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    assert data["fakegood"]["status"] == "ok" and data["fakebroken"]["status"] == "error"


def test_info(with_broken):
    result = run("info", "gpt2")
    assert result.exit_code == 0
    assert "source:    hf://openai-community/gpt2@607a30d" in result.stdout
    assert "model.safetensors: (no digest)" in result.stdout
    data = json.loads(run("info", "tiny-bundled", "--json").stdout)
    assert data["status"] == "ready" and set(data["files"]) == {"config.json", "model.safetensors"}


def test_unknown_name_is_one_line_exit_1(with_broken):
    result = run("info", "tiny-bundeld")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: unknown model 'tiny-bundeld'; did you mean: tiny-bundled? "
        "(`genzoo list` shows all models)"]
    debug = run("--debug", "info", "tiny-bundeld")
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert "UnknownModelError" in debug.stderr


def test_usage_errors_exit_2(with_broken):
    assert run("info").exit_code == 2
    assert run("list", "--bogus").exit_code == 2
    assert run("nonsense").exit_code == 2


def test_version_and_help():
    assert run("--version").stdout.strip() == f"genzoo, version {__version__}"

    def walk(group, path):
        for name, cmd in group.commands.items():
            yield [*path, name], cmd
            if isinstance(cmd, click.Group):
                yield from walk(cmd, [*path, name])
    for path, cmd in walk(cli, []):
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert cmd.help and len(cmd.help.split()) >= 5, f"{path}: describe the command"


def test_download(with_broken, tmp_path, monkeypatch):
    digests = write_tiny_model(tmp_path / "w")
    cat = write_catalog(tmp_path / "c.yaml", [
        {"name": "tiny-local", "family": "tiny", "arch": "tiny-arch",
         "source": str(tmp_path / "w"), "files": digests},
        {"name": "tiny-unbuilt", "family": "tiny", "arch": "tiny-arch",
         "source": str(tmp_path / "nothing-here"), "files": {}}])
    monkeypatch.setenv("GENZOO_REGISTRY", str(cat))
    result = run("download", "tiny-local", "tiny-bundled")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"tiny-local: {tmp_path / 'w'}"
    result = run("download", "tiny-local", "tiny-unbuilt")
    assert result.exit_code == 1
    assert "Error: tiny-unbuilt: weights not built yet" in result.stderr
    assert "1 of 2 downloads failed" in result.stderr
    assert run("download", "tiny-unbuilt").stderr.count("\n") == 1


def test_cache_commands(local_hub, tmp_path, monkeypatch, fake_plugins):
    fake_plugins()
    cat = write_catalog(tmp_path / "c.yaml", [
        {"name": "tiny-hub", "family": "tiny", "arch": "tiny-arch",
         "source": f"hf://{local_hub.repo_id}@{local_hub.v1}",
         "files": local_hub.digests[local_hub.v1]}])
    monkeypatch.setenv("GENZOO_REGISTRY", str(cat))
    assert "the cache is empty" in run("cache", "ls").stderr
    assert run("download", "tiny-hub").exit_code == 0
    result = run("cache", "ls")
    assert "testorg/tiny" in result.stdout and "tiny-hub" in result.stdout
    assert local_hub.v1[:10] in result.stdout
    assert json.loads(run("cache", "ls", "--json").stdout)[0]["models"] == ["tiny-hub"]
    assert "tiny-hub: ok (2 files)" in run("cache", "verify").stdout.splitlines()
    assert run("cache", "rm", "tiny-hub", input="n\n").exit_code == 1  # declined: Aborted
    result = run("cache", "rm", "tiny-hub", "--yes")
    assert result.exit_code == 0 and "tiny-hub: removed" in result.stdout
    result = run("cache", "verify", "tiny-hub")
    assert result.exit_code == 1 and "not downloaded" in result.stderr


# ---- as a real process --------------------------------------------------------------------
def _genzoo(*args: str, env=None) -> subprocess.CompletedProcess:
    exe = shutil.which("genzoo")
    cmd = [exe] if exe else [sys.executable, "-m", "genzoo"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_subprocess_list_json_and_unknown_name():
    result = _genzoo("list", "--json")
    assert result.returncode == 0, result.stderr
    assert FIRST_PARTY <= {d["name"] for d in json.loads(result.stdout)}
    result = _genzoo("info", "vae-mnst")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: unknown model 'vae-mnst'; did you mean: vae-mnist? "
        "(`genzoo list` shows all models)"]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_subprocess_broken_plugin_does_not_stop_list(fake_site):
    env = {"PYTHONPATH": os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")])}
    plugins = {p["name"]: p for p in json.loads(_genzoo("plugins", "--json", env=env).stdout)}
    assert plugins["fakebroken"]["status"] == "error"
    assert plugins["fakebroken"]["distribution"] == "genzoo-fakebroken"
    listed = _genzoo("list", env=env)
    assert listed.returncode == 0 and "tiny-bundled" in listed.stdout
    strict = _genzoo("list", env={**env, "GENZOO_STRICT_PLUGINS": "1"})
    assert strict.returncode == 1 and strict.stderr.startswith("Error: plugin '")


def test_cli_and_list_do_not_import_torch(fake_site):
    code = ("import sys; from genzoo.cli.root import cli; import genzoo.api, genzoo.catalog.hub; "
            "cli.main(['list'], standalone_mode=False); cli.main(['plugins'], "
            "standalone_mode=False); print('TORCH', 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(fake_site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "TORCH False"
