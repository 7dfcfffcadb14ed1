"""Fault injection, the Hub: every wait is bounded by GENZOO_HUB_TIMEOUT, and a Hub that hangs,
fails (HTTP 500), answers with an HTML page or says 404 is one line naming the repository and
the status; a bad HF_ENDPOINT and a push to an unreachable Hub too; a tampered bundled file
says to reinstall its package, and `genzoo list` does not call it ready."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from genzoo.catalog import hub as hub
from genzoo.catalog import registry as registry
from genzoo.api import model_status
from genzoo.cli import cli
from genzoo.errors import HubError, IntegrityError

from conftest import DEAD_ENDPOINT, write_catalog, write_tiny_model
from misbehaving_hub import MisbehavingHub

PINNED = "hf://org/model@" + "a" * 40
FILES = {"config.json": "0" * 64, "model.safetensors": "1" * 64}
TIMEOUT = 1.5  # seconds: each case must end within a few of these


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch):
    monkeypatch.setenv("GENZOO_HUB_TIMEOUT", str(TIMEOUT))


def _fails(monkeypatch, mode: str, source: str = PINNED, files=FILES) -> tuple[str, float, int]:
    """Fetch ``source`` from a Hub misbehaving in ``mode``: (message, seconds, requests)."""
    with MisbehavingHub(mode) as bad:
        monkeypatch.setenv("HF_ENDPOINT", bad.url)
        t0 = time.monotonic()
        with pytest.raises(HubError) as err:
            hub.fetch(source, files, name="my-model")
        seconds = time.monotonic() - t0
    msg = str(err.value)
    assert "\n" not in msg and "org/model" in msg, msg
    return msg, seconds, bad.hits


def test_a_hub_that_never_answers_ends_within_the_deadline(monkeypatch):
    msg, seconds, _ = _fails(monkeypatch, "hang")
    assert seconds < 3 * TIMEOUT
    assert f"no answer from http://127.0.0.1" in msg and f"within {TIMEOUT:g} s" in msg


def test_http_500_is_retried_within_the_deadline_then_called_a_server_error(monkeypatch):
    msg, seconds, hits = _fails(monkeypatch, "500", "hf://org/model")
    assert "HTTP 500 (a server error)" in msg and "unreachable" not in msg
    assert 2 <= hits <= 3 and seconds < 2 * TIMEOUT


def test_a_200_html_page_is_one_line(monkeypatch):
    msg, seconds, _ = _fails(monkeypatch, "html")
    assert "answered HTTP 200 with an HTML page" in msg and "HF_ENDPOINT" in msg


def test_404_for_a_pinned_repo_says_not_found(monkeypatch):
    msg, _, _ = _fails(monkeypatch, "404")
    assert "not found" in msg and "HTTP 404" in msg and "unreachable" not in msg


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:99999", "http://127.0.0.1:port",
                                      "ftp://example.org", "127.0.0.1:8080"])
def test_a_bad_hf_endpoint_is_one_line(monkeypatch, endpoint):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(HubError, match="HF_ENDPOINT=.* is not a usable URL"):
        hub.fetch(PINNED, FILES)


def pinned_catalog(tmp_path, name: str):
    """A user catalog holding one card ``name`` for the pinned Hub repo."""
    return write_catalog(tmp_path / "cat.yaml", [{
        "name": name, "family": "tiny", "arch": "tiny-arch", "source": PINNED, "files": FILES}])


def test_a_bad_hf_endpoint_port_is_one_line_in_a_fresh_process(monkeypatch, tmp_path):
    """huggingface_hub's own import fails on such a port: genzoo must check it first."""
    catalog = pinned_catalog(tmp_path, "far-model")
    env = {**os.environ, "GENZOO_REGISTRY": str(catalog), "HF_ENDPOINT": "http://127.0.0.1:99999"}
    for args in (["download", "far-model"], ["cache", "ls"]):
        done = subprocess.run([sys.executable, "-m", "genzoo", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [
            "Error: HF_ENDPOINT='http://127.0.0.1:99999' is not a usable URL (scheme, host or "
            "port); set it to https://huggingface.co or to your mirror's http(s)://host[:port]"]


def test_a_bad_timeout_value_is_one_line(monkeypatch):
    monkeypatch.setenv("GENZOO_HUB_TIMEOUT", "soon")
    with pytest.raises(HubError, match="GENZOO_HUB_TIMEOUT='soon': expected a number"):
        hub.fetch(PINNED, FILES)


def test_genzoo_download_of_a_hanging_hub_is_one_line(monkeypatch, tmp_path):
    catalog = pinned_catalog(tmp_path, "hung-model")
    monkeypatch.setenv("GENZOO_REGISTRY", str(catalog))
    registry.reset()
    with MisbehavingHub("hang") as bad:
        monkeypatch.setenv("HF_ENDPOINT", bad.url)
        t0 = time.monotonic()
        result = CliRunner().invoke(cli, ["download", "hung-model"])
        assert time.monotonic() - t0 < 3 * TIMEOUT
    assert result.exit_code == 1, result.output
    line, = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "no answer" in line


# ---- genzoo push --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [None, "hang"])
def test_push_to_an_unreachable_or_hanging_hub_is_one_line(monkeypatch, tmp_path, mode):
    write_tiny_model(tmp_path / "m")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    args = ["push", str(tmp_path / "m"), "user/model"]
    if mode is None:  # connection refused: httpx's ConnectError is no OSError
        monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
        result = CliRunner().invoke(cli, args)
    else:
        with MisbehavingHub(mode) as bad:
            monkeypatch.setenv("HF_ENDPOINT", bad.url)
            t0 = time.monotonic()
            result = CliRunner().invoke(cli, args)
            assert time.monotonic() - t0 < 4 * TIMEOUT
    assert result.exit_code == 1, result.output
    line, = result.output.strip().splitlines()
    assert line.startswith("Error: user/model: upload to") and "hf_test" not in line


# ---- bundled weights ------------------------------------------------------------------------
def _bundle(tmp_path: Path, monkeypatch, name: str) -> tuple[str, dict]:
    """A package ``name`` on sys.path with tiny weights inside: (source, digests). Each test
    takes its own name: an imported package stays in sys.modules, at its first folder."""
    pkg = tmp_path / "site" / name
    digests = write_tiny_model(pkg / "weights" / "tiny")
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return f"pkg://{name}/weights/tiny", digests


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_bundled_file_says_reinstall_not_cache_rm(tmp_path, monkeypatch):
    source, digests = _bundle(tmp_path, monkeypatch, "mybundle")
    hub.fetch(source, digests)
    _tamper(tmp_path / "site" / "mybundle" / "weights" / "tiny" / "model.safetensors")
    with pytest.raises(IntegrityError) as err:
        hub.fetch(source, digests, name="my-bundled")
    msg = str(err.value)
    assert "model.safetensors has sha256" in msg and "cache rm" not in msg
    assert "pip install --force-reinstall mybundle" in msg and "\n" not in msg


def test_genzoo_list_does_not_call_a_tampered_bundle_ready(tmp_path, monkeypatch, fake_plugins):
    fake_plugins("fakegood")  # the tiny-arch architecture
    source, digests = _bundle(tmp_path, monkeypatch, "mylisted")
    catalog = write_catalog(tmp_path / "cat.yaml", [{
        "name": "my-bundled", "family": "tiny", "arch": "tiny-arch", "source": source,
        "files": digests, "package": "mybundle-dist"}])
    monkeypatch.setenv("GENZOO_REGISTRY", str(catalog))
    registry.reset()
    card = registry.get_registry().get("my-bundled")
    assert model_status(card)["status"] == "ready"
    _tamper(tmp_path / "site" / "mylisted" / "weights" / "tiny" / "model.safetensors")
    status = model_status(card)["status"]
    assert status != "ready" and "pip install --force-reinstall mybundle-dist" in status
    result = CliRunner().invoke(cli, ["list"])
    row = next(line for line in result.output.splitlines() if line.startswith("my-bundled"))
    assert "damaged" in row and "ready" not in row
