"""genzoo serve under load: batching, overload (503), cancellation, time limits, the token,
--exact, the model pool's budget, and the command without its extra."""
from __future__ import annotations

import http.client
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from _serve import Server, assert_one_line_error, get, post, request

from genzoo.cli import cli

DIGITS = "/v1/models/diffusion-mnist/samples"


def slow(seed: int, steps: int = 200) -> dict:
    """A diffusion request that keeps the worker busy for a while (DDIM at many steps)."""
    return {"n": 1, "seed": seed, "options": {"sampler": "ddim", "steps": steps},
            "format": "json"}


def wait_for(predicate, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_load_merges_concurrent_requests(tmp_path):
    srv = Server(tmp_path, "--max-batch", "16")
    try:
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda s: post(srv.url + DIGITS, {
                "n": 1, "seed": s, "options": {"steps": 8}, "format": "json"}), range(16)))
        assert [r[0] for r in replies] == [200] * 16
        assert [r[1]["meta"]["seed"] for r in replies] == list(range(16))
        queue = srv.health()["queue"]
        assert queue["samples"] == 16 and queue["batches"] < 16 and queue["max_batch_seen"] > 1
    finally:
        srv.stop()


def test_overload_is_503_with_retry_after(tmp_path):
    srv = Server(tmp_path, "--max-batch", "1", "--max-queue", "2")
    try:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda s: post(srv.url + DIGITS, slow(s, 20)), range(8)))
        codes = sorted(r[0] for r in replies)
        assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
        for status, body, headers in replies:
            if status == 503:
                assert "busy" in assert_one_line_error(status, body, 503)
                assert int(headers["retry-after"]) >= 1
        assert srv.health()["queue"]["rejected"] == codes.count(503)
    finally:
        srv.stop()


def test_a_queued_request_whose_client_leaves_is_never_generated(tmp_path):
    srv = Server(tmp_path, "--max-batch", "1")
    try:
        post(srv.url + DIGITS, slow(0, 2))  # the model is loaded before the clock matters
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, srv.url + DIGITS, slow(1))
            wait_for(lambda: srv.health()["queue"]["queued"] == 1)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            conn.request("POST", DIGITS, json.dumps(slow(2)),
                         {"Content-Type": "application/json"})
            wait_for(lambda: srv.health()["queue"]["queued"] == 2)
            conn.close()  # the client goes away while its request waits
            wait_for(lambda: srv.health()["queue"]["cancelled"] == 1)
            assert first.result(timeout=120)[0] == 200
        queue = srv.health()["queue"]
        assert queue["samples"] == 2 and queue["queued"] == 0  # the warm-up and the first
    finally:
        srv.stop()


def test_a_stream_whose_client_leaves_stops_generating(tmp_path):
    srv = Server(tmp_path)
    try:
        url = "/v1/models/textlm-shakespeare/samples"
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("POST", url, json.dumps({"stream": True, "options": {
            "max_new_tokens": 1000, "temperature": 0.8}}), {"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read(12) == b"event: piece"
        conn.close()
        wait_for(lambda: srv.health()["queue"]["cancelled"] == 1, 30)
        t0 = time.monotonic()  # the worker is free again: a short request is served at once
        status, body, _ = post(srv.url + url, {"options": {"max_new_tokens": 5}})
        assert status == 200 and time.monotonic() - t0 < 10
        assert srv.health()["queue"]["samples"] == 1  # the cut stream made no sample
    finally:
        srv.stop()


def test_a_request_over_its_time_is_504(tmp_path):
    srv = Server(tmp_path, "--timeout", "1")
    try:
        status, body, _ = post(srv.url + DIGITS, {**slow(0, 1000), "n": 4})
        assert "longer than 1 s" in assert_one_line_error(status, body, 504)
    finally:
        srv.stop()


def test_token_is_required_and_never_logged(tmp_path):
    token = "s3cret-token-0123456789"
    srv = Server(tmp_path, "--token", token)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            status, body = get(srv.url + "/v1/models", headers)
            assert_one_line_error(status, body, 401)
            status, body, _ = post(srv.url + "/v1/models/gan-mnist/samples", {"n": 1}, headers)
            assert_one_line_error(status, body, 401)
        auth = {"Authorization": f"Bearer {token}"}
        assert get(srv.url + "/v1/models", auth)[0] == 200
        assert post(srv.url + "/v1/models/gan-mnist/samples", {"n": 2}, auth)[0] == 200
        assert get(srv.url + "/healthz")[1]["auth"] is True
        assert request(srv.url + "/")[0] == 200  # the page is open; it asks for the token
    finally:
        srv.stop()
    log = srv.log()
    assert "bearer token required" in log and token not in log


def test_binding_off_loopback_needs_a_token():
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "1"],
                                env={"GENZOO_SERVE_TOKEN": ""})
    assert result.exit_code == 1
    assert "--token" in result.output and "Traceback" not in result.output


def test_exact_mode_gives_cli_bytes_under_concurrency(tmp_path):
    srv = Server(tmp_path, "--exact", "--max-batch", "16")
    try:
        body = lambda s: {"n": 1, "seed": s, "options": {"steps": 5}, "format": "png"}  # noqa
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda s: post(srv.url + DIGITS, body(s)), range(6)))
        assert srv.health()["queue"]["merged_batches"] == 0
        for seed, (status, png, _) in enumerate(replies):
            out = tmp_path / f"{seed}.png"
            result = CliRunner().invoke(cli, ["sample", "diffusion-mnist", "-n", "1", "--seed",
                                              str(seed), "--steps", "5", "-o", str(out)])
            assert result.exit_code == 0 and status == 200
            assert png == out.read_bytes()
    finally:
        srv.stop()


def test_pool_keeps_models_and_evicts_the_least_recently_used():
    from genzoo.serve.pool import ModelPool, model_bytes
    pool = ModelPool(budget_bytes=1, device="cpu")
    gan = pool.get("gan-mnist")
    assert pool.get("gan-mnist") is gan and pool.loads == 1  # loaded once, kept
    pool.get("vae-mnist")
    assert pool.loaded() == ["vae-mnist"] and pool.evictions == 1
    roomy = ModelPool(budget_bytes=model_bytes(gan) * 10, device="cpu")
    roomy.get("gan-mnist"), roomy.get("vae-mnist"), roomy.get("gan-mnist")
    assert roomy.loaded() == ["vae-mnist", "gan-mnist"] and roomy.evictions == 0


def test_pool_serves_catalog_names_only():
    from genzoo.errors import UnknownModelError
    from genzoo.serve.pool import ModelPool
    pool = ModelPool(patterns="*mnist*")
    assert "textlm-shakespeare" not in pool.names() and "gan-mnist" in pool.names()
    for name in ("textlm-shakespeare", "/tmp", os.getcwd(), "../registry.yaml"):
        with pytest.raises(UnknownModelError):
            pool.check(name)
    assert ModelPool(allow_folders=True).check(os.getcwd()) == os.getcwd()


def test_serve_without_its_extra_says_the_pip_line(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "starlette" else real(name, *a))
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1 and 'pip install "genzoo[serve]"' in result.output


def test_the_cli_imports_neither_the_server_nor_torch():
    import subprocess
    import sys
    code = ("import sys, genzoo.cli.root; bad = {'torch', 'starlette', 'uvicorn', 'genzoo.serve.app'} "
            "& set(sys.modules); assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
