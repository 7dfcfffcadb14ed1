"""`TransformersCausalLM` (arch ``transformers-causal-lm``): any causal LM in transformers
format (Llama, Qwen, SmolLM, Mistral...) through transformers itself, with genzoo's sampling
options, per-sample seeds, finetuning and ``score_text``.

transformers is an optional extra (``pip install 'genzoo-textlm[transformers]'``), imported
only when such a model is loaded. Weights are read as safetensors only and no code from a
model repository is ever run (``trust_remote_code=False``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch

from genzoo.errors import OptionError, PluginMissingError, WeightsError
from genzoo.fsutil import atomic_dir, atomic_write_text
from genzoo.model import CARD_NAME, CONFIG_NAME, model_card_markdown, read_config

from .base import TextLM
from .chat import id_list


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise PluginMissingError("this model needs transformers: pip install "
                                 "'genzoo-textlm[transformers]'") from e
    return transformers


def _dtype_kw(transformers) -> str:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


class HFTokenizer:
    """A transformers tokenizer behind the ``TextTokenizer`` methods."""

    def __init__(self, tok, end_ids: list[int] | tuple[int, ...] = ()):
        self.tok, self.bos_id, self.eos_id = tok, tok.bos_token_id, tok.eos_token_id
        self.end_ids = list(dict.fromkeys(id_list(self.eos_id) + id_list(list(end_ids))))

    @property
    def chat_template(self) -> str | None:
        """The tokenizer's chat template (Jinja), or None."""
        template = getattr(self.tok, "chat_template", None)
        return template if isinstance(template, str) and template else None

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` by transformers' ``apply_chat_template`` with the
        generation prompt (it adds no special tokens beyond the template's own)."""
        from jinja2 import TemplateError
        try:
            enc = self.tok.apply_chat_template(messages, add_generation_prompt=True,
                                               tokenize=True, return_dict=True)
        except (TemplateError, ValueError) as e:
            raise OptionError(f"the model's chat template refuses these messages: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return list(enc["input_ids"])

    def encode(self, text: str) -> list[int]:
        """Token ids with the model's own special tokens (e.g. Llama's BOS)."""
        return self.tok(text, add_special_tokens=True, verbose=False)["input_ids"]

    def encode_with_offsets(self, text: str):
        """Token ids and character spans (a special token such as BOS spans (0, 0))."""
        if not self.tok.is_fast:
            raise OptionError("scoring text needs a fast (tokenizer.json) tokenizer")
        enc = self.tok(text, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` without special tokens."""
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def start_ids(self) -> list[int]:
        """BOS, else EOS, else a newline: what an empty prompt is fed as."""
        for i in (self.bos_id, self.eos_id):
            if i is not None:
                return [int(i)]
        return self.tok("\n", add_special_tokens=False)["input_ids"]


class TransformersCausalLM(TextLM):
    """A transformers ``AutoModelForCausalLM`` (held as ``self.hf``) as a genzoo text model."""

    arch: ClassVar[str] = "transformers-causal-lm"

    def __init__(self, config: dict[str, Any], hf_model=None, tokenizer=None):
        super().__init__(config)
        if hf_model is None:  # a freshly initialised model of this config (training from scratch)
            tf = _transformers()
            cfg = tf.AutoConfig.for_model(**config)
            hf_model = tf.AutoModelForCausalLM.from_config(cfg)
        self.hf = hf_model
        if isinstance(tokenizer, HFTokenizer):  # end on every id the generation config lists
            gen = getattr(hf_model, "generation_config", None)
            tokenizer.end_ids = list(dict.fromkeys(
                tokenizer.end_ids + id_list(getattr(gen, "eos_token_id", None))))
        self.tokenizer = tokenizer
        self.eval()  # inference mode (no dropout) until the engine calls train()

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device="auto", dtype="auto"):
        """Load a transformers causal-LM folder (config.json, *.safetensors, tokenizer)."""
        tf = _transformers()
        folder = Path(folder)
        config = read_config(folder)
        if not any(folder.glob("*.safetensors")):
            raise WeightsError(f"{folder}: no .safetensors weights (genzoo never loads pickle "
                               ".bin files); convert the model to safetensors first")
        bars = tf.utils.logging.is_progress_bar_enabled()
        tf.utils.logging.disable_progress_bar()  # a bar per load is noise on genzoo's stderr
        try:
            hf = tf.AutoModelForCausalLM.from_pretrained(
                folder, use_safetensors=True, trust_remote_code=False,
                **{_dtype_kw(tf): torch.float32})
            tok = tf.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as e:
            raise WeightsError(f"{folder}: transformers cannot load it "
                               f"({str(e).splitlines()[0]})") from e
        finally:
            if bars:
                tf.utils.logging.enable_progress_bar()
        model = cls({k: v for k, v in config.items() if k != "genzoo"}, hf, HFTokenizer(tok))
        model.name_or_path = str(folder)
        return model.to_device(device, dtype)

    @property
    def max_context(self) -> int:
        """The model's maximum number of positions (2048 when the config does not say)."""
        c = self.hf.config
        return int(getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
                   or 2048)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits of (B, T) ids."""
        return self.hf(input_ids=ids, use_cache=False).logits

    def backend(self) -> "_HFDecoder":
        """prefill/step with transformers' own key/value cache."""
        return _HFDecoder(self.hf)

    def save_pretrained(self, folder: str | os.PathLike, card: dict[str, Any] | None = None,
                        dtype: torch.dtype | None = None) -> Path:
        """transformers' folder (safetensors) plus the ``genzoo`` section and a README."""
        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            hf = self.hf if dtype is None else self.hf.to(dtype)
            try:
                hf.save_pretrained(tmp)
            finally:
                if dtype is not None:
                    self.hf.float()
            if self.tokenizer is not None:
                self.tokenizer.tok.save_pretrained(tmp)
            cfg = read_config(tmp)
            cfg["genzoo"] = self.genzoo_config()["genzoo"]
            atomic_write_text(tmp / CONFIG_NAME, json.dumps(cfg, indent=2))
            atomic_write_text(tmp / CARD_NAME, model_card_markdown(self, card or {}))
        return folder


class _HFDecoder:
    """prefill/step over transformers' key/value cache (the argument is ``cache`` in newer
    transformers, ``past_key_values`` before)."""

    def __init__(self, hf):
        import inspect
        self.hf, self.past = hf, None
        self.key = "cache" if "cache" in inspect.signature(hf.forward).parameters \
            else "past_key_values"

    def _run(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.hf(input_ids=ids, use_cache=True, **{self.key: self.past})
        self.past = getattr(out, self.key)
        return out.logits[:, -1]

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.past = None
        return self._run(ids)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        return self._run(ids)
