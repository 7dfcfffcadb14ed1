"""A tiny chat model built offline, for tests: a Qwen2 causal LM with random (seeded) weights,
a byte-level BPE tokenizer trained locally with ``tokenizers`` on Python's own help topics,
ChatML special tokens and template, and a generation config that ends on both
``<|im_end|>`` and ``<|endoftext|>``. Saved in transformers' layout (safetensors) with
genzoo's config section, so ``genzoo.load(folder)`` loads it as ``transformers-causal-lm``.

Other test modules import it: ``build_tiny_chat(tmp_path / "chat")``.
"""
from __future__ import annotations

import json
from pathlib import Path

#: ChatML, as Qwen2 writes it (a system message first when given; the generation prompt
#: opens the assistant turn). Roles other than system/user/assistant are refused, so that
#: tests can check how a template's ``raise_exception`` surfaces.
CHATML = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512


def _corpus() -> list[str]:
    """Plain English text that ships with Python (no download): the pydoc help topics."""
    from pydoc_data.topics import topics
    return [topics[k] for k in sorted(topics)]


def tiny_chat_tokenizer():
    """A transformers fast tokenizer: byte-level BPE trained on ``_corpus`` with the ChatML
    specials (EOS ``<|im_end|>``, pad ``<|endoftext|>``) and the ChatML template."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=CHATML)


#: Conversations whose mean last hidden state sets how likely ``<|im_end|>`` is.
_PROBES = ("What is a list?", "Hello there", "Tell me about loops", "x",
           "Write a poem about the sea, please.")
#: The ``<|im_end|>`` logit at that mean state: with random weights this makes some greedy
#: replies end within a few tokens and others run to any small length limit, so tests
#: see both finish reasons ("stop" and "length").
_END_LOGIT = 3.0


def _make_replies_end(hf, tok, end_id: int) -> None:
    """Point the LM head's ``<|im_end|>`` row along the mean final hidden state of a few
    chat prompts (random weights alone would almost never end a reply)."""
    import torch
    states = []
    with torch.no_grad():
        for text in _PROBES:
            enc = tok.apply_chat_template([{"role": "user", "content": text}],
                                          add_generation_prompt=True, return_dict=True,
                                          return_tensors="pt")
            states.append(hf(**enc, output_hidden_states=True).hidden_states[-1][0])
        mean = torch.cat(states).mean(0)
        hf.lm_head.weight[end_id] = _END_LOGIT * mean / mean.norm() ** 2


def build_tiny_chat(folder: Path, seed: int = 0) -> Path:
    """Write the tiny chat model into ``folder`` (created) and return it. Deterministic for a
    given ``seed``; about 0.1 MB and a few milliseconds per generated token on a CPU."""
    import torch
    import transformers
    from genzoo_textlm.transformers_format import HFTokenizer, TransformersCausalLM

    folder = Path(folder)
    tok = tiny_chat_tokenizer()
    end_ids = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    cfg = transformers.Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=0.2, tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=end_ids, pad_token_id=end_ids[1])
    torch.manual_seed(seed)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    hf.generation_config = transformers.GenerationConfig(
        eos_token_id=end_ids, pad_token_id=end_ids[1], bos_token_id=None)
    _make_replies_end(hf, tok, end_ids[0])
    config = json.loads(cfg.to_json_string(use_diff=False))
    model = TransformersCausalLM(config, hf, HFTokenizer(tok))
    model.save_pretrained(folder)
    return folder
