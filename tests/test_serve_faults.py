"""genzoo serve against hostile and careless clients on loopback (issue 23's probes): every
bad request gets a one-line 4xx or is dropped quietly, work stops when nobody waits for it,
and after each fault the server still answers /healthz and a small sample request."""
from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import socket
import threading
import time

import pytest

from _serve import Server, assert_one_line_error, get, post, request

TEXT = "/v1/models/textlm-shakespeare/samples"
DIGITS = "/v1/models/diffusion-mnist/samples"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("faults"), "--max-tokens", "64",
                 "--max-image-pixels", "20000")
    yield srv
    srv.stop()


def lower(headers: dict) -> dict:
    """Header names in lower case (the server sends them so; HTTP names are caseless)."""
    return {k.lower(): v for k, v in headers.items()}


def assert_healthy(srv: Server) -> None:
    """The server answers /healthz and a small text sample, and logged no traceback."""
    status, health = get(srv.url + "/healthz")
    assert status == 200 and health["status"] == "ok"
    status, reply, _ = post(srv.url + TEXT, {"options": {"max_new_tokens": 3}}, timeout=30)
    assert status == 200 and len(reply["texts"]) == 1, reply
    assert "Traceback" not in srv.log() and "RecursionError" not in srv.log()


@pytest.mark.parametrize("tokens", [65, 65.0, "65", "1025", 1025.0, "100000000"])
def test_max_tokens_is_checked_on_the_parsed_value(server, tokens):
    status, reply, _ = post(server.url + TEXT, {"options": {"max_new_tokens": tokens}})
    assert "at most 64" in assert_one_line_error(status, reply, 422)
    assert_healthy(server)


def test_a_parsed_value_under_the_limit_is_used(server):
    status, reply, _ = post(server.url + TEXT, {"options": {"max_new_tokens": "4.0"}})
    assert status == 422  # "4.0" is not a whole number as text
    status, reply, _ = post(server.url + TEXT, {"options": {"max_new_tokens": 4.0}})
    assert status == 200 and reply["meta"]["max_new_tokens"] == 4


@pytest.mark.parametrize("body, says", [
    ({"options": []}, '"options"'), ({"options": 0}, '"options"'),
    ({"options": False}, '"options"'), ({"options": ""}, '"options"'),
    ({"stream": 0}, '"stream"'), ({"stream": 1}, '"stream"'), ({"stream": "true"}, '"stream"'),
    ({"n": 1.5}, "n must be"), ({"n": "1"}, "n must be"),
])
def test_body_fields_are_strictly_typed(server, body, says):
    status, reply, _ = post(server.url + TEXT, body)
    assert says in assert_one_line_error(status, reply, 422)


@pytest.mark.parametrize("stop", [5, [5], True, [["x"]], {"a": "b"}])
def test_stop_must_be_strings(server, stop):
    status, reply, _ = post(server.url + TEXT, {"options": {"stop": stop, "max_new_tokens": 4}})
    assert "stop" in assert_one_line_error(status, reply, 422)
    assert_healthy(server)


def test_stop_strings_are_accepted(server):
    for stop in ("\n", ["\n", "e"]):
        status, reply, _ = post(server.url + TEXT, {"options": {"stop": stop,
                                                               "max_new_tokens": 20}})
        assert status == 200 and "\n" not in reply["texts"][0][1:]


@pytest.mark.parametrize("raw", [b"[" * 50000, b"[" * 65 + b"]" * 65,
                                 b'{"options": {"prompt": ' + b"[" * 3000 + b"]" * 3000 + b"}}"])
def test_deep_json_is_refused_without_recursing(server, raw):
    status, body, _ = request(server.url + TEXT, raw)
    assert "nests deeper than 64" in assert_one_line_error(status, json.loads(body), 422)
    assert_healthy(server)


@pytest.mark.parametrize("raw", [b'{"seed": NaN}', b'{"options": {"temperature": Infinity}}',
                                 b'{"options": {"max_new_tokens": -Infinity}}'])
def test_python_only_constants_are_not_json(server, raw):
    status, body, _ = request(server.url + TEXT, raw)
    assert "not valid JSON" in assert_one_line_error(status, json.loads(body), 422)


def _png(width: int, height: int, mode: str = "1") -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("size", [(15000, 15000), (5000, 4000), (201, 100)])
def test_image_bombs_are_refused_before_decoding(server, size):
    """A 15000x15000 1-bit PNG is ~27 kB and trips PIL's own bomb check; 5000x4000 and
    201x100 pass PIL's but not the server's --max-image-pixels, read from the header."""
    image = _png(*size)
    assert len(image) < 200_000
    t0 = time.monotonic()
    status, reply, _ = post(server.url + DIGITS, {"n": 1, "options": {"init": image,
                                                                     "steps": 2}})
    assert "pixels" in assert_one_line_error(status, reply, 422)
    assert time.monotonic() - t0 < 10
    assert_healthy(server)


def test_a_small_image_is_still_taken(server):
    status, reply, _ = post(server.url + DIGITS, {"n": 1, "format": "json", "options": {
        "init": _png(28, 28, "L"), "steps": 2}})
    assert status == 200 and len(reply["images"]) == 1


def test_a_client_hanging_up_mid_body_is_dropped_quietly(server):
    before = server.log().count("\n")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST " + TEXT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                      b'{"n": 1, ')
            time.sleep(0.1)
    time.sleep(0.5)
    assert server.log().count("\n") - before <= 1, server.log()
    assert_healthy(server)


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded",
                                  "multipart/form-data; boundary=x", None])
def test_a_post_body_must_be_labelled_json(server, kind):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", TEXT, b'{"options": {"max_new_tokens": 2}}',
                 {"Content-Type": kind} if kind else {})
    reply = conn.getresponse()
    assert "application/json" in assert_one_line_error(reply.status, json.loads(reply.read()),
                                                       415)
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    conn.close()


def test_json_with_a_charset_is_json(server):
    status, _, _ = request(server.url + TEXT, b'{"options": {"max_new_tokens": 2}}',
                           {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


def test_cross_origin_requests_are_refused(server):
    status, raw, hdrs = request(server.url + TEXT, b'{"options": {"max_new_tokens": 2}}',
                                {"Origin": EVIL})
    assert "--allow-origin" in assert_one_line_error(status, json.loads(raw), 403)
    hdrs = lower(hdrs)
    assert "access-control-allow-origin" not in hdrs and hdrs["x-content-type-options"]
    status, raw, _ = request(server.url + "/v1/models", headers={"Origin": EVIL})
    assert status == 403
    status, raw, hdrs = request(server.url + TEXT, b'{"options": {"max_new_tokens": 2}}',
                                {"Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200 and "access-control-allow-origin" not in lower(hdrs)  # same origin
    assert_healthy(server)


@pytest.mark.parametrize("path", ["/", "/healthz", "/v1/models", "/static/gallery.js",
                                  "/v1/models/nope"])
def test_every_response_says_nosniff(server, path):
    status, _, hdrs = request(server.url + path)
    assert status in (200, 404) and lower(hdrs)["x-content-type-options"] == "nosniff"


def test_allowed_origin_gets_cors_and_its_preflight_answered():
    """In-process (no port): --allow-origin lists an origin; its preflight and requests pass,
    others are still refused; the token check still applies to the real request."""
    from starlette.testclient import TestClient
    from genzoo.serve.app import ServeConfig, create_app
    app = create_app(ServeConfig(token="t0ken", allow_origins=("https://App.example/",)))
    allowed = {"Origin": "https://app.example"}
    with TestClient(app) as client:
        pre = client.options(TEXT, headers={**allowed, "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "content-type"})
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "Authorization" in pre.headers["access-control-allow-headers"]
        assert client.post(TEXT, json={}, headers=allowed).status_code == 401
        ok = client.post(TEXT, json={"options": {"max_new_tokens": 2}},
                         headers={**allowed, "Authorization": "Bearer t0ken"})
        assert ok.status_code == 200 and ok.headers["x-content-type-options"] == "nosniff"
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = client.post(TEXT, json={}, headers={"Origin": "https://app.example.evil"})
        assert other.status_code == 403


@pytest.fixture()
def slow_server(tmp_path):
    srv = Server(tmp_path, "--timeout", "1.5", "--max-tokens", "1000000")
    yield srv
    srv.stop()


def test_a_body_trickling_past_the_time_limit_is_refused(slow_server):
    """A client that sends its headers and then a byte now and then cannot hold a connection
    (and a request slot) past --timeout: 408 with one line, the server serves on."""
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as s:
        s.sendall(b"POST " + TEXT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        t0 = time.monotonic()
        first = s.recv(4096)
        waited = time.monotonic() - t0
        reply = first
        while b"did not arrive" not in reply:  # headers and body may come in two segments
            more = s.recv(4096)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"did not arrive within 1.5 s" in reply and waited < 5
    assert_healthy(slow_server)


LONG = {"n": 8, "options": {"max_new_tokens": 500000, "prompt": "ROMEO:"}}


def test_past_its_deadline_a_text_job_stops_between_tokens(slow_server):
    srv = slow_server
    post(srv.url + TEXT, {"options": {"max_new_tokens": 2}})  # loaded before the clock runs
    status, reply, _ = post(srv.url + TEXT, LONG)
    assert "longer than 1.5 s" in assert_one_line_error(status, reply, 504)
    t0 = time.monotonic()  # the worker is free again at once, not after 500000 tokens
    status, _, _ = post(srv.url + TEXT, {"options": {"max_new_tokens": 3}})
    assert status == 200 and time.monotonic() - t0 < 1.5
    status, _, _ = post(srv.url + DIGITS, {"n": 1, "options": {"steps": 2}})
    assert status == 200
    queue = srv.health()["queue"]
    assert queue["timed_out"] >= 1 and queue["interrupts"] >= 1 and "Traceback" not in srv.log()


def test_past_its_deadline_an_image_job_stops_between_steps(slow_server):
    """The same interruption for any family: 8 digits of 1000 diffusion steps."""
    srv = slow_server
    post(srv.url + DIGITS, {"n": 1, "options": {"steps": 2}})
    status, reply, _ = post(srv.url + DIGITS, {"n": 8, "options": {"sampler": "ddim",
                                                                    "steps": 1000}})
    assert_one_line_error(status, reply, 504)
    t0 = time.monotonic()
    assert post(srv.url + DIGITS, {"n": 1, "options": {"steps": 2}})[0] == 200
    assert time.monotonic() - t0 < 1.5


def test_a_client_leaving_a_non_streamed_job_stops_it(slow_server):
    srv = slow_server
    post(srv.url + TEXT, {"options": {"max_new_tokens": 2}})
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        body = json.dumps(LONG).encode()
        s.sendall(b"POST " + TEXT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        time.sleep(0.5)
    deadline = time.monotonic() + 5
    while srv.health()["queue"]["cancelled"] < 1:
        assert time.monotonic() < deadline, srv.health()
        time.sleep(0.05)
    t0 = time.monotonic()
    assert post(srv.url + TEXT, {"options": {"max_new_tokens": 3}})[0] == 200
    assert time.monotonic() - t0 < 1.0


def test_a_client_leaving_a_stream_stops_it_quietly(slow_server):
    srv = slow_server
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("POST", TEXT, json.dumps({"stream": True, "options": {
        "max_new_tokens": 500000, "prompt": "ROMEO:"}}), {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200 and reply.read1(64)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 5
    while srv.health()["queue"]["cancelled"] < 1:
        assert time.monotonic() < deadline, srv.health()
        time.sleep(0.05)
    t0 = time.monotonic()
    assert post(srv.url + TEXT, {"options": {"max_new_tokens": 3}})[0] == 200
    assert time.monotonic() - t0 < 1.0 and "Traceback" not in srv.log()


def test_sigterm_stops_the_server_during_a_long_generation(tmp_path):
    srv = Server(tmp_path, "--max-tokens", "1000000")
    try:
        post(srv.url + TEXT, {"options": {"max_new_tokens": 2}})
        replies: list = []
        client = threading.Thread(target=lambda: replies.append(
            post(srv.url + TEXT, LONG, timeout=60)), daemon=True)
        client.start()
        time.sleep(1.0)
        assert srv.proc.poll() is None
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=15)
        assert time.monotonic() - t0 < 4  # not after uvicorn's 5 s of graceful waiting
        client.join(timeout=10)
        status, reply, _ = replies[0]
        assert "shutting down" in assert_one_line_error(status, reply, 503)
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()


def test_a_storm_of_cancels_leaves_the_worker_serving():
    """Cancels landing at every moment of a batch's life (before, during, just after
    generate): the worker survives each, and every job still wanted gets its samples."""
    import asyncio
    import random
    from genzoo.api import load
    from genzoo.serve.queue import Batcher, plan_job
    model = load("textlm-shakespeare")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        batcher = Batcher(max_batch=4, max_queue=64, merge=False)  # text stays in the worker
        rng = random.Random(0)
        try:
            for i in range(40):
                tokens = rng.choice([1, 2, 8, 40])
                job = plan_job(model, "m", 1, i, {"max_new_tokens": tokens}, loop, 30)
                batcher.submit(job)
                await asyncio.sleep(rng.choice([0, 0.001, 0.005, 0.02]))
                batcher.cancel(job)
            keep = plan_job(model, "m", 2, 0, {"max_new_tokens": 3}, loop, 30)
            batcher.submit(keep)
            samples = await asyncio.wait_for(keep.future, 30)
            assert len(samples.texts) == 2 and batcher.thread.is_alive()
            assert batcher.current is None or batcher.current == [keep]
        finally:
            batcher.stop()
        assert not batcher.thread.is_alive()

    asyncio.run(run())


def _idle_batcher_with_a_stale_batch():
    """A Batcher whose worker waits for work, told that a (cancelled) batch runs."""
    from genzoo.serve.queue import Batcher
    batcher = Batcher(merge=False)  # text jobs stay here, not in genzoo.serve.stepping
    while batcher.thread.ident is None or not batcher.cond._waiters:  # the worker waits
        time.sleep(0.01)
    stale = type("StaleJob", (), {"cancelled": True})()
    return batcher, stale


def _serve_one(batcher) -> None:
    import asyncio
    from genzoo.api import load
    from genzoo.serve.queue import plan_job

    async def run() -> None:
        job = plan_job(load("textlm-shakespeare"), "m", 1, 0, {"max_new_tokens": 2},
                       asyncio.get_running_loop(), 30)
        batcher.submit(job)
        assert len((await asyncio.wait_for(job.future, 30)).texts) == 1
    asyncio.run(run())


def test_an_interrupt_withdrawn_with_its_batch_never_lands():
    batcher, stale = _idle_batcher_with_a_stale_batch()
    try:
        with batcher.cond:
            batcher.current = [stale]
            batcher._interrupt()
            batcher._leave_batch()  # the batch ended before the worker ran a line
        _serve_one(batcher)
        assert batcher.snapshot()["interrupts_outside_generate"] == 0
        assert batcher.thread.is_alive()
    finally:
        batcher.stop()


def test_an_interrupt_landing_outside_generate_does_not_kill_the_worker():
    batcher, stale = _idle_batcher_with_a_stale_batch()
    try:
        with batcher.cond:
            batcher.current = [stale]
            batcher._interrupt()  # never withdrawn: it lands in the idle worker's wait
            batcher.cond.notify_all()
        _serve_one(batcher)
        assert batcher.snapshot()["interrupts_outside_generate"] == 1
        assert batcher.thread.is_alive()
    finally:
        batcher.stop()


def test_a_job_split_over_batches_keeps_what_each_batch_recorded():
    """Usage figures a model records per batch (``to_samples``' meta) reach the response:
    per-sample lists joined in order, scalars as the first batch has them, ``start`` not."""
    import asyncio
    from genzoo.api import load
    from genzoo.samples import Samples
    from genzoo.serve.queue import _joined, plan_job

    async def run() -> Samples:
        job = plan_job(load("textlm-shakespeare"), "m", 3, 0, {"max_new_tokens": 2},
                       asyncio.get_running_loop(), 30)
        job.parts = [Samples(texts=["a", "b"], meta={**job.meta, "start": 0, "prompt_tokens": 1,
                                                     "finish_reasons": ["stop", "length"]}),
                     Samples(texts=["c"], meta={**job.meta, "start": 2, "prompt_tokens": 1,
                                                "finish_reasons": ["stop"]})]
        return _joined(job)

    joined = asyncio.run(run())
    assert joined.texts == ["a", "b", "c"] and "start" not in joined.meta
    assert joined.meta["finish_reasons"] == ["stop", "length", "stop"]
    assert joined.meta["prompt_tokens"] == 1 and joined.meta["seed"] == 0
