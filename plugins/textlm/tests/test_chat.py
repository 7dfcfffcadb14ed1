"""Conversations: transformers as the oracle for chat-template prompts and greedy replies of
the tiny chat model; every end id of the generation config; usage figures; the native GPT
rendering a folder's template as transformers does; one-line refusals of bad messages."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

import genzoo  # noqa: E402
from genzoo.errors import OptionError  # noqa: E402
from genzoo_textlm.model import GPTModel  # noqa: E402
from genzoo_textlm.tokenizer import TextTokenizer  # noqa: E402

from _tiny_chat import CHATML, build_tiny_chat, tiny_chat_tokenizer  # noqa: E402

CONVERSATIONS = [
    ([{"role": "user", "content": "What is a list?"}], None),
    ([{"role": "user", "content": "Tell me about loops"}], "You answer in one line."),
    ([{"role": "user", "content": "What is a tuple?"},
      {"role": "assistant", "content": "An immutable sequence."},
      {"role": "user", "content": "And a set?"}], None),
]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """(folder, genzoo model, transformers model, transformers tokenizer)."""
    folder = build_tiny_chat(tmp_path_factory.mktemp("chat") / "tiny")
    model = genzoo.load(str(folder), device="cpu")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return folder, model, hf, transformers.AutoTokenizer.from_pretrained(folder)


def _oracle(hf, tok, messages, max_new_tokens=24):
    """transformers' greedy reply: (text without special tokens, new ids incl. an end id)."""
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                  return_tensors="pt")
    out = hf.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens)
    new = out[0, enc["input_ids"].shape[1]:].tolist()
    return tok.decode(new, skip_special_tokens=True), new, enc["input_ids"].shape[1]


@pytest.mark.parametrize("messages,system", CONVERSATIONS)
def test_greedy_replies_equal_transformers_generate(chat, messages, system):
    _, model, hf, tok = chat
    full = ([{"role": "system", "content": system}] if system else []) + messages
    want, new, prompt_len = _oracle(hf, tok, full)
    got = model.sample(1, messages=messages, system=system, temperature=0, max_new_tokens=24)
    assert got.texts == [want]
    ended = new[-1] in (tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id)
    assert got.meta["prompt_tokens"] == prompt_len
    assert got.meta["completion_tokens"] == [len(new) - ended]
    assert got.meta["finish_reasons"] == ["stop" if ended else "length"]


def test_a_reply_stops_at_im_end_and_streams_only_the_reply(chat):
    _, model, hf, tok = chat
    messages = [{"role": "user", "content": "Hello there"}]
    want, new, _ = _oracle(hf, tok, messages, 40)
    assert new[-1] == tok.convert_tokens_to_ids("<|im_end|>") and len(new) < 40
    pieces: list[str] = []
    got = model.sample(1, messages=messages, temperature=0, max_new_tokens=40,
                       stream=pieces.append)
    assert got.texts == [want] and "".join(pieces) == want
    assert got.meta["finish_reasons"] == ["stop"]
    assert got.meta["completion_tokens"] == [len(new) - 1]


def test_every_end_id_of_the_generation_config_ends_a_reply(chat, tmp_path):
    folder, model, hf, tok = chat
    messages = CONVERSATIONS[0][0]
    _, new, _ = _oracle(hf, tok, messages, 24)
    assert len(new) == 24  # runs to the limit with the model's own end ids
    extra = new[5]  # the 6th token drawn becomes an end id in a copy of the folder
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    gen = json.loads((copy / "generation_config.json").read_text())
    gen["eos_token_id"] = gen["eos_token_id"] + [extra]
    (copy / "generation_config.json").write_text(json.dumps(gen))
    other = genzoo.load(str(copy), device="cpu")
    got = other.sample(1, messages=messages, temperature=0, max_new_tokens=24)
    hf2 = transformers.AutoModelForCausalLM.from_pretrained(copy).eval()
    _, new2, _ = _oracle(hf2, tok, messages, 24)
    # the end id is an ordinary token here: the reply is what comes before it
    assert new2[-1] == extra and got.texts == [tok.decode(new2[:-1], skip_special_tokens=True)]
    assert got.meta["completion_tokens"] == [new.index(extra)]
    assert got.meta["finish_reasons"] == ["stop"]


def test_usage_covers_every_batch_and_stop_strings_finish_with_stop(chat):
    _, model, _, _ = chat
    messages = CONVERSATIONS[0][0]
    got = model.sample(3, seed=1, messages=messages, max_new_tokens=8, batch_size=2)
    assert len(got.meta["completion_tokens"]) == 3 and len(got.meta["finish_reasons"]) == 3
    alone = model.sample(1, messages=messages, temperature=0, max_new_tokens=24).texts[0]
    cut = model.sample(1, messages=messages, temperature=0, max_new_tokens=24,
                       stop=[alone[6:9], "never there"])
    assert cut.texts == [alone[:alone.index(alone[6:9])]]
    assert cut.meta["finish_reasons"] == ["stop"]
    # a system message with a prompt: the prompt is the user's message
    asked = model.sample(1, system="Be brief.", prompt="What is a list?", temperature=0,
                         max_new_tokens=8)
    assert asked.texts == model.sample(1, messages=[
        {"role": "system", "content": "Be brief."}, messages[0]], temperature=0,
        max_new_tokens=8).texts
    # without messages the text is still prompt + continuation
    plain = model.sample(1, prompt="def f", temperature=0, max_new_tokens=4)
    assert plain.texts[0].startswith("def f") and plain.meta["prompt_tokens"] > 0


def test_a_slice_of_a_batch_keeps_its_rows_usage(chat):
    """A server merging requests into one generate call slices the batch per request
    (genzoo.serve.queue.run_chunks): each slice's samples keep their own usage figures."""
    _, model, _, _ = chat
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    out = model.generate(gens, messages=CONVERSATIONS[0][0], max_new_tokens=6)
    part = model.to_samples(out[1:3], {}, 1)
    assert part.texts == list(out)[1:3]
    assert part.meta["completion_tokens"] == out.completion_tokens[1:3]
    assert part.meta["finish_reasons"] == out.finish_reasons[1:3]
    assert part.meta["prompt_tokens"] == out.prompt_tokens > 0


@pytest.mark.parametrize("options,needle", [
    (dict(messages=[]), "messages is empty"),
    (dict(messages=[{"role": "user"}]), "messages[0]"),
    (dict(messages=[{"role": "user", "content": 5}]), "messages[0]"),
    (dict(messages=["hi"]), "messages[0]"),
    (dict(messages={"role": "user", "content": "x"}), "list"),
    (dict(messages=[{"role": "tool", "content": "x"}]), "unknown role: tool"),
    (dict(messages=[{"role": "user", "content": "x"}], prompt="y"), "not both"),
    (dict(messages=[{"role": "user", "content": "word " * 600}]), "no room for a reply"),
    (dict(prompt="word " * 600), "no room for a reply"),
    (dict(stop=[5]), "a string or a list of strings"),
])
def test_bad_conversations_are_one_line_option_errors(chat, options, needle):
    with pytest.raises(OptionError) as e:
        chat[1].sample(1, max_new_tokens=2, **options)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_model_without_a_template_refuses_messages_in_one_line():
    model = GPTModel.from_config(dict(vocab_size=256, n_positions=32, n_embd=16, n_layer=1,
                                      n_head=2)).to_device("cpu", "fp32")
    bundled = genzoo.load("textlm-shakespeare", device="cpu")
    for m, options in ((model, dict(messages=[{"role": "user", "content": "hi"}])),
                       (bundled, dict(system="Be brief.", prompt="hi"))):
        with pytest.raises(OptionError) as e:
            m.sample(1, max_new_tokens=2, **options)
        assert "no chat template" in str(e.value) and "bundled GPT" in str(e.value)
        assert "\n" not in str(e.value)


LLAMA_LIKE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
              "<<SYS>>{{ m['content'] }}<</SYS>>{% else %}[{{ m['role'] | upper }}] "
              "{{ m['content'] | trim }}{{ eos_token }}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}[ASSISTANT]{% endif %}")


@pytest.mark.parametrize("template", [CHATML, LLAMA_LIKE])
def test_native_gpt_renders_a_folder_template_as_transformers_does(tmp_path, template):
    tok = tiny_chat_tokenizer()
    model = GPTModel.from_config(dict(vocab_size=len(tok), n_positions=64, n_embd=16,
                                      n_layer=1, n_head=2))
    # the folder's tokenizer_config.json names BOS and EOS by their text, as Hub folders do
    model.tokenizer = TextTokenizer(tok.backend_tokenizer, chat_template=template,
                                    special_tokens={"bos_token": "<|endoftext|>",
                                                    "eos_token": "<|im_end|>"})
    model.save_pretrained(tmp_path / "gpt")
    native = genzoo.load(str(tmp_path / "gpt"), device="cpu")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "gpt")
    for messages, system in CONVERSATIONS:
        full = ([{"role": "system", "content": system}] if system else []) + messages
        want = hf_tok.apply_chat_template(full, add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
        assert native.tokenizer.chat_ids(full) == list(want)
    assert list(want).count(tok.pad_token_id) == (template == LLAMA_LIKE)  # BOS once
    assert native.tokenizer.end_ids == [tok.convert_tokens_to_ids("<|im_end|>")]
    reply = native.sample(1, messages=CONVERSATIONS[0][0], max_new_tokens=3)
    assert reply.meta["prompt_tokens"] == len(native.tokenizer.chat_ids(CONVERSATIONS[0][0]))
