"""Step-by-step decoding (genzoo_textlm.decoding): sequences that join a running batch at
different steps, with different prompt lengths and token limits, get exactly the tokens and
texts they get alone through ``sampling.generate_ids`` / ``TextLM.generate`` (greedy and
seeded sampling), for the native GPT and for a transformers model (the tiny chat model)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from genzoo.seeding import sample_generators
from genzoo_textlm import decoding
from genzoo_textlm.decoding import TokenSequence, start, step, stepper_for
from genzoo_textlm.model import GPTModel
from genzoo_textlm.sampling import generate_ids

sys.path.insert(0, str(Path(__file__).parent))

#: (prompt ids, max_new_tokens, the step at which the sequence joins the batch)
SPECS = [([5, 6, 7], 20, 0), (list(range(10, 40)), 45, 2), ([1], 6, 3), (list(range(40, 52)), 70, 9)]


@pytest.fixture(scope="module")
def gpt() -> GPTModel:
    """A random native GPT with a 64-token context (so long runs restart their cache)."""
    torch.manual_seed(0)
    return GPTModel.from_config(dict(vocab_size=256, n_positions=64, n_embd=32, n_layer=2,
                                     n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0))


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """The tiny Qwen2 chat model, loaded through genzoo (transformers format)."""
    pytest.importorskip("transformers")
    import genzoo
    from _tiny_chat import build_tiny_chat
    return genzoo.load(build_tiny_chat(tmp_path_factory.mktemp("chat") / "chat"), device="cpu")


def alone(model, temperature: float, end_ids=()) -> list[list[int]]:
    """Each spec's tokens from the one-at-a-time path (its own backend, batch 1)."""
    eos = next(iter(end_ids), None)
    with torch.inference_mode():
        return [generate_ids(model.backend(), p, sample_generators(7, 1, start=i), m,
                             temperature, eos_id=eos)[0]
                for i, (p, m, _) in enumerate(SPECS)]


def joined(model, temperature: float, end_ids=(), cancel: int | None = None):
    """Each spec's tokens when the sequences join one running batch at their steps (and
    ``cancel``, if given, is stopped at step 5)."""
    stepper, seqs, t = stepper_for(model), [], 0
    with torch.inference_mode():
        while t <= max(j for *_, j in SPECS) or not all(s.done for s in seqs):
            for i, (p, m, j) in enumerate(SPECS):
                if j == t:
                    seqs.append(start(stepper, TokenSequence(
                        p, sample_generators(7, 1, start=i)[0], m, temperature,
                        end_ids=end_ids)))
            if cancel is not None and t == 5:
                seqs[cancel].stop()
            step(stepper, seqs)
            t += 1
    return seqs


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_native_gpt_joined_equals_alone(gpt, temperature):
    seqs = joined(gpt, temperature)
    assert [s.ids for s in seqs] == alone(gpt, temperature)
    assert [s.finish_reason for s in seqs] == ["length"] * 4
    assert len(seqs[3].ids) + 12 > 64  # the last one ran past the context: its cache restarted


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_transformers_joined_equals_alone(chat, temperature):
    end = [chat.tokenizer.eos_id]
    seqs = joined(chat, temperature, end_ids=end)
    assert [s.ids for s in seqs] == alone(chat, temperature, end_ids=end)
    assert stepper_for(chat).cache is None  # the batch cache went with its last live row


def test_end_id_ends_a_sequence_and_frees_its_cache(gpt):
    ref = alone(gpt, 1.0)[1]
    k = next(k for k in range(1, len(ref)) if ref[k] not in ref[:k])  # a token new at k
    stepper = stepper_for(gpt)
    seq = start(stepper, TokenSequence(SPECS[1][0], sample_generators(7, 1, start=1)[0], 45, 1.0,
                                       end_ids=[ref[k]]))
    while not seq.done:
        step(stepper, [seq])
    assert seq.ids == ref[:k] and seq.finish_reason == "stop" and seq.cache is None


def test_a_stopped_sequence_leaves_and_the_others_continue(gpt):
    seqs = joined(gpt, 1.0, cancel=1)
    ref = alone(gpt, 1.0)
    assert seqs[1].finish_reason == "cancelled" and seqs[1].cache is None
    assert len(seqs[1].ids) < len(ref[1])
    assert [seqs[i].ids for i in (0, 2, 3)] == [ref[i] for i in (0, 2, 3)]


def test_texts_stream_and_equal_generate(gpt):
    """Text sequences (stop strings, streaming) joined at different steps equal ``generate``
    for the same generators; the streamed pieces add up to each text."""
    prompts = ["ab", "hello there", "x"]
    uncut = [gpt.generate(sample_generators(3, 1, start=i), prompt=p, max_new_tokens=30,
                          temperature=1.0)[0][len(p):] for i, p in enumerate(prompts)]
    # stop strings taken from inside two of the texts: those two end early
    opts = dict(max_new_tokens=30, temperature=1.0, stop=[uncut[0][8:10], uncut[2][15:18]])
    want = [gpt.generate(sample_generators(3, 1, start=i), prompt=p, **opts)[0]
            for i, p in enumerate(prompts)]
    states, pieces = [], [[] for _ in prompts]
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            states.append(decoding.start_text(gpt, sample_generators(3, 1, start=i)[0],
                                              prompt=p, **opts))
            decoding.step_texts(gpt, states)
            for s, got in zip(states, pieces):
                got.append(s.take_piece())
        while not all(s.done for s in states):
            decoding.step_texts(gpt, states)
            for s, got in zip(states, pieces):
                got.append(s.take_piece())
    assert [s.result() for s in states] == want
    assert ["".join(p) for p in pieces] == want
    assert len(want[0]) <= len(prompts[0]) + 8 and len(want[2]) <= len(prompts[2]) + 15


CONVERSATIONS = [
    dict(messages=[{"role": "user", "content": "What is a list?"}]),
    dict(messages=[{"role": "user", "content": "Hello there"}], system="Be brief."),
    dict(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                   {"role": "user", "content": "Tell me about loops"}]),
]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_chat_replies_joined_equal_sample(chat, temperature):
    """Conversations joined one step apart get the replies and usage ``model.sample`` gives."""
    opts = dict(max_new_tokens=24, temperature=temperature)
    want = [chat.sample(1, seed=i, **c, **opts) for i, c in enumerate(CONVERSATIONS)]
    states = []
    with torch.inference_mode():
        for i, c in enumerate(CONVERSATIONS):
            checked = chat.check_options({**c, **opts})
            states.append(decoding.start_text(chat, sample_generators(i, 1)[0], **checked))
            decoding.step_texts(chat, states)
        while not all(s.done for s in states):
            decoding.step_texts(chat, states)
    got = [decoding.collect_texts([s], {}) for s in states]
    assert [g.texts for g in got] == [w.texts for w in want]
    for g, w in zip(got, want):
        for key in ("prompt_tokens", "completion_tokens", "finish_reasons"):
            assert g.meta[key] == w.meta[key], key
    if temperature == 0:  # the tiny model ends some replies on <|im_end|>, not others
        assert {g.meta["finish_reasons"][0] for g in got} == {"stop", "length"}


def test_which_models_can_step(gpt, chat):
    """The native GPT and transformers models step; another TextLM subclass does not (its
    server jobs keep whole ``generate`` calls)."""
    from genzoo_textlm.base import TextLM

    class Other(TextLM):
        arch = "textlm-other"

    assert gpt.supports_stepping and chat.supports_stepping
    assert not Other({}).supports_stepping
