"""`genzoo push` against a real, writable local Hub: the upload goes through huggingface_hub into
a git repository (tests/hub_upload_server.py), and the same repository is downloaded back
through olah, the core tests' read-only Hub. No network beyond 127.0.0.1."""
from __future__ import annotations

import importlib.metadata
import subprocess

import pytest
import torch
from click.testing import CliRunner

import genzoo
from _tiny import TinyModel
from conftest import write_tiny_model
from genzoo.catalog import hub as hub
from genzoo.plugins import manager as plugins
from genzoo.catalog import registry as registry
from genzoo.cli import cli

CARD_FILES = ["README.md", "config.json", "model.safetensors"]
NEVER_BEFORE = list(hub.NEVER_PATTERNS)


class TinyArchPlugin:
    """A plugin registering tests/_tiny.py's TinyModel, so that genzoo.load can load it."""

    @staticmethod
    @genzoo.hookimpl
    def genzoo_architectures():
        return [{"name": TinyModel.arch, "family": TinyModel.family, "target": "_tiny:TinyModel",
                 "summary": "a 4x4 denoising autoencoder, for tests"}]


@pytest.fixture
def tiny_arch():
    """Only the TinyArchPlugin is installed (isolated_env resets the plugins afterwards)."""
    ep = importlib.metadata.EntryPoint("tinytest", f"{__name__}:TinyArchPlugin", "genzoo")
    plugins.reset([ep], strict=True)
    registry.reset()


@pytest.fixture
def pushing(upload_hub, monkeypatch):
    """HF_ENDPOINT and HF_TOKEN set for `genzoo push` to the writable local Hub."""
    monkeypatch.setenv("HF_ENDPOINT", upload_hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", upload_hub.token)
    return upload_hub


def push(*args: str):
    return CliRunner().invoke(cli, ["push", *args])


def git(upload_hub, repo_id: str, *args: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(upload_hub.repo_path(repo_id)), *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def saved_model(folder, seed: int) -> TinyModel:
    """A TinyModel with seeded random weights, saved with save_pretrained (config, weights,
    card)."""
    torch.manual_seed(seed)
    model = TinyModel().eval()
    model.save_pretrained(folder)
    return model


def downloaded(olah_hub, monkeypatch, source: str):
    """hub.fetch of ``source`` through olah."""
    monkeypatch.setenv("HF_ENDPOINT", olah_hub.endpoint)
    return hub.fetch(source)


@pytest.mark.parametrize("pipeline", [True, False], ids=["xet-pipeline", "single-commit"])
def test_push_then_download_the_same_model(pushing, olah_hub, tiny_arch, tmp_path, monkeypatch,
                                           pipeline):
    # huggingface_hub uploads a folder through its streamed pipeline when hf_xet is installed
    # and through one create_commit otherwise: both must reach the same repository.
    import huggingface_hub.hf_api
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: pipeline)
    repo = f"pushorg/roundtrip-{'xet' if pipeline else 'commit'}"
    folder = tmp_path / "m"
    model = saved_model(folder, seed=0)
    (folder / "pytorch_model.bin").write_bytes(b"pickle weights are never pushed")
    result = push(str(folder), repo)
    assert result.exit_code == 0, result.output
    sha = git(pushing, repo, "rev-parse", "main")
    assert result.output == f"pushed {folder} -> {pushing.endpoint}/{repo}/commit/{sha}\n"
    assert git(pushing, repo, "ls-tree", "-r", "--name-only", "main").split() == \
        [".gitattributes", *CARD_FILES]
    assert git(pushing, repo, "log", "--format=%s", "main").splitlines() == \
        ["Upload model with genzoo", "initial commit"]

    got = downloaded(olah_hub, monkeypatch, f"hf://{repo}@{sha}")
    assert got.name == sha and sorted(p.name for p in got.iterdir()) == CARD_FILES
    for name in CARD_FILES:
        assert (got / name).read_bytes() == (folder / name).read_bytes(), name
    assert "library_name: genzoo" in (got / "README.md").read_text()  # the card went with it

    loaded = genzoo.load(f"hf://{repo}@{sha}", device="cpu")
    assert type(loaded) is TinyModel and loaded.revision == sha
    expected = model.sample(6, seed=3).images
    assert torch.equal(loaded.sample(6, seed=3).images, expected)


def test_push_again_then_a_branch(pushing, olah_hub, tmp_path, monkeypatch):
    repo = "pushorg/versions"
    folder = tmp_path / "m"
    saved_model(folder, seed=1)
    assert push(str(folder), repo).exit_code == 0
    first = git(pushing, repo, "rev-parse", "main")
    weights1 = (folder / "model.safetensors").read_bytes()

    again = push(str(folder), repo)  # nothing changed: no new commit, the same URL
    assert again.exit_code == 0, again.output
    assert again.output == f"pushed {folder} -> {pushing.endpoint}/{repo}/commit/{first}\n"
    assert git(pushing, repo, "rev-parse", "main") == first

    saved_model(folder, seed=2)  # new weights, same config: one changed file
    assert push(str(folder), repo).exit_code == 0
    second = git(pushing, repo, "rev-parse", "main")
    assert second != first and git(pushing, repo, "rev-parse", "main^") == first
    assert git(pushing, repo, "diff", "--name-only", first, second).split() == ["model.safetensors"]
    weights2 = (folder / "model.safetensors").read_bytes()
    assert weights2 != weights1

    latest = downloaded(olah_hub, monkeypatch, f"hf://{repo}")  # olah sees the new main at once
    assert latest.name == second and (latest / "model.safetensors").read_bytes() == weights2
    old = downloaded(olah_hub, monkeypatch, f"hf://{repo}@{first}")
    assert (old / "model.safetensors").read_bytes() == weights1

    monkeypatch.setenv("HF_ENDPOINT", pushing.endpoint)
    saved_model(folder, seed=3)
    result = push(str(folder), repo, "--revision", "dev")
    assert result.exit_code == 0, result.output
    dev = git(pushing, repo, "rev-parse", "dev")
    assert result.output.endswith(f"/{repo}/commit/{dev}\n")
    assert git(pushing, repo, "rev-parse", "main") == second  # main untouched
    assert git(pushing, repo, "rev-parse", "dev^") == second
    on_dev = downloaded(olah_hub, monkeypatch, f"hf://{repo}@dev")
    assert on_dev.name == dev
    assert (on_dev / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_private_flag_reaches_the_hub(pushing, tmp_path):
    write_tiny_model(tmp_path / "m")
    assert push(str(tmp_path / "m"), "pushorg/secret", "--private").exit_code == 0
    assert pushing.repos["pushorg/secret"]["private"] is True


def _not_a_genzoo_folder(folder):
    write_tiny_model(folder, genzoo_section=False)


def _no_config(folder):
    write_tiny_model(folder)
    (folder / "config.json").unlink()


def _bin_only(folder):
    write_tiny_model(folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


@pytest.mark.parametrize("make, message", [
    (_not_a_genzoo_folder, "is not a genzoo model folder (config.json has no genzoo section); "
                           "save it with model.save_pretrained first"),
    (_no_config, "no config.json; a genzoo model folder holds config.json"),
    (_bin_only, "has no model.safetensors; only safetensors weights are pushed"),
], ids=["no-genzoo-section", "no-config", "bin-only"])
def test_refused_folders_upload_nothing(pushing, tmp_path, make, message):
    folder = tmp_path / "m"
    make(folder)
    before = len(pushing.log)
    result = push(str(folder), "pushorg/refused")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {folder}") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert pushing.log[before:] == []  # not a single request reached the Hub
    assert not pushing.repo_path("pushorg/refused").exists()


@pytest.mark.parametrize("token", [None, "hf_wrong"], ids=["no-token", "wrong-token"])
def test_push_needs_a_write_token(pushing, tmp_path, monkeypatch, token):
    monkeypatch.delenv("HF_TOKEN")
    write_tiny_model(tmp_path / "m")
    result = push(str(tmp_path / "m"), "pushorg/denied", *(["--token", token] if token else []))
    assert result.exit_code == 1
    assert result.stderr == ("Error: pushorg/denied: not allowed to write (HTTP 401); log in with "
                             "`hf auth login` or pass a write token\n")
    assert not pushing.repo_path("pushorg/denied").exists()


def test_push_leaves_genzoo_patterns_alone(pushing, tmp_path):
    # huggingface_hub's upload_folder extends the ignore_patterns list it is given in place.
    write_tiny_model(tmp_path / "m")
    assert push(str(tmp_path / "m"), "pushorg/patterns").exit_code == 0
    assert hub.NEVER_PATTERNS == NEVER_BEFORE
