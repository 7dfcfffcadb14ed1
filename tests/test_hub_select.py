"""An ``hf://`` repository without a card downloads only what its model needs, pinned: on the
local Hub (olah), a Stable Diffusion-like pipeline repository that also holds a root
single-file checkpoint, fp16 variants, pickle files and a folder its pipeline does not list.
The diffusion plugin's ``genzoo_select_files`` chooses; genzoo resolves the revision to a
commit, fetches exactly those files, verifies each against the Hub's listing, records its
sha256 and verifies it again on later uses (offline too). A plugin whose hook raises is
recorded against itself and every other model still loads."""
from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import _git, fake_entry_points, sha256, write_dist_infos
from genzoo import api
from genzoo.catalog import hub as hub
from genzoo.catalog import hub_files as hub_files
from genzoo.catalog import registry as registry
from genzoo.cli import cli
from genzoo.errors import HubError, IntegrityError, WeightsError
from genzoo.plugins import manager as plugins

pytest.importorskip("genzoo_diffusion")

INDEX = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
         "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers",
                                                                       "CLIPTextModel"],
         "tokenizer": ["transformers", "CLIPTokenizer"],
         "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
         "safety_checker": [None, None]}
CONFIGS = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
           "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
           "unet/config.json", "vae/config.json"]
FULL = ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors"]
HALF = ["text_encoder/model.safetensors",  # no fp16 variant: the full weights
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors"]
NEVER = ["v1-5-pruned.safetensors", "v1-5-pruned.ckpt", "README.md",
         "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.non_ema.safetensors",
         "vae_1_0/config.json", "vae_1_0/diffusion_pytorch_model.safetensors",
         "unet/diffusion_flax_model.msgpack"]


def _write(repo: Path, name: str, text: str | None = None) -> None:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    # every file's bytes differ, so the cache's blobs count the files it holds
    path.write_text(text if text is not None else f"{name}: {'x' * 64}\n")


def _commit_repo(olah_hub, name: str, files: dict[str, str | None]) -> str:
    """A git repository ``testorg/NAME`` that olah serves, holding ``files``; its commit."""
    repo = olah_hub.git_dir.parent / name
    if not repo.exists():
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        for f, text in files.items():
            _write(repo, f, text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "pipeline")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="session")
def sd_repo(olah_hub):
    """``(repo_id, commit, git folder)`` of the pipeline repository."""
    files = {f: None for f in CONFIGS + FULL + HALF + NEVER}
    files["model_index.json"] = json.dumps(INDEX)
    commit = _commit_repo(olah_hub, "sd-pipe", files)
    return "testorg/sd-pipe", commit, olah_hub.git_dir.parent / "sd-pipe"


def _snapshot_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _blobs(repo_id: str) -> int:
    return len(list((hub.hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
                     / "blobs").iterdir()))


def test_only_the_pipeline_files_are_fetched_pinned_and_recorded(local_hub, sd_repo):
    repo_id, commit, git = sd_repo
    folder = api.download(f"hf://{repo_id}")
    assert _snapshot_files(folder) == sorted(CONFIGS + FULL)
    assert _blobs(repo_id) == len(CONFIGS + FULL)  # nothing else was downloaded
    assert folder.name == commit and hub.resolved_revision(folder) == commit
    record = json.loads(hub_files.pins_path(repo_id, commit).read_text())
    assert record["sha256"] == {f: sha256(git / f) for f in CONFIGS + FULL}
    assert set(record["listing"]) == set(CONFIGS + FULL + HALF + NEVER)

    half = api.download(f"hf://{repo_id}", dtype="fp16")  # the variants, beside the others
    assert half == folder
    assert _snapshot_files(folder) == sorted(set(CONFIGS + FULL + HALF))
    record = json.loads(hub_files.pins_path(repo_id, commit).read_text())
    assert set(record["sha256"]) == set(CONFIGS + FULL + HALF)


def test_a_recorded_commit_is_served_offline_and_verified(local_hub, sd_repo, monkeypatch):
    repo_id, commit, git = sd_repo
    online = hub_files.fetch_selected(f"hf://{repo_id}", api.file_selector("fp16"))
    assert online.commit == commit and set(online.files) == set(CONFIGS + HALF)
    assert online.files["unet/diffusion_pytorch_model.fp16.safetensors"] == sha256(
        git / "unet/diffusion_pytorch_model.fp16.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for source in (f"hf://{repo_id}", f"hf://{repo_id}@{commit}"):  # the branch, the commit
        assert hub_files.fetch_selected(source, api.file_selector("fp16")) == online
    with pytest.raises(HubError, match="not in the local cache and the Hub is unreachable"):
        hub_files.fetch_selected(f"hf://{repo_id}", api.file_selector(None))  # never fetched

    blob = Path(os.path.realpath(online.folder / "vae/diffusion_pytorch_model.fp16.safetensors"))
    blob.write_text("tampered\n")
    with pytest.raises(IntegrityError) as e:  # offline: against the sha256 recorded
        hub_files.fetch_selected(f"hf://{repo_id}@{commit}", api.file_selector("fp16"))
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in str(e.value)
    assert "recorded at download" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(IntegrityError, match="the Hub lists"):  # online: against the listing
        hub_files.fetch_selected(f"hf://{repo_id}", api.file_selector("fp16"))


def test_a_component_with_only_pickle_weights_is_refused_before_any_weight(local_hub, olah_hub):
    files = {f: None for f in CONFIGS + FULL if not f.startswith("vae/diffusion")}
    files["model_index.json"] = json.dumps(INDEX)
    files["vae/diffusion_pytorch_model.bin"] = None
    _commit_repo(olah_hub, "sd-pickle", files)
    with pytest.raises(WeightsError) as e:
        api.download("hf://testorg/sd-pickle")
    msg = str(e.value)
    assert msg.startswith("hf://testorg/sd-pickle: ") and "\n" not in msg
    assert "'vae'" in msg and "vae/diffusion_pytorch_model.bin" in msg and "pickle" in msg
    assert _blobs("testorg/sd-pickle") == 1  # model_index.json, read to choose


def test_genzoo_download_of_a_hub_id(local_hub, sd_repo):
    repo_id, commit, _ = sd_repo
    result = CliRunner().invoke(cli, ["download", f"hf://{repo_id}@{commit}"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(commit)


@pytest.fixture
def with_broken_selector(fake_plugins, fake_site, tmp_path, monkeypatch):
    """The plugins: a trusted one whose genzoo_select_files raises (so it is asked first),
    the diffusion plugin and fakegood (the tiny-arch models)."""
    site = tmp_path / "site-boom"
    site.mkdir()
    (site / "fakeselectboom.py").write_text(
        "import genzoo\n\n\n@genzoo.hookimpl\ndef genzoo_select_files(filenames, read_json, "
        "dtype):\n    raise RuntimeError('boom in select')\n")
    write_dist_infos(site, {"boom": ("genzoo-fakeselectboom", "0.1", "fakeselectboom")})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("GENZOO_TRUSTED_PLUGINS", "boom")
    boom = importlib.metadata.PathDistribution(site / "genzoo_fakeselectboom-0.1.dist-info")
    diffusion = importlib.metadata.entry_points(group="genzoo", name="diffusion")
    fake_plugins()  # fake_site on sys.path; its modules are removed afterwards
    manager = plugins.reset([*boom.entry_points, *diffusion,
                             *fake_entry_points(fake_site, "fakegood")])
    registry.reset()
    yield manager
    sys.modules.pop("fakeselectboom", None)


def test_a_selector_that_raises_is_recorded_and_stops_nothing(local_hub, sd_repo,
                                                              with_broken_selector):
    manager = with_broken_selector
    model = api.load(f"hf://{local_hub.repo_id}", device="cpu")  # the default patterns
    assert model.revision == local_hub.v2
    assert sorted(model.card_files) == ["README.md", "config.json", "model.safetensors"]
    assert model.card_files["model.safetensors"] == \
        local_hub.digests[local_hub.v2]["model.safetensors"]
    info = manager.info("boom")
    assert info.status == "error"
    assert "hook genzoo_select_files raised RuntimeError: boom in select" in info.error
    repo_id, commit, _ = sd_repo
    assert _snapshot_files(api.download(f"hf://{repo_id}")) == sorted(CONFIGS + FULL)
    assert manager.info("diffusion").status == "ok"


def test_lfs_files_are_verified_by_the_sha256_the_hub_lists(tmp_path):
    """The real Hub lists an LFS file's sha256 (olah serves plain git: no LFS)."""
    (tmp_path / "unet").mkdir()
    weights = tmp_path / "unet" / "w.safetensors"
    weights.write_bytes(b"weights")
    (tmp_path / "config.json").write_text("{}")
    listing = {"unet/w.safetensors": hub_files.Listed(7, "0" * 40, sha256(weights)),
               "config.json": hub_files.Listed(2, _git_blob_id(b"{}"), None)}
    assert hub_files.verify_listed(tmp_path, sorted(listing), listing, "hf://o/r") == {
        "unet/w.safetensors": sha256(weights), "config.json": sha256(tmp_path / "config.json")}
    listing["unet/w.safetensors"] = hub_files.Listed(7, "0" * 40, "f" * 64)
    with pytest.raises(IntegrityError, match="unet/w.safetensors has sha256 .*the Hub's listing "
                                             "expects f{64}"):
        hub_files.verify_listed(tmp_path, sorted(listing), listing, "hf://o/r")


def _git_blob_id(data: bytes) -> str:
    import hashlib
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("mode", ["hang", "404"])
def test_a_misbehaving_hub_is_one_line_within_the_deadline(monkeypatch, mode):
    import time

    from misbehaving_hub import MisbehavingHub
    monkeypatch.setenv("GENZOO_HUB_TIMEOUT", "1.5")
    with MisbehavingHub(mode) as bad:
        monkeypatch.setenv("HF_ENDPOINT", bad.url)
        t0 = time.monotonic()
        with pytest.raises(HubError) as e:
            api.download("hf://org/model")
        assert time.monotonic() - t0 < 4.5
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("hf://org/model: ")
    assert ("no answer" in msg) if mode == "hang" else ("not found" in msg)


def test_the_manager_checks_each_answer(tmp_path, monkeypatch):
    """A name not in the repository or an empty list is that plugin's error (the next plugin
    is asked); a GenzooError is the plugin's refusal and reaches the caller."""
    site = tmp_path / "site-odd"
    site.mkdir()
    (site / "fakeselectodd.py").write_text(
        "import genzoo\nfrom genzoo.errors import WeightsError\n\n\n@genzoo.hookimpl\n"
        "def genzoo_select_files(filenames, read_json, dtype):\n"
        "    if 'refuse.json' in filenames:\n        raise WeightsError('not loadable')\n"
        "    return {'stray.json': ['elsewhere.json'], 'empty.json': []}.get(filenames[0])\n")
    (site / "fakeselectok.py").write_text(
        "import genzoo\n\n\n@genzoo.hookimpl\ndef genzoo_select_files(filenames, read_json, "
        "dtype):\n    return [filenames[0]] if read_json(filenames[0]) == {} else None\n")
    write_dist_infos(site, {"odd": ("genzoo-fakeselectodd", "0.1", "fakeselectodd"),
                            "ok": ("genzoo-fakeselectok", "0.1", "fakeselectok")})
    monkeypatch.syspath_prepend(str(site))
    eps = [ep for d in ("genzoo_fakeselectodd-0.1", "genzoo_fakeselectok-0.1") for ep in
           importlib.metadata.PathDistribution(site / f"{d}.dist-info").entry_points]
    try:
        manager = plugins.PluginManager(eps)
        for first in ("stray.json", "empty.json"):
            assert manager.select_files([first], lambda name: {}, None) == [first]
        error = manager.info("odd").error
        assert "genzoo_select_files chose 'elsewhere.json', which is not in the repository" \
            in error
        assert "hook genzoo_select_files returned list (empty)" in error
        with pytest.raises(WeightsError, match="not loadable"):
            manager.select_files(["refuse.json"], lambda name: {}, None)
        assert manager.select_files(["x.json"], lambda name: [], "fp16") is None  # nobody's
    finally:
        for module in ("fakeselectodd", "fakeselectok"):
            sys.modules.pop(module, None)
