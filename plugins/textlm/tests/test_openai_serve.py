"""A chat model behind ``genzoo serve``, talked to with the official ``openai`` client: greedy
replies (streamed and not) equal transformers' ``generate`` on ``apply_chat_template`` of the
same messages, token counts and finish reasons are reported, and bad conversations get a 4xx
in OpenAI's error shape while the server stays healthy."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
transformers = pytest.importorskip("transformers")
pytest.importorskip("starlette")

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # the serve helpers

from _serve import Server, post  # noqa: E402

from _tiny_chat import build_tiny_chat  # noqa: E402

LIMIT = 24  # the server's --max-tokens
CONVERSATIONS = [
    [{"role": "user", "content": "What is a list?"}],
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "Tell me about loops"},
     {"role": "assistant", "content": "A loop repeats."},
     {"role": "user", "content": "And a while loop?"}],
    [{"role": "user", "content": "Write a poem about the sea, please."}],
]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    return build_tiny_chat(tmp_path_factory.mktemp("tiny-chat") / "chat")


@pytest.fixture(scope="module")
def server(tmp_path_factory, chat_model):
    srv = Server(tmp_path_factory.mktemp("serve-chat"), "--models", "textlm-shakespeare",
                 "--allow-folders", "--max-tokens", str(LIMIT))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def hf(chat_model):
    """transformers' own model and tokenizer for the same folder: the oracle."""
    tok = transformers.AutoTokenizer.from_pretrained(chat_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(chat_model).eval()
    return model, tok


def oracle(hf, ids: list[int], max_new: int) -> tuple[str, int, int, str]:
    """transformers' greedy reply to ``ids``: (text, prompt tokens, new tokens, finish)."""
    import torch
    model, tok = hf
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                           dtype=torch.long),
                             max_new_tokens=max_new, do_sample=False)
    new = out[0, len(ids):].tolist()
    ends = set(model.generation_config.eos_token_id)
    finish = "stop" if new and new[-1] in ends else "length"
    counted = len(new) - (finish == "stop")  # the end token is not part of the reply
    return tok.decode(new, skip_special_tokens=True), len(ids), counted, finish


def chat_ids(hf, messages) -> list[int]:
    ids = hf[1].apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def client(srv: Server) -> "openai.OpenAI":
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_greedy_chat_equals_transformers_generate(server, chat_model, hf, index):
    messages = CONVERSATIONS[index]
    text, prompt_tokens, new_tokens, finish = oracle(hf, chat_ids(hf, messages), LIMIT)
    reply = client(server).chat.completions.create(
        model=str(chat_model), messages=messages, temperature=0, max_tokens=LIMIT)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == text
    assert choice.finish_reason == finish
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt_tokens,
                                                                          new_tokens)
    assert reply.usage.total_tokens == prompt_tokens + new_tokens


def test_both_finish_reasons_are_seen(server, chat_model, hf):
    finishes = {oracle(hf, chat_ids(hf, m), LIMIT)[3] for m in CONVERSATIONS}
    assert finishes == {"stop", "length"}  # the tiny model ends some replies, not others


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_streamed_chat_joins_to_the_same_reply(server, chat_model, hf, index):
    messages = CONVERSATIONS[index]
    text, prompt_tokens, new_tokens, finish = oracle(hf, chat_ids(hf, messages), LIMIT)
    chunks = list(client(server).chat.completions.create(
        model=str(chat_model), messages=messages, temperature=0, max_tokens=LIMIT,
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert [c.choices[0].finish_reason for c in chunks][-1] == finish
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].usage.completion_tokens == new_tokens
    assert chunks[-1].usage.prompt_tokens == prompt_tokens


def test_stream_ends_with_done(server, chat_model):
    import urllib.request
    import json
    body = json.dumps({"model": str(chat_model), "stream": True, "max_tokens": 4,
                       "messages": CONVERSATIONS[0]}).encode()
    req = urllib.request.Request(server.url + "/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in r.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_completions_on_a_chat_model_continue_the_prompt(server, chat_model, hf):
    prompt = "A list is"
    ids = hf[1](prompt)["input_ids"]
    text, prompt_tokens, new_tokens, finish = oracle(hf, ids, 10)
    done = client(server).completions.create(model=str(chat_model), prompt=prompt,
                                             max_tokens=10, temperature=0)
    assert done.choices[0].text == text and done.choices[0].finish_reason == finish
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (prompt_tokens,
                                                                        new_tokens)


def test_n_samples_are_seeded(server, chat_model):
    c = client(server)
    kwargs = dict(model=str(chat_model), messages=CONVERSATIONS[2], temperature=1.0,
                  max_tokens=8, n=3)
    first = c.chat.completions.create(seed=11, **kwargs)
    again = c.chat.completions.create(seed=11, **kwargs)
    assert [x.index for x in first.choices] == [0, 1, 2]
    assert [x.message.content for x in first.choices] == [x.message.content
                                                          for x in again.choices]
    assert len({x.message.content for x in first.choices}) > 1


def bad_requests(chat_model: Path) -> list[tuple[dict, int, str | None]]:
    name = str(chat_model)
    user = [{"role": "user", "content": "hi"}]
    return [
        ({"model": name, "messages": user, "max_tokens": LIMIT + 1}, 400, None),
        ({"model": name, "messages": user, "max_completion_tokens": LIMIT + 1}, 400, None),
        ({"model": name, "messages": user, "max_tokens": 5.0}, 400, "max_tokens"),
        ({"model": name, "messages": []}, 400, "messages"),
        ({"model": name, "messages": [{"role": "robot", "content": "hi"}]}, 400, None),
        ({"model": name, "messages": [{"role": "user"}]}, 400, None),
        ({"model": name, "messages": [{"role": "user", "content": 5}]}, 400, "messages"),
        ({"model": name, "messages": [{"role": "user", "content": "word " * 2000}]}, 400,
         None),
        ({"model": name, "messages": user, "stream": True, "n": 2}, 400, "n"),
        ({"model": name + "-nope", "messages": user}, 404, "model"),
        ({"model": "textlm-shakespeare", "messages": user}, 400, None),
    ]


def test_bad_conversations_get_4xx_in_openai_shape(server, chat_model):
    for body, status, param in bad_requests(chat_model):
        got, reply, _ = post(server.url + "/v1/chat/completions", body)
        assert got == status, (body, got, reply)
        error = reply["error"]
        assert set(error) == {"message", "type", "param", "code"}, reply
        assert error["message"] and "\n" not in error["message"], reply
        assert param is None or error["param"] == param, (body, error)
    with pytest.raises(openai.BadRequestError, match="robot"):
        client(server).chat.completions.create(
            model=str(chat_model), messages=[{"role": "robot", "content": "hi"}])


def test_server_healthy_after(server, chat_model):
    health = server.health()
    assert health["status"] == "ok" and health["queue"]["errors"] == 0
    assert "Traceback" not in server.log()
    reply = client(server).chat.completions.create(
        model=str(chat_model), messages=CONVERSATIONS[0], temperature=0, max_tokens=3)
    assert reply.choices[0].message.content is not None


def test_stop_strings_cut_the_reply(server, chat_model, hf):
    messages = next(m for m in CONVERSATIONS
                    if oracle(hf, chat_ids(hf, m), LIMIT)[3] == "length")
    text = oracle(hf, chat_ids(hf, messages), LIMIT)[0]
    # a plain two-letter piece from the middle of the reply, cut at its first occurrence
    stop = next(text[i:i + 2] for i in range(3, len(text) - 1)
                if text[i:i + 2].isascii() and text[i:i + 2].isalpha())
    c = client(server)
    for given in (stop, [stop, "never-in-the-reply"]):
        reply = c.chat.completions.create(model=str(chat_model), messages=messages,
                                          temperature=0, max_tokens=LIMIT, stop=given)
        assert reply.choices[0].message.content == text[:text.find(stop)]
        assert reply.choices[0].finish_reason == "stop"
