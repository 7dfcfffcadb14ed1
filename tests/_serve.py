"""A real ``genzoo serve`` process for the serve tests: bound to 127.0.0.1 on a free port,
stopped (and its log kept) when the test ends, every wait bounded in time."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_log(log_file, path: Path) -> str:
    """What a subprocess logged to ``path`` so far (``log_file`` flushed first)."""
    if not log_file.closed:
        log_file.flush()
    return path.read_text(errors="replace")


def stop_process(proc: subprocess.Popen, log_file, sig: int, timeout: float) -> None:
    """Stop ``proc`` with ``sig``, killed if it lingers past ``timeout`` s; close its log."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    log_file.close()


class Server:
    """``genzoo serve ARGS`` in a subprocess; ``url``, ``log()``, ``stop()``."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genzoo", "serve", "--port", str(self.port), *args],
            stdout=self.log_file, stderr=subprocess.STDOUT,
            # GENZOO_LEVERS=off as the tests' own processes: the same layout, the same bytes
            env={**os.environ, "OMP_NUM_THREADS": "1", "GENZOO_LEVERS": "off", **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"genzoo serve exited: {self.log()}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"genzoo serve did not start in 60 s: {self.log()}")

    def log(self) -> str:
        return read_log(self.log_file, self.log_path)

    def stop(self) -> None:
        stop_process(self.proc, self.log_file, signal.SIGINT, 20)

    def health(self) -> dict:
        return get(self.url + "/healthz")[1]


def request(url: str, body: dict | bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, bytes, dict]:
    """(status, body bytes, headers) of a GET (body None) or a JSON POST; HTTP errors too."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    status, raw, _ = request(url, headers=headers)
    return status, json.loads(raw)


def post(url: str, body, headers: dict | None = None, timeout: float = 60):
    """(status, JSON or raw bytes, headers) of a sampling request."""
    status, raw, hdrs = request(url, body, headers, timeout)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw, hdrs


def assert_one_line_error(status: int, body, expected: int) -> str:
    """The response is ``{"error": "one line"}`` with ``expected`` status, no traceback."""
    assert status == expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


# ---- the gallery, in Debian's Chromium (never a browser build Playwright downloads) ---------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = ("Debian's chromium is not installed (.ci/run installs it: apt-get install -y "
               "chromium)")


@contextlib.contextmanager
def gallery(url: str) -> Iterator[tuple[object, list[str]]]:
    """The gallery at ``url`` open in headless Chromium, once its status line counts every
    card (they are appended one by one); yields (page, the page's JavaScript errors so far)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, timeout=60_000)
            page.wait_for_function(
                "/^\\d+ models$/.test(document.getElementById('status').textContent)",
                timeout=60_000)
            yield page, errors
        finally:
            browser.close()


def generate(card, n: int | None = None, seed: int | None = None, timeout: int = 60_000,
             **options: str) -> None:
    """Fill a gallery card's n, seed and ``options`` fields, press Generate and wait (up to
    ``timeout`` ms) until its provenance shows."""
    for name, value in (("n", n), ("seed", seed)):
        if value is not None:
            card.locator(f"input[name={name}]").fill(str(value))
    for name, value in options.items():
        card.locator(f"[data-option={name}]").fill(value)
    card.locator("button").click()
    card.locator(".provenance tr").first.wait_for(timeout=timeout)
