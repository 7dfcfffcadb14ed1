"""Shared fixtures of the core tests: an isolated environment, fake plugins behind real entry
points, and a local Hugging Face Hub (olah serving plain git repositories). No network."""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from genzoo.plugins import manager as plugins
from genzoo.catalog import registry as registry

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FAKE_SRC = HERE / "fake_plugins"
#: entry-point name -> (distribution, version, module) of the fake plugins in tests/fake_plugins
FAKE_DISTS = {
    "fakegood": ("genzoo-fakegood", "1.0", "fakegood"),
    "fakebroken": ("genzoo-fakebroken", "0.1", "fakebroken"),
    "fakeraises": ("genzoo-fakeraises", "0.2", "fakeraises"),
    "fakedup": ("genzoo-fakedup", "0.3", "fakedup"),
    "fakebadtarget": ("genzoo-fakebadtarget", "0.4", "fakebadtarget"),
}
#: hostile plugins (tests/fake_plugins), each installed on its own by ``plugin_site``
HOSTILE_DISTS = {
    "fakeshadow": ("genzoo-fakeshadow", "0.5", "fakeshadow"),  # a card named gan-mnist
    "fakegarbage": ("genzoo-fakegarbage", "0.6", "fakegarbage"),  # wrong types from each hook
    "fakeexit": ("genzoo-fakeexit", "0.7", "fakeexit"),  # sys.exit(3) at import
    "fakeargv": ("genzoo-fakeargv", "0.8", "fakeargv"),  # argparse exits 2 at import
    "fakedcgan": ("genzoo-fakedcgan", "0.9", "fakedcgan"),  # claims architecture gan-dcgan
    "fakefeature": ("genzoo-fakefeature", "1.1", "fakefeature"),  # a feature net of its own
}
DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: refused at once, never the real Hub


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_tiny_model(folder: Path, n: int = 4, value: float = 0.5, genzoo_section: bool = True,
                     extra_config: dict | None = None) -> dict[str, str]:
    """A folder the ``tiny-arch`` test architecture loads (written without torch); returns
    ``{file: sha256}``."""
    import numpy as np
    from safetensors.numpy import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"n": n, **(extra_config or {})}
    if genzoo_section:
        config["genzoo"] = {"arch": "tiny-arch", "family": "tiny", "format_version": 1}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"lin.weight": np.full((1, n), value, dtype=np.float32),
               "lin.bias": np.full((1,), value, dtype=np.float32)},
              str(folder / "model.safetensors"))
    return {f: sha256(folder / f) for f in ("config.json", "model.safetensors")}


def write_catalog(path: Path, cards: list[dict]) -> Path:
    """A user catalog file (registry.yaml format)."""
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "models": cards}, sort_keys=False))
    return path


# ---- isolation --------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own caches and config folder and cannot reach the real Hub."""
    for var in ("HF_HUB_CACHE", "GENZOO_REGISTRY", "GENZOO_PLUGINS", "GENZOO_STRICT_PLUGINS",
                "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path / "genzoo"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # no layout timing per test home: deterministic and fast (tests/test_levers.py measures)
    monkeypatch.setenv("GENZOO_LEVERS", "off")
    plugins.reset()
    registry.reset()
    yield
    plugins.reset()
    registry.reset()


# ---- fake plugins -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def fake_site(tmp_path_factory) -> Path:
    """A site folder holding the fake plugin modules and one ``.dist-info`` per plugin."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(FAKE_SRC, site, dirs_exist_ok=True)
    weights = site / "fakegood" / "weights"
    digests = write_tiny_model(weights / "tiny", value=0.125)
    (weights / "digests.json").write_text(json.dumps(digests))
    write_dist_infos(site, FAKE_DISTS)
    return site


def write_dist_infos(site: Path, dists: dict[str, tuple[str, str, str]]) -> None:
    """One ``.dist-info`` (METADATA + entry_points.txt, group genzoo) per entry point."""
    from _site import write_dist_info
    for ep_name, (dist, version, module) in dists.items():
        write_dist_info(site, dist, version, ep_name, module)


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """``use(*names) -> site``: a site folder where only the named hostile plugins
    (``HOSTILE_DISTS``) are installed, put first on sys.path, so that discovery finds them
    before the installed first-party plugins (as a user's site-packages order may)."""
    def use(*names: str) -> Path:
        site = tmp_path / ("site-" + "-".join(names))
        site.mkdir()
        for name in names:
            module = HOSTILE_DISTS[name][2]
            src = FAKE_SRC / module
            if src.is_dir():
                shutil.copytree(src, site / module)
            else:
                shutil.copy(FAKE_SRC / f"{module}.py", site)
        write_dist_infos(site, {n: HOSTILE_DISTS[n] for n in names})
        monkeypatch.syspath_prepend(str(site))
        plugins.reset()
        registry.reset()
        return site

    yield use
    hostile = {v[2] for v in HOSTILE_DISTS.values()}
    for mod in [m for m in sys.modules if m.split(".")[0] in hostile]:
        del sys.modules[mod]


def fake_entry_points(site: Path, *names: str) -> list[importlib.metadata.EntryPoint]:
    """The real EntryPoint objects (with their distribution) of the named fake plugins."""
    eps = []
    for name in names:
        dist, version, _ = FAKE_DISTS[name]
        d = importlib.metadata.PathDistribution(site / f"{dist.replace('-', '_')}-{version}.dist-info")
        eps.extend(ep for ep in d.entry_points if ep.group == "genzoo")
    return eps


@pytest.fixture
def fake_plugins(fake_site, monkeypatch):
    """``use(*names, strict=None, allow=None)`` installs a plugin manager built from exactly
    those fake plugins' entry points (none: no plugins at all) and returns it."""
    monkeypatch.syspath_prepend(str(fake_site))

    def use(*names, strict=None, allow=None):
        manager = plugins.reset(fake_entry_points(fake_site, *names), strict=strict, allow=allow)
        registry.reset()
        return manager

    yield use
    for mod in [m for m in sys.modules if m.split(".")[0] in
                {v[2] for v in FAKE_DISTS.values()}]:
        del sys.modules[mod]


# ---- a local Hub --------------------------------------------------------------------------
@dataclass
class LocalHub:
    endpoint: str
    repo_id: str
    git_dir: Path
    v1: str  # first commit (tag v1): tiny model with value 0.5
    v2: str  # second commit on main: value 0.25
    digests: dict  # commit -> {file: sha256}


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    out = subprocess.run(["git", "-c", "user.name=genzoo", "-c", "user.email=t@genzoo",
                          "-c", "commit.gpgsign=false", *args], cwd=cwd, env=env,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def olah_hub(tmp_path_factory) -> LocalHub:
    """olah in offline mode serving one git repository, ``testorg/tiny``, with two commits."""
    exe = shutil.which("olah-cli")
    if exe is None:
        pytest.skip("olah is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("olah")
    repo = root / "mirrors" / "models" / "testorg" / "tiny"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    d1 = write_tiny_model(repo, value=0.5)
    (repo / "README.md").write_text("---\nlibrary_name: genzoo\n---\n# tiny\n")
    (repo / "pytorch_model.bin").write_bytes(b"pickle weights must never be downloaded")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "v1")
    _git(repo, "tag", "v1")
    v1 = _git(repo, "rev-parse", "HEAD")
    d2 = write_tiny_model(repo, value=0.25)
    _git(repo, "commit", "-q", "-am", "v2")
    v2 = _git(repo, "rev-parse", "HEAD")
    port = _free_port()
    netloc = f"127.0.0.1:{port}"
    config = root / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\nmirror-netloc = "{netloc}"\n'
        f'mirror-lfs-netloc = "{netloc}"\n[accessibility]\noffline = true\n')
    log = open(root / "olah.log", "wb")
    proc = subprocess.Popen([exe, "-c", str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://{netloc}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/api/models/testorg/tiny/revision/main",
                                        timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"olah did not start: {(root / 'olah.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield LocalHub(endpoint, "testorg/tiny", repo, v1, v2, {v1: d1, v2: d2})
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def local_hub(olah_hub, monkeypatch) -> LocalHub:
    """The local Hub, with HF_ENDPOINT pointing at it for this test."""
    monkeypatch.setenv("HF_ENDPOINT", olah_hub.endpoint)
    return olah_hub


@pytest.fixture(scope="session")
def upload_hub(olah_hub):
    """A writable Hub (tests/hub_upload_server.py) committing into the git repositories olah
    serves: push to ``upload_hub.endpoint`` with ``upload_hub.token``, then download the same
    commits from ``olah_hub.endpoint`` (olah reads each repository afresh: no restart)."""
    from hub_upload_server import UploadHub
    with UploadHub(olah_hub.git_dir.parents[2]) as server:  # .../mirrors/models/testorg/tiny
        yield server
