"""transformers as the oracle: GPT-2 folders written by transformers load natively with the
same logits and greedy tokens; genzoo-saved GPTs load in transformers; a tiny Llama folder
samples and scores through the optional transformers format."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

import genzoo  # noqa: E402
from genzoo_textlm.transformers_format import TransformersCausalLM  # noqa: E402
from genzoo_textlm.model import GPTModel  # noqa: E402
from genzoo_textlm.sampling import generate_ids  # noqa: E402

SENTENCES = ["the quick brown fox jumps over the lazy dog",
             "to be or not to be, that is the question",
             "all the world's a stage, and all the men and women merely players",
             "now is the winter of our discontent made glorious summer"] * 4
PROMPT = "to be or not"


@pytest.fixture(scope="module")
def hf_tokenizer():
    """A small byte-level BPE trained with `tokenizers`, wrapped by transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, hf_tokenizer):
    """(folder, model): a random GPT-2 saved by transformers, with its tokenizer."""
    folder = tmp_path_factory.mktemp("gpt2")
    eos = hf_tokenizer.eos_token_id
    cfg = transformers.GPT2Config(vocab_size=len(hf_tokenizer), n_positions=64, n_embd=32,
                                  n_layer=2, n_head=2, initializer_range=0.2,
                                  bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(folder)
    hf_tokenizer.save_pretrained(folder)
    return folder, hf


def _ids(tok, text=PROMPT):
    return torch.tensor([tok(text)["input_ids"]])


def test_gpt2_folder_loads_natively_with_equal_logits(gpt2, hf_tokenizer):
    folder, hf = gpt2
    assert "genzoo" not in json.loads((folder / "config.json").read_text())
    model = genzoo.load(str(folder), device="cpu")
    assert isinstance(model, GPTModel)
    ids = torch.randint(0, len(hf_tokenizer), (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-4)


def _greedy_both(model, hf, hf_tokenizer, ids, n):
    """Greedy continuations of ``ids`` (up to EOS) from genzoo's decoder and from transformers."""
    eos = hf_tokenizer.eos_token_id
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                          do_sample=False, pad_token_id=eos)[0, ids.shape[1]:].tolist()
    ref = ref[:ref.index(eos)] if eos in ref else ref
    ours = generate_ids(model.backend(), ids[0].tolist(), [torch.Generator()], n,
                        temperature=0, eos_id=eos)[0]
    return ours, ref


def test_greedy_generation_equals_transformers(gpt2, hf_tokenizer):
    folder, hf = gpt2
    model = genzoo.load(str(folder), device="cpu")
    ours, ref = _greedy_both(model, hf, hf_tokenizer, _ids(hf_tokenizer), 30)
    assert ours == ref and len(ours) > 3
    text = model.sample(1, prompt=PROMPT, max_new_tokens=30, temperature=0).texts[0]
    assert text == PROMPT + hf_tokenizer.decode(ref)


def test_genzoo_saved_gpt_loads_in_transformers(gpt2, hf_tokenizer, tmp_path):
    model = genzoo.load(str(gpt2[0]), device="cpu")
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["genzoo"]["arch"] == "textlm-gpt" and config["model_type"] == "gpt2"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "saved").eval()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    ids = _ids(tok)
    assert ids[0].tolist() == hf_tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids), atol=1e-5)
    again = genzoo.load(str(tmp_path / "saved"), device="cpu")
    assert again.sample(2, seed=1, max_new_tokens=8).texts == \
        model.sample(2, seed=1, max_new_tokens=8).texts


def test_old_checkpoint_names_load(gpt2, tmp_path):
    """Checkpoints saved from GPT2Model (no ``transformer.`` prefix, causal-mask buffers)."""
    from safetensors.torch import load_file, save_file
    folder, hf = gpt2
    state = load_file(str(folder / "model.safetensors"))
    old = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    old["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / "model.safetensors"))
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / "old" / name).write_bytes((folder / name).read_bytes())
    model = GPTModel.from_pretrained(tmp_path / "old", device="cpu")
    ids = torch.arange(20)[None]
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-4)


@pytest.mark.slow  # a fresh interpreter: about 5 s
def test_native_load_does_not_import_transformers(gpt2):
    code = ("import sys, genzoo; m = genzoo.load(sys.argv[1], device='cpu'); "
            "m.sample(1, max_new_tokens=3); print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(gpt2[0])], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def llama(tmp_path_factory, hf_tokenizer):
    folder = tmp_path_factory.mktemp("llama")
    cfg = transformers.LlamaConfig(
        vocab_size=len(hf_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=hf_tokenizer.bos_token_id, eos_token_id=hf_tokenizer.eos_token_id,
        initializer_range=0.2)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(folder)
    hf_tokenizer.save_pretrained(folder)
    return folder, hf


def test_llama_through_the_transformers_format(llama, hf_tokenizer, tmp_path):
    folder, hf = llama
    model = genzoo.load(str(folder), device="cpu")
    assert isinstance(model, TransformersCausalLM) and model.arch == "transformers-causal-lm"
    opts = dict(prompt="the quick", max_new_tokens=8)
    three = model.sample(3, seed=0, batch_size=2, **opts).texts
    assert model.sample(2, seed=0, **opts).texts == three[:2]
    assert len(set(three)) > 1 and all(t.startswith("the quick") for t in three)
    ours, ref = _greedy_both(model, hf, hf_tokenizer, _ids(hf_tokenizer, "the quick"), 10)
    assert ours == ref
    score = model.score_text(" ".join(SENTENCES[:4]), ctx=16)
    assert score["tokens"] > 10 and math.isfinite(score["nats_per_char"])
    model.save_pretrained(tmp_path / "saved")
    again = genzoo.load(str(tmp_path / "saved"), device="cpu")
    assert isinstance(again, TransformersCausalLM)
    assert again.sample(2, seed=0, **opts).texts == three[:2]


def test_llama_finetunes_through_the_engine(llama, tmp_path):
    model = genzoo.load(str(llama[0]), device="cpu")
    text = "\n".join(SENTENCES)
    (tmp_path / "corpus.txt").write_text(text)
    before = model.score_text(text, ctx=32)["nats_per_char"]
    result = genzoo.finetune(model, str(tmp_path / "corpus.txt"), steps=15, out=tmp_path / "run",
                             lr=3e-3, batch_size=8, progress=False)
    after = model.score_text(text, ctx=32)["nats_per_char"]
    assert after < before - 0.3, (before, after)
    reloaded = genzoo.load(str(result.folder), device="cpu")
    assert math.isclose(reloaded.score_text(text, ctx=32)["nats_per_char"], after, rel_tol=1e-4)
