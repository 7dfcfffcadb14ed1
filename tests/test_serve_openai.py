"""genzoo serve speaks OpenAI's API: the official ``openai`` client lists the models, draws
images and completes prompts against a real server process, and every bad request gets a 4xx
in OpenAI's error shape (never a 500) while the server stays healthy."""
from __future__ import annotations

import base64
import io
import json
import socket
import time

import numpy as np
import pytest
from click.testing import CliRunner

from _serve import Server, get, post, request

from genzoo.cli import cli

openai = pytest.importorskip("openai")
pytest.importorskip("pydantic")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve-openai"), "--models",
                 "gan-mnist,textlm-shakespeare,diffusion-mnist", "--max-tokens", "40",
                 "--max-body", "20000")
    yield srv
    srv.stop()


def client(srv: Server, key: str = "unused") -> "openai.OpenAI":
    """The official client pointed at ``srv`` (no retries: an error must surface at once)."""
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=120)


def assert_openai_error(status: int, body, expected: int, param: str | None = None) -> dict:
    """``body`` is OpenAI's error shape with ``expected`` status and a one-line message."""
    assert status == expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"] and "\n" not in error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def png_pixels(b64: str) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_models_list_in_openai_shape_keeps_genzoo_cards(server):
    models = client(server).models.list()
    ids = [m.id for m in models.data]
    assert ids == ["diffusion-mnist", "gan-mnist", "textlm-shakespeare"]
    assert all(m.object == "model" and m.owned_by == "genzoo" for m in models.data)
    status, raw = get(server.url + "/v1/models")
    assert status == 200 and raw["object"] == "list"
    # genzoo's own listing stays reachable: each entry's "genzoo" key is its list --json row
    listed = {c["name"]: c for c in json.loads(CliRunner().invoke(cli, ["list",
                                                                        "--json"]).output)}
    for entry in raw["data"]:
        assert entry["genzoo"] == json.loads(json.dumps(listed[entry["id"]], default=str))
    # one model: OpenAI's fields beside genzoo's info (card, options schema, serving)
    one = client(server).models.retrieve("gan-mnist")
    assert one.id == "gan-mnist" and one.object == "model" and one.owned_by == "genzoo"
    assert get(server.url + "/v1/models/gan-mnist")[1]["serving"]["formats"]


def test_images_generate_b64_json_equals_genzoo_samples(server):
    result = client(server).images.generate(model="gan-mnist", prompt="", n=2, size="28x28",
                                            response_format="b64_json", extra_body={"seed": 5})
    pixels = [png_pixels(d.b64_json) for d in result.data]
    assert len(pixels) == 2 and pixels[0].shape == (28, 28)
    # the same queue and sampler as genzoo's own route: the same seed gives the same PNGs
    status, own, _ = post(server.url + "/v1/models/gan-mnist/samples",
                          {"n": 2, "seed": 5, "format": "json"})
    assert status == 200
    for mine, theirs in zip(pixels, own["images"]):
        np.testing.assert_array_equal(mine, png_pixels(theirs))
    assert not np.array_equal(pixels[0], pixels[1])


def test_completions_create_is_the_continuation(server):
    c = client(server)
    done = c.completions.create(model="textlm-shakespeare", prompt="ROMEO:", max_tokens=12,
                                temperature=0, seed=3)
    status, own, _ = post(server.url + "/v1/models/textlm-shakespeare/samples",
                          {"seed": 3, "options": {"prompt": "ROMEO:", "max_new_tokens": 12,
                                                  "temperature": 0}})
    assert status == 200 and own["texts"][0].startswith("ROMEO:")
    assert done.choices[0].text == own["texts"][0][len("ROMEO:"):]
    assert done.object == "text_completion" and done.choices[0].finish_reason in ("stop",
                                                                                   "length")
    echoed = c.completions.create(model="textlm-shakespeare", prompt="ROMEO:", max_tokens=12,
                                  temperature=0, echo=True)
    assert echoed.choices[0].text == own["texts"][0]
    pieces = c.completions.create(model="textlm-shakespeare", prompt="ROMEO:", max_tokens=12,
                                  temperature=0, stream=True)
    assert "".join(p.choices[0].text for p in pieces) == done.choices[0].text


@pytest.mark.parametrize("call, kwargs, status, param", [
    ("images", {"model": "nope", "prompt": ""}, 404, "model"),
    ("images", {"model": "gan-mnist", "prompt": "", "size": "64x64"}, 400, "size"),
    ("images", {"model": "gan-mnist", "prompt": "", "size": "big"}, 400, "size"),
    ("images", {"model": "gan-mnist", "prompt": "", "response_format": "url"}, 400,
     "response_format"),
    ("images", {"model": "gan-mnist", "prompt": "a cat"}, 400, "prompt"),
    ("images", {"model": "textlm-shakespeare", "prompt": ""}, 400, "model"),
    ("completions", {"model": "gan-mnist", "prompt": "x"}, 400, "model"),
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "max_tokens": 41}, 400,
     None),
    ("completions", {"model": "nope", "prompt": "x"}, 404, "model"),
])
def test_bad_requests_get_openai_errors(server, call, kwargs, status, param):
    c = client(server)
    create = c.images.generate if call == "images" else c.completions.create
    with pytest.raises(openai.APIStatusError) as info:
        create(**kwargs)
    assert info.value.status_code == status
    assert_openai_error(status, info.value.response.json(), status, param)


@pytest.mark.parametrize("path, body, param", [
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "max_tokens": 5.0},
     "max_tokens"),
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "max_tokens": "5"},
     "max_tokens"),
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "stop": 5}, "stop"),
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "stop": [["x"]]}, "stop"),
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "n": True}, "n"),
    ("completions", {"model": "textlm-shakespeare", "prompt": "x", "stream": True, "n": 2},
     "n"),
    ("completions", {"model": "textlm-shakespeare"}, "prompt"),
    ("images/generations", {"model": "gan-mnist", "n": 1.5}, "n"),
    ("images/generations", [1, 2], None),
    ("chat/completions", {"model": "textlm-shakespeare", "messages": []}, "messages"),
    ("chat/completions", {"model": "gan-mnist", "messages": [{"role": "user",
                                                              "content": "hi"}]}, "model"),
])
def test_strict_types_and_bad_bodies_are_400(server, path, body, param):
    status, reply, _ = post(server.url + "/v1/" + path, body)
    assert_openai_error(status, reply, 400, param)


def test_fields_clients_send_are_ignored_not_refused(server):
    body = {"model": "textlm-shakespeare", "prompt": "A", "max_tokens": 3, "temperature": 0,
            "user": "u1", "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": {},
            "logprobs": None, "suffix": None}
    status, reply, _ = post(server.url + "/v1/completions", body)
    assert status == 200, reply
    assert reply["usage"]["total_tokens"] == (reply["usage"]["prompt_tokens"] +
                                              reply["usage"]["completion_tokens"])


@pytest.mark.parametrize("raw, headers, status", [
    (b'{"model": "gan-mnist"}', {"Content-Type": "text/plain"}, 415),
    (b"[" * 5000 + b"]" * 5000, {}, 400),
    (json.dumps({"model": "gan-mnist", "prompt": "x" * 30000}).encode(), {}, 413),
    (b'{"model": "gan-mnist", ', {}, 400),
], ids=["text-plain", "deep-json", "over-max-body", "broken-json"])
def test_body_faults_get_openai_errors(server, raw, headers, status):
    got, reply, _ = request(server.url + "/v1/images/generations", raw,
                            {"Content-Type": "application/json", **headers})
    assert_openai_error(got, json.loads(reply), status)


def test_client_hanging_up_mid_body_is_not_an_error(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"mo")
    time.sleep(0.5)
    assert "Traceback" not in server.log() and "internal error" not in server.log()
    assert server.health()["status"] == "ok"


def test_openapi_is_generated_from_the_models(server):
    status, schema = get(server.url + "/openapi.json")
    assert status == 200
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions",
            "/v1/images/generations", "/v1/models/{name}/samples"} <= set(schema["paths"])
    from genzoo.serve.schemas import ChatCompletionRequest
    generated = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert generated["properties"].keys() == ChatCompletionRequest.model_json_schema(
        ref_template="#/components/schemas/{model}")["properties"].keys()
    ref = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    assert ref["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")


def test_server_healthy_after_the_bad_requests(server):
    health = server.health()
    assert health["status"] == "ok" and health["queue"]["errors"] == 0
    assert "internal error" not in server.log() and "Traceback" not in server.log()
    assert client(server).images.generate(model="gan-mnist", prompt="", n=1).data


def test_bearer_token_guards_the_openai_routes(tmp_path):
    srv = Server(tmp_path, "--models", "gan-mnist", "--token", "t0ken-for-the-test")
    try:
        with pytest.raises(openai.AuthenticationError):
            client(srv, "wrong").images.generate(model="gan-mnist", prompt="")
        with pytest.raises(openai.AuthenticationError):
            client(srv, "wrong").models.list()
        status, _, _ = request(srv.url + "/v1/chat/completions", {"model": "gan-mnist"})
        assert status == 401
        assert [m.id for m in client(srv, "t0ken-for-the-test").models.list().data] == [
            "gan-mnist"]
        assert client(srv, "t0ken-for-the-test").images.generate(model="gan-mnist",
                                                                 prompt="").data
    finally:
        srv.stop()


@pytest.mark.slow  # diffusers in two processes and a pipeline load: about 40 s on 2 cores
def test_images_generate_on_a_text_to_image_pipeline(tmp_path):
    """``prompt`` reaches the model's prompt option and ``size`` its height and width: the
    PNGs equal genzoo's own route given those options."""
    pytest.importorskip("diffusers")
    pytest.importorskip("open_clip")
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "diffusion" /
                           "tests"))
    from _tiny_sd import tiny_sd
    folder, _ = tiny_sd(tmp_path / "pipe")
    srv = Server(tmp_path, "--models", "gan-mnist", "--allow-folders")
    try:
        result = client(srv).images.generate(
            model=str(folder), prompt="a photo of a cat", size="16x32", n=2,
            extra_body={"seed": 3, "options": {"steps": 2}})
        status, own, _ = post(srv.url + "/v1/models/" + str(folder) + "/samples",
                              {"n": 2, "seed": 3, "format": "json", "options": {
                                  "prompt": "a photo of a cat", "height": 32, "width": 16,
                                  "steps": 2}})
        assert status == 200, own
        pixels = [png_pixels(d.b64_json) for d in result.data]
        assert pixels[0].shape == (32, 16, 3)
        for mine, theirs in zip(pixels, own["images"]):
            np.testing.assert_array_equal(mine, png_pixels(theirs))
        other = client(srv).images.generate(model=str(folder), prompt="a red house",
                                            size="16x32", extra_body={"seed": 3,
                                                                      "options": {"steps": 2}})
        assert not np.array_equal(png_pixels(other.data[0].b64_json), pixels[0])
    finally:
        srv.stop()


def test_deadline_and_a_leaving_client_stop_the_work(tmp_path):
    """Past --timeout a reply is a 504 in OpenAI's shape (a stream ends with an error event);
    a streaming client that leaves stops its generation; the server serves on."""
    srv = Server(tmp_path, "--models", "textlm-shakespeare", "--timeout", "0.5",
                 "--max-tokens", "100000")
    long = {"model": "textlm-shakespeare", "prompt": "ROMEO:", "max_tokens": 100000}
    try:
        t0 = time.monotonic()
        status, reply, _ = post(srv.url + "/v1/completions", long)
        assert_openai_error(status, reply, 504)
        assert time.monotonic() - t0 < 10
        _, raw, _ = request(srv.url + "/v1/completions", {**long, "stream": True})
        events = [e for e in raw.decode().split("\n\n") if e]
        assert json.loads(events[-1][len("data: "):])["error"]["code"] == "timeout"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            body = json.dumps({**long, "stream": True}).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            seen = b""
            while b"data: " not in seen:  # the headers may come alone, then the first event
                seen += s.recv(4096) or b"closed"
                assert not seen.endswith(b"closed"), seen
            # generating; now hang up
        deadline = time.monotonic() + 5
        while srv.health()["queue"]["cancelled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        queue = srv.health()["queue"]
        assert queue["cancelled"] >= 1 and queue["errors"] == 0
        quick = client(srv).completions.create(model="textlm-shakespeare", prompt="A",
                                               max_tokens=3)
        assert quick.choices[0].text
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()
