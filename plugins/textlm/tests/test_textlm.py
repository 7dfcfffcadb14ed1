"""The native GPT as a genzoo model: conformance kit, tokenizer, KV cache, sampling options,
seeds, scoring and finetuning through the engine (no transformers needed here)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import genzoo
from genzoo.errors import DataError, OptionError
from genzoo.testing import conformance_tests
from genzoo_textlm import genzoo_detect_arch
from genzoo_textlm.model import GPTModel
from genzoo_textlm.sampling import filter_logits, generate_ids
from genzoo_textlm.scoring import windows
from genzoo_textlm.tokenizer import byte_level_tokenizer

TINY = dict(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
TEXT = "the quick brown fox jumps over the lazy dog.\n" * 40

globals().update(conformance_tests("textlm-gpt", TINY, finetune_steps=30,
                                   finetune_options={"lr": 3e-3}))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPTModel.from_config(TINY).to_device("cpu", "fp32").eval()


def test_detect_arch():
    assert genzoo_detect_arch({"model_type": "gpt2"}, ["config.json"]) == "textlm-gpt"
    assert genzoo_detect_arch({"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
                              []) == "transformers-causal-lm"
    assert genzoo_detect_arch({"model_type": "bert", "architectures": ["BertModel"]}, []) is None
    assert genzoo_detect_arch({}, []) is None


def test_byte_tokenizer_round_trip():
    tok = byte_level_tokenizer()
    text = "Hark! héllo ✓\n\ttabs"
    enc = tok.encode(text)
    assert enc.ids == list(text.encode("utf-8")) and tok.get_vocab_size() == 256
    assert tok.decode(enc.ids) == text
    assert enc.offsets[1] == (1, 2)  # character offsets, not byte offsets


def test_kv_cache_matches_full_forward(model):
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2)
        parts = [model(ids[:, :7], cache)] + [model(ids[:, t:t + 1], cache) for t in range(7, 20)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_first_k_of_n_and_other_seed(model):
    opts = dict(prompt="the ", max_new_tokens=12)
    eight = model.sample(8, seed=3, batch_size=3, **opts).texts
    assert model.sample(5, seed=3, **opts).texts == eight[:5]
    assert len(set(eight)) > 1 and all(t.startswith("the ") for t in eight)
    assert model.sample(5, seed=4, **opts).texts != eight[:5]


def test_greedy_ignores_seed_and_top_k_1_is_greedy(model):
    greedy = model.sample(2, seed=0, prompt="ab", max_new_tokens=10, temperature=0).texts
    assert greedy[0] == greedy[1] == model.sample(1, seed=9, prompt="ab", max_new_tokens=10,
                                                  temperature=0).texts[0]
    assert model.sample(1, seed=5, prompt="ab", max_new_tokens=10, top_k=1).texts == greedy[:1]


def test_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, 1.0, None, 0.7))[0].tolist()
    assert kept == [True, True, False, False]
    kept = torch.isfinite(filter_logits(logits, 1.0, 2, None))[0].tolist()
    assert kept == [True, True, False, False]


def test_stop_and_stream(model):
    opts = dict(prompt="x", max_new_tokens=30, top_k=20)
    full = model.sample(1, seed=1, **opts).texts[0]
    # a two-character stop string whose first occurrence is at least 5 characters in
    k = next(k for k in range(5, len(full) - 2) if full.find(full[k:k + 2]) == k)
    pieces: list[str] = []
    cut = model.sample(1, seed=1, stop=[full[k:k + 2], "never"], stream=pieces.append, **opts)
    assert cut.texts[0] == full[:k]
    assert "".join(pieces) == cut.texts[0] and pieces[0] == "x" and len(pieces) > 2
    assert "stream" not in cut.meta


def test_generation_past_the_context(model):
    out = generate_ids(model.backend(), [1, 2, 3], [torch.Generator().manual_seed(0)],
                       max_new_tokens=3 * TINY["n_positions"])
    assert len(out[0]) == 3 * TINY["n_positions"]


def test_bad_sampling_options(model):
    for bad in (dict(temperature=-1), dict(top_p=1.5), dict(top_k=0), dict(max_new_tokens=0)):
        with pytest.raises(OptionError):
            model.sample(1, **bad)


def test_score_text_matches_manual_windows(model):
    text = TEXT[:100]
    ids = torch.tensor(list(text.encode()))
    score = model.score_text(text, ctx=32, batch_size=2)
    with torch.no_grad():
        total = sum(float(F.cross_entropy(model(ids[None, s:e - 1])[0][-k:], ids[e - k:e],
                                          reduction="sum")) for s, e, k in windows(100, 32))
    assert score["tokens"] == score["chars"] == 99
    assert math.isclose(score["nats_per_char"], total / 99, rel_tol=1e-5)
    assert math.isclose(score["perplexity"], math.exp(total / 99), rel_tol=1e-5)
    strided = model.score_text(text, ctx=32, stride=8)
    assert strided["tokens"] == 99 and strided["nats_per_char"] != score["nats_per_char"]
    assert windows(10, 4) == [(0, 5, 4), (4, 9, 4), (5, 10, 1)]
    assert windows(10, 4, stride=2) == [(0, 5, 4), (2, 7, 2), (4, 9, 2), (5, 10, 1)]
    with pytest.raises(OptionError):
        model.score_text(text, ctx=64)


def test_prepare_data_folder_and_errors(model, tmp_path):
    (tmp_path / "a.txt").write_text("hello there " * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("general kenobi " * 10)
    (tmp_path / "skip.png").write_bytes(b"\x89PNG")
    ds = model.prepare_data(str(tmp_path))
    assert len(ds) == 120 + 2 + 150 - TINY["n_positions"]
    batch = ds[torch.tensor([0, 5])]
    assert batch.shape == (2, TINY["n_positions"] + 1) and batch.dtype == torch.long
    assert bytes(batch[0].tolist()).decode().startswith("hello there")
    with pytest.raises(DataError):
        model.prepare_data(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        model.prepare_data(str(tmp_path / "empty"))


def test_finetune_on_a_text_file_lowers_its_nats(tmp_path):
    torch.manual_seed(0)
    model = GPTModel.from_config(TINY).to_device("cpu", "fp32")
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    before = model.score_text(TEXT)["nats_per_char"]
    result = genzoo.finetune(model, str(path), steps=40, out=tmp_path / "run", lr=3e-3,
                             progress=False)
    after = model.score_text(TEXT)["nats_per_char"]
    assert after < before - 1.5, (before, after)
    reloaded = GPTModel.from_pretrained(result.folder, device="cpu")
    assert math.isclose(reloaded.score_text(TEXT)["nats_per_char"], after, rel_tol=1e-6)
