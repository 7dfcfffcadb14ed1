"""genzoo-textlm: the text language-model family plugin.

This module is what the ``genzoo`` entry point loads, so it stays torch-free: architectures
are named by import string and imported on first ``genzoo.load``.
"""
from __future__ import annotations

from pathlib import Path

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    """The native GPT (GPT-2 layout) and transformers causal LMs (the transformers format)."""
    return [
        {"name": "textlm-gpt", "family": "textlm", "target": "genzoo_textlm.model:GPTModel",
         "summary": "compact native GPT-2 (KV cache); loads Hugging Face GPT-2 folders"},
        {"name": "transformers-causal-lm", "family": "textlm",
         "target": "genzoo_textlm.transformers_format:TransformersCausalLM",
         "summary": "any transformers causal LM: Llama, Qwen, SmolLM... "
                    "(needs genzoo-textlm[transformers])"},
    ]


@genzoo.hookimpl
def genzoo_detect_arch(config, filenames):
    """Claim GPT-2 folders for the native GPT and other ``*ForCausalLM`` configs for the
    transformers format; anything else is not ours (None)."""
    if not isinstance(config, dict):
        return None
    if config.get("model_type") == "gpt2" and not config.get("add_cross_attention"):
        return "textlm-gpt"
    archs = config.get("architectures") or []
    if isinstance(archs, list) and any(isinstance(a, str) and a.endswith("ForCausalLM")
                                       for a in archs):
        return "transformers-causal-lm"
    return None


@genzoo.hookimpl
def genzoo_model_cards():
    """The textlm-shakespeare card and its sha256 digests, in the catalog file beside its weights
    (exactly as a third-party plugin ships its cards)."""
    return [Path(__file__).parent / "weights" / "cards.yaml"]
