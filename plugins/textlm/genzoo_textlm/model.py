"""`GPTModel`: the zoo's native GPT (arch ``textlm-gpt``) as a genzoo model.

On disk it is a Hugging Face GPT-2 folder plus genzoo's section: config.json with
``model_type: gpt2`` and GPT-2's keys, model.safetensors with GPT-2's tensor names, and
tokenizer.json. So a real GPT-2 folder loads natively and a genzoo-saved model loads in
``transformers.GPT2LMHeadModel.from_pretrained``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch

from genzoo.errors import WeightsError
from genzoo.model import read_safetensors

from .base import TextLM
from .gpt import ACTIVATIONS, GPT, GPTConfig
from .tokenizer import TextTokenizer, byte_level_tokenizer


def gpt2_config(config: dict[str, Any]) -> dict[str, Any]:
    """A complete HF GPT-2 config: ``config``'s keys (unknown ones kept) over GPT-2's
    defaults, with ``model_type``/``architectures`` so transformers recognises the folder."""
    if config.get("model_type", "gpt2") != "gpt2":
        raise WeightsError(f"config model_type {config['model_type']!r} is not GPT-2; load it "
                           "with the transformers format (pip install 'genzoo-textlm[transformers]')")
    if config.get("add_cross_attention"):
        raise WeightsError("GPT-2 with cross-attention (an encoder-decoder part) is not "
                           "supported by the native GPT")
    if config.get("activation_function", "gelu_new") not in ACTIVATIONS:
        raise WeightsError(f"activation_function {config['activation_function']!r} is not "
                           f"supported; use one of {', '.join(ACTIVATIONS)}")
    # "dtype": transformers 5 loads in the weights' own dtype unless the config names one;
    # the model computes in float32 (its weights may be stored in fp16 to halve the download)
    base = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            **asdict(GPTConfig.from_dict(config)), "bos_token_id": None, "eos_token_id": None,
            "dtype": "float32"}
    return {**base, **config}


def hf_to_native(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Map a GPT-2 checkpoint's tensor names onto ours: add the ``transformer.`` prefix that
    checkpoints saved from ``GPT2Model`` lack, drop old causal-mask buffers, and drop a tied
    ``lm_head.weight`` (it is the token embedding)."""
    out = {}
    for k, v in state.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")) and v.ndim != 1:
            continue  # the (1, 1, n, n) causal mask older transformers saved as a buffer
        out[k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"] = v
    if tied:
        out.pop("lm_head.weight", None)
    return out


class GPTModel(GPT, TextLM):
    """GPT-2-architecture language model: native PyTorch, KV-cached sampling, HF layout."""

    arch: ClassVar[str] = "textlm-gpt"
    slides_context: ClassVar[bool] = True  # _CachedDecoder restarts from half a window
    no_template_hint: ClassVar[str] = (
        "none in tokenizer_config.json or chat_template.jinja; genzoo's bundled GPT models "
        "are not chat models and have none")

    def __init__(self, config: dict[str, Any]):
        config = gpt2_config(config)
        TextLM.__init__(self, config)  # GenerativeModel's init (then nn.Module's)
        self.build(GPTConfig.from_dict(config))
        # a 256-token vocabulary is genzoo's byte-level tokenizer unless a folder says otherwise
        self.tokenizer = (TextTokenizer(byte_level_tokenizer())
                          if config["vocab_size"] == 256 else None)
        self.eval()  # inference mode (no dropout) until the engine calls train()

    @property
    def max_context(self) -> int:
        """``n_positions``: the most tokens the model attends to."""
        return self.gpt_config.n_positions

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits of (B, T) ids."""
        return self(ids)

    def backend(self) -> "_CachedDecoder":
        """A KV-cached decoder for ``sampling.generate_ids``."""
        return _CachedDecoder(self)

    # ---- on-disk format: HF GPT-2 -----------------------------------------------------------
    def load_weights(self, path: Path) -> None:
        """Read GPT-2 safetensors (HF names, either prefix style) into the model."""
        state = hf_to_native(read_safetensors(path), self.gpt_config.tie_word_embeddings)
        self.load_checked_state(state, path)

    def save_extra_files(self, folder: Path) -> None:
        """Write the tokenizer beside the weights."""
        if self.tokenizer is not None:
            self.tokenizer.save(folder)

    def load_extra_files(self, folder: Path) -> None:
        """Read tokenizer.json (a byte-level model without one keeps the built-in one)."""
        if (Path(folder) / "tokenizer.json").is_file() or self.tokenizer is None:
            self.tokenizer = TextTokenizer.from_folder(folder, self.config)


class _CachedDecoder:
    """prefill/step over a KV cache. When the context is full, the cache restarts from the
    last ``n_positions // 2`` tokens (one re-read of half a window, then cheap steps again)."""

    def __init__(self, model: GPTModel):
        self.model, self.n = model, model.gpt_config.n_positions

    def _restart(self, ids: torch.Tensor) -> torch.Tensor:
        self.cache = self.model.new_cache(ids.size(0))
        return self.model(ids, self.cache, last_only=True)[:, -1]

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.ids = ids
        return self._restart(ids[:, -self.n:])

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, ids], dim=1)
        if self.cache.pos >= self.n:
            return self._restart(self.ids[:, -max(1, self.n // 2):])
        return self.model(ids, self.cache, last_only=True)[:, -1]
