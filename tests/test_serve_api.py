"""genzoo serve, the API: listing, cards, formats, errors, and samples identical to
``genzoo sample``'s files (a real server process on 127.0.0.1)."""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from _serve import Server, assert_one_line_error, get, post, request

from genzoo.cli import cli


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"), "--max-batch", "8", "--max-n", "64",
                 "--max-body", "4096", "--max-tokens", "300")
    yield srv
    srv.stop()


def cli_sample(tmp_path, *args: str) -> None:
    """`genzoo sample ARGS` as a user runs it: its own process, with the server's thread count
    and layout setting (kernels round differently at other thread counts)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENZOO_LEVERS": "off"}
    result = subprocess.run([sys.executable, "-m", "genzoo", "sample", *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_healthz_and_openapi(server):
    status, health = get(server.url + "/healthz")
    assert status == 200 and health["status"] == "ok" and health["auth"] is False
    status, schema = get(server.url + "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    assert {"/healthz", "/v1/models", "/v1/models/{name}",
            "/v1/models/{name}/samples"} <= set(schema["paths"])
    assert "503" in schema["paths"]["/v1/models/{name}/samples"]["post"]["responses"]


def test_models_is_genzoo_list_json(server):
    """OpenAI's list shape; each entry's "genzoo" key is that model's `genzoo list --json`."""
    listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).output)
    status, served = get(server.url + "/v1/models")
    assert status == 200 and served["object"] == "list"
    assert [e["id"] for e in served["data"]] == [c["name"] for c in listed]
    assert [e["genzoo"] for e in served["data"]] == json.loads(json.dumps(listed, default=str))


def test_model_info_has_options_and_capabilities(server):
    status, card = get(server.url + "/v1/models/diffusion-mnist")
    info = json.loads(CliRunner().invoke(cli, ["info", "diffusion-mnist", "--json"]).output)
    # the same fields as genzoo info (values compared where other work cannot change them),
    # plus what the server adds: how it serves the model, and OpenAI's model object fields
    openai_fields = {"id": "diffusion-mnist", "object": "model", "owned_by": "genzoo"}
    assert status == 200 and set(card) - {"serving", "created", *openai_fields} == set(info)
    assert {k: card[k] for k in openai_fields} == openai_fields
    assert [card[k] for k in ("name", "arch", "options")] == [info[k] for k in
                                                             ("name", "arch", "options")]
    assert {"sampler", "steps"} <= {o["name"] for o in card["options"]}
    assert card["serving"]["modality"] == "image"
    assert card["serving"]["formats"] == ["png", "npz", "json"]
    assert get(server.url + "/v1/models/gan-mnist")[1]["metrics"]["fd"] > 0
    _, text = get(server.url + "/v1/models/textlm-shakespeare")
    # formats come from the modality: its writers' suffixes, then json (the default for texts)
    assert text["serving"] == {**text["serving"], "modality": "text", "stream": True,
                               "formats": ["txt", "jsonl", "json"], "default_format": "json",
                               "default_n": 1}
    assert card["serving"]["default_format"] == "png" and card["serving"]["default_n"] == 16
    assert card["serving"]["sample"] == {"key": "images", "html": '<img src="{src}" alt="{name}">',
                                         "suffix": ".png", "content_type": "image/png",
                                         "json": "file"}
    assert text["serving"]["sample"]["json"] == "value"


@pytest.mark.parametrize("name", ["nope", "/etc", "..%2F..%2Fetc", "hf:%2F%2Fx%2Fy"])
def test_unknown_model_or_path_is_404(server, name):
    status, body, _ = post(server.url + f"/v1/models/{name}/samples", {"n": 1})
    assert "not a model this server serves" in assert_one_line_error(status, body, 404)
    status, body = get(server.url + f"/v1/models/{name}")
    assert_one_line_error(status, body, 404)


@pytest.mark.parametrize("body, says", [
    ({"n": 0}, "n must be"), ({"n": 65}, "n must be"), ({"n": "4"}, "n must be"),
    ({"n": True}, "n must be"), ({"seed": -1}, "seed"), ({"seed": 2 ** 70}, "seed"),
    ({"options": {"truncation": 3}}, "truncation"), ({"options": {"bogus": 1}}, "bogus"),
    ({"options": {"truncation": "NaN"}}, "truncation"), ({"format": "gif"}, "format"),
    ({"nn": 1}, "unknown field"), ({"options": [1]}, "options"), ([1, 2], "JSON object"),
    ({"stream": True}, "stream"),
])
def test_bad_request_is_422_in_one_line(server, body, says):
    status, reply, _ = post(server.url + "/v1/models/gan-mnist/samples", body)
    assert says in assert_one_line_error(status, reply, 422)


def test_bad_text_requests(server):
    url = server.url + "/v1/models/textlm-shakespeare/samples"
    status, reply, _ = post(url, {"options": {"max_new_tokens": 301}})
    assert "at most 300" in assert_one_line_error(status, reply, 422)
    status, reply, _ = post(url, {"format": "png"})
    assert_one_line_error(status, reply, 422)
    status, reply, _ = post(url, {"n": 2, "stream": True})
    assert_one_line_error(status, reply, 422)


def test_invalid_json_and_huge_body(server):
    status, raw, _ = request(server.url + "/v1/models/gan-mnist/samples", b"{not json")
    assert_one_line_error(status, json.loads(raw), 422)
    status, raw, _ = request(server.url + "/v1/models/gan-mnist/samples",
                             json.dumps({"n": 1, "options": {"x": "y" * 5000}}).encode())
    assert "over 4096 bytes" in assert_one_line_error(status, json.loads(raw), 413)
    # chunked, with no Content-Length to trust: the server counts what arrives
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/v1/models/gan-mnist/samples")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    for chunk in [b'{"n": 1, "options": {"x": "'] + [b"y" * 1000] * 5 + [b'"}}']:
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    reply = conn.getresponse()
    assert "over 4096 bytes" in assert_one_line_error(reply.status, json.loads(reply.read()), 413)


def test_png_npz_json_are_what_genzoo_sample_writes(server, tmp_path):
    """A request alone in its batch: the same bytes as the CLI's files, format by format."""
    opts = {"steps": 4}
    url = server.url + "/v1/models/diffusion-mnist/samples"
    status, png, headers = post(url, {"n": 3, "seed": 5, "options": opts, "format": "png"})
    assert status == 200 and headers["content-type"] == "image/png"
    cli_sample(tmp_path, "diffusion-mnist", "-n", "3", "--seed", "5", "--steps", "4",
               "-o", str(tmp_path / "d.png"))
    assert png == (tmp_path / "d.png").read_bytes()
    assert json.loads(headers["x-genzoo-provenance"])["seed"] == "5"

    status, npz, _ = post(url, {"n": 3, "seed": 5, "options": opts, "format": "npz"})
    cli_sample(tmp_path, "diffusion-mnist", "-n", "3", "--seed", "5", "--steps", "4",
               "-o", str(tmp_path / "d.npz"))
    ours, theirs = np.load(io.BytesIO(npz)), np.load(tmp_path / "d.npz")
    assert sorted(ours.files) == sorted(theirs.files) == ["images", "meta"]
    for key in ours.files:  # the zip members' timestamps are the only bytes that differ
        assert ours[key].tobytes() == theirs[key].tobytes()

    status, payload, _ = post(url, {"n": 3, "seed": 5, "options": opts, "format": "json"})
    cli_sample(tmp_path, "diffusion-mnist", "-n", "3", "--seed", "5", "--steps", "4",
               "-o", str(tmp_path / "each") + os.sep)
    files = sorted((tmp_path / "each").glob("*.png"))
    assert [base64.b64decode(p) for p in payload["images"]] == [f.read_bytes() for f in files]
    assert payload["meta"]["seed"] == 5 and payload["meta"]["steps"] == 4


def test_text_txt_and_jsonl_are_what_genzoo_sample_writes(server, tmp_path):
    url = server.url + "/v1/models/textlm-shakespeare/samples"
    body = {"n": 2, "seed": 3, "options": {"prompt": "ROMEO:", "max_new_tokens": 30}}
    status, txt, headers = request(url, json.dumps({**body, "format": "txt"}).encode())
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
    result = CliRunner().invoke(cli, ["sample", "textlm-shakespeare", "-n", "2", "--seed", "3",
                                      "--prompt", "ROMEO:", "--max-new-tokens", "30",
                                      "-o", str(tmp_path / "t.txt")])
    assert result.exit_code == 0, result.output
    assert txt == (tmp_path / "t.txt").read_bytes()
    status, lines, _ = request(url, json.dumps({**body, "format": "jsonl"}).encode())
    rows = [json.loads(line) for line in lines.decode().splitlines()]
    assert status == 200 and [r["index"] for r in rows] == [0, 1]
    assert "\n\n".join(r["text"] for r in rows) + "\n" == txt.decode()


def test_text_json_and_stream_equal_genzoo_sample(server):
    url = server.url + "/v1/models/textlm-shakespeare/samples"
    body = {"seed": 3, "options": {"prompt": "ROMEO:", "max_new_tokens": 40}}
    status, payload, _ = post(url, body)
    result = CliRunner().invoke(cli, ["sample", "textlm-shakespeare", "--seed", "3", "--prompt",
                                      "ROMEO:", "--max-new-tokens", "40", "--json"])
    assert status == 200 and payload["texts"] == json.loads(result.output)["texts"]
    status, raw, headers = request(url, json.dumps({**body, "stream": True}).encode())
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in raw.decode().strip().split("\n\n")]
    pieces = [json.loads(e[1][6:])["text"] for e in events if e[0] == "event: piece"]
    assert events[-1][0] == "event: done" and len(pieces) > 5
    assert "".join(pieces) == payload["texts"][0] == json.loads(events[-1][1][6:])["texts"][0]


def test_merged_requests_equal_their_solo_samples(server):
    """Eight concurrent n=1 requests (different seeds) share batches; each one's digit equals
    its solo result to float rounding (kernels sum in another order at another batch size)."""
    url = server.url + "/v1/models/diffusion-mnist/samples"
    before = server.health()["queue"]
    body = lambda seed: {"n": 1, "seed": seed, "options": {"steps": 6}, "format": "npz"}  # noqa
    with ThreadPoolExecutor(8) as pool:
        merged = list(pool.map(lambda s: post(url, body(s)), range(8)))
    after = server.health()["queue"]
    assert all(status == 200 for status, _, _ in merged)
    assert after["merged_batches"] > before["merged_batches"]
    assert after["batches"] - before["batches"] < 8
    for seed, (_, npz, _) in enumerate(merged):
        solo = np.load(io.BytesIO(post(url, body(seed))[1]))["images"]
        ours = np.load(io.BytesIO(npz))
        np.testing.assert_allclose(ours["images"], solo, rtol=0, atol=1e-4)
        assert json.loads(str(ours["meta"]))["seed"] == str(seed)


def test_a_request_split_over_batches_equals_genzoo_sample(server, tmp_path):
    """n=12 on a server batching at most 8: samples 8-11 come from a second call, drawn
    from generators (seed, 8..11), as the CLI's one call of 12 draws them."""
    url = server.url + "/v1/models/diffusion-mnist/samples"
    status, npz, _ = post(url, {"n": 12, "seed": 4, "options": {"steps": 4}, "format": "npz"})
    cli_sample(tmp_path, "diffusion-mnist", "-n", "12", "--seed", "4", "--steps", "4",
               "-o", str(tmp_path / "d.npz"))
    np.testing.assert_allclose(np.load(io.BytesIO(npz))["images"],
                               np.load(tmp_path / "d.npz")["images"], rtol=0, atol=1e-4)
