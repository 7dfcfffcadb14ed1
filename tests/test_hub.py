"""Where weights come from: the local Hub (olah), bundled packages and folders, verified."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from genzoo import fsutil

from conftest import DEAD_ENDPOINT, write_catalog, write_tiny_model
from genzoo.catalog import cache as cache
from genzoo.catalog import hub as hub
from genzoo.catalog import integrity as integrity
from genzoo.errors import (HubError, IntegrityError, PluginMissingError, UnsafePathError,
                           WeightsError)

TINY = ("config.json", "model.safetensors")
PINNED = "hf://org/repo@" + "a" * 40


def _fetch(local_hub, rev, files):
    """hub.fetch of the test repo at ``rev`` (None: the default branch)."""
    source = f"hf://{local_hub.repo_id}" + (f"@{rev}" if rev else "")
    return hub.fetch(source, files)


def test_download_pinned_commit_ignores_later_main(local_hub):
    digests = local_hub.digests[local_hub.v1]
    folder = _fetch(local_hub, local_hub.v1, digests)
    assert folder.name == local_hub.v1 and hub.resolved_revision(folder) == local_hub.v1
    assert {f: integrity.sha256_file(folder / f) for f in TINY} == digests
    latest = _fetch(local_hub, None, None)  # no pin: main, the later commit
    assert latest.name == local_hub.v2
    assert integrity.sha256_file(latest / "model.safetensors") == \
        local_hub.digests[local_hub.v2]["model.safetensors"]
    assert _fetch(local_hub, "v1", None).name == local_hub.v1  # a tag resolves to its commit


def test_default_patterns_never_fetch_pickle(local_hub):
    folder = _fetch(local_hub, local_hub.v1, None)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    with pytest.raises(WeightsError, match="pytorch_model.bin would be pickle"):  # even by name
        _fetch(local_hub, local_hub.v1, {"pytorch_model.bin": None})


def test_revision_argument_overrides_the_source(local_hub):
    folder = hub.fetch(f"hf://{local_hub.repo_id}@{local_hub.v1}",
                       local_hub.digests[local_hub.v1], revision=local_hub.v2)
    assert folder.name == local_hub.v2  # the card's digests describe v1: presence is checked


def test_offline_cache_hit(local_hub, monkeypatch):
    digests = local_hub.digests[local_hub.v1]
    online = _fetch(local_hub, local_hub.v1, digests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
    assert _fetch(local_hub, local_hub.v1, digests) == online
    assert hub.local_folder(f"hf://{local_hub.repo_id}@{local_hub.v1}", digests) == online
    with pytest.raises(HubError) as e:
        _fetch(local_hub, local_hub.v2, None)  # never downloaded
    assert "not in the local cache and the Hub is unreachable" in str(e.value)
    assert "unset HF_HUB_OFFLINE" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # no network and no offline flag: same answers
    assert _fetch(local_hub, local_hub.v1, digests) == online
    with pytest.raises(HubError, match="Hub is unreachable"):
        _fetch(local_hub, local_hub.v2, None)


def test_unreachable_hub_without_cache():
    with pytest.raises(HubError, match="Hub is unreachable; run `genzoo download my-model`"):
        hub.fetch(PINNED, None, name="my-model")


def test_unknown_repo_and_revision(local_hub):
    with pytest.raises(HubError, match="not found"):
        hub.fetch("hf://testorg/missing")
    with pytest.raises(HubError, match="not found"):
        _fetch(local_hub, "no-such-branch", None)


def test_tampered_file_is_refused(local_hub):
    digests = local_hub.digests[local_hub.v1]
    folder = _fetch(local_hub, local_hub.v1, digests)
    blob = Path(os.path.realpath(folder / "model.safetensors"))
    blob.write_bytes(blob.read_bytes()[:-4] + b"evil")
    with pytest.raises(IntegrityError) as e:
        _fetch(local_hub, local_hub.v1, digests)
    msg = str(e.value)
    assert "model.safetensors" in msg and digests["model.safetensors"] in msg
    assert integrity.sha256_file(blob) in msg


def test_verification_results_are_cached(local_hub, monkeypatch):
    hashed = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    digests = local_hub.digests[local_hub.v1]
    folder = _fetch(local_hub, local_hub.v1, digests)
    assert len(hashed) == 2
    assert (fsutil.genzoo_home() / integrity.CACHE_NAME).is_file()
    _fetch(local_hub, local_hub.v1, digests)
    assert len(hashed) == 2  # unchanged files are not hashed again
    config = Path(os.path.realpath(folder / "config.json"))
    st = config.stat()
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _fetch(local_hub, local_hub.v1, digests)
    assert len(hashed) == 3  # a changed file is verified again


def test_interrupted_download_is_not_used(local_hub, monkeypatch):
    blob_id = subprocess.run(["git", "rev-parse", f"{local_hub.v1}:model.safetensors"],
                             cwd=local_hub.git_dir, check=True, capture_output=True,
                             text=True).stdout.strip()
    blobs = hub.hub_cache_dir() / "models--testorg--tiny" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{blob_id}.incomplete").write_bytes(b"\0" * 100)  # a download cut short
    digests = local_hub.digests[local_hub.v1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="not in the local cache"):  # offline: never used
        _fetch(local_hub, local_hub.v1, digests)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    folder = _fetch(local_hub, local_hub.v1, digests)  # online: fetched whole, verified
    assert integrity.sha256_file(folder / "model.safetensors") == digests["model.safetensors"]


@pytest.mark.parametrize("name", ["../escape.json", "/etc/passwd", "a/../../b", "C:\\x", "~/.ssh"])
def test_path_traversal_refused_before_io(name, monkeypatch, tmp_path):
    import huggingface_hub

    def no_io(*a, **k):
        raise AssertionError("reached the Hub")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_io)
    with pytest.raises(UnsafePathError, match="escapes the model folder"):
        hub.fetch(PINNED, {name: None})
    with pytest.raises(UnsafePathError):  # before even looking for the folder
        hub.fetch(str(tmp_path / "does-not-exist"), {name: None})


def test_local_folder_source(tmp_path):
    digests = write_tiny_model(tmp_path / "m")
    assert hub.fetch(str(tmp_path / "m"), digests) == tmp_path / "m"
    with pytest.raises(IntegrityError, match="config.json"):
        hub.fetch(str(tmp_path / "m"), {**digests, "config.json": "0" * 64})
    with pytest.raises(WeightsError, match="extra.txt is missing"):
        hub.fetch(str(tmp_path / "m"), {**digests, "extra.txt": "0" * 64})
    with pytest.raises(WeightsError, match="not found"):
        hub.fetch(str(tmp_path / "nothing"), {})


def test_pkg_source(fake_site, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_site))
    digests = json.loads((fake_site / "fakegood" / "weights" / "digests.json").read_text())
    folder = hub.fetch("pkg://fakegood/weights/tiny", digests)
    assert folder == fake_site / "fakegood" / "weights" / "tiny"
    assert hub.is_available("pkg://fakegood/weights/tiny", digests)
    with pytest.raises(PluginMissingError, match="pip install genzoo-nothing-here"):
        hub.fetch("pkg://genzoo_nothing_here/weights/x", {})
    assert not hub.is_available("pkg://genzoo_nothing_here/weights/x")


def test_cache_ls_verify_rm(local_hub, tmp_path, monkeypatch, fake_plugins):
    fake_plugins()
    digests = local_hub.digests[local_hub.v1]
    cat = write_catalog(tmp_path / "c.yaml", [{
        "name": "tiny-hub", "family": "tiny", "arch": "tiny-arch",
        "source": f"hf://{local_hub.repo_id}@{local_hub.v1}", "files": digests}, {
        "name": "tiny-local", "family": "tiny", "arch": "tiny-arch",
        "source": str(tmp_path / "nowhere"), "files": {}}])
    monkeypatch.setenv("GENZOO_REGISTRY", str(cat))
    assert cache.cache_entries() == []
    with pytest.raises(HubError, match="not downloaded"):
        cache.verify_cached("tiny-hub")
    _fetch(local_hub, local_hub.v1, digests)
    [entry] = cache.cache_entries()
    assert entry["repo_id"] == local_hub.repo_id and entry["models"] == ["tiny-hub"]
    assert [r["commit"] for r in entry["revisions"]] == [local_hub.v1]
    assert [{**e, "models": ["tiny-hub"]} for e in hub.cached_repos()] == [entry]  # card-free
    assert cache.verify_cached("tiny-hub") == {"config.json": "ok", "model.safetensors": "ok"}
    with pytest.raises(HubError, match="tiny-local: its weights are .*not in the Hugging Face"):
        cache.remove_from_cache("tiny-local")
    assert cache.remove_from_cache("tiny-hub") > 0
    assert cache.cache_entries() == []
    with pytest.raises(HubError, match="nothing cached"):
        cache.remove_from_cache("tiny-hub")
    _fetch(local_hub, local_hub.v1, digests)  # a repo id (no card) is removed the same way
    assert cache.remove_from_cache(local_hub.repo_id) > 0 and hub.cached_repos() == []


def test_upload_folder(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="no config.json"):
        hub.upload_folder(tmp_path, "user/model")
    write_tiny_model(tmp_path / "m")
    calls = []

    class FakeApi:  # the real HfApi would need a writable Hub; olah is read-only
        def __init__(self, endpoint=None, token=None):
            calls.append(("init", endpoint, token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw["exist_ok"], kw["private"]))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw["folder_path"],
                          kw["ignore_patterns"]))
            return type("Info", (), {"commit_url": "http://hub/user/model/commit/abc"})()

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = hub.upload_folder(tmp_path / "m", "user/model", token="t0k", private=True)
    assert url == "http://hub/user/model/commit/abc"
    assert calls[0] == ("init", DEAD_ENDPOINT, "t0k")
    assert calls[1] == ("create_repo", "user/model", True, True)
    assert calls[2][:3] == ("upload_folder", "user/model", str(tmp_path / "m"))
    assert "*.bin" in calls[2][3]
    with pytest.raises(HubError, match="expected a Hub repository id"):
        hub.upload_folder(tmp_path / "m", "not a repo")
