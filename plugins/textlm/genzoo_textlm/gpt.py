"""A GPT-2 language model in plain PyTorch, in the spirit of nanoGPT's model.py.

The parameter names, shapes and config keys are those of Hugging Face's ``GPT2LMHeadModel``
(``transformer.h.0.attn.c_attn.weight`` ...; linear weights stored (in, out) as HF's ``Conv1D``
does), so a GPT-2 checkpoint in HF layout loads with no conversion and a model saved here loads
in transformers. Generation uses a preallocated key/value cache.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's tanh approximation
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass
class GPTConfig:
    """The GPT-2 hyper-parameters, named as in transformers' ``GPT2Config``."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # MLP width; None means 4 * n_embd
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "GPTConfig":
        """Pick the known keys of an HF GPT-2 config dict (others are kept by the caller)."""
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


class Conv1D(nn.Module):
    """A linear layer whose weight is stored (in, out), as in GPT-2's original checkpoints."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.t(), self.bias)


class KVCache:
    """Keys and values of every layer for positions ``0 .. pos-1``, preallocated up to
    ``max_len`` so that each generated token costs one write, not a concatenation."""

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int):
        self.shape = (n_layer, batch, n_head, max_len, head_dim)
        self.k = self.v = None  # allocated on the first write, in the activations' dtype
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this layer's new keys/values; return all keys/values so far."""
        if self.k is None:
            self.k = torch.empty(self.shape, dtype=k.dtype, device=k.device)
            self.v = torch.empty(self.shape, dtype=v.dtype, device=v.device)
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (fused q/k/v projection, SDPA kernel)."""

    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.resid_pdrop)
        self.n_head, self.layer_idx, self.attn_pdrop = cfg.n_head, layer_idx, cfg.attn_pdrop
        head_dim = cfg.n_embd // cfg.n_head
        self.scale = head_dim ** -0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        past = cache.pos if cache is not None else 0
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        mask, causal = None, T > 1
        if causal and past:  # new queries after cached ones: bottom-right aligned causal mask
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
            causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale,
            dropout_p=self.attn_pdrop if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The position-wise feed-forward block."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        inner = cfg.n_inner or 4 * cfg.n_embd
        self.c_fc = Conv1D(cfg.n_embd, inner)
        self.c_proj = Conv1D(inner, cfg.n_embd)
        self.act = ACTIVATIONS[cfg.activation_function]
        self.dropout = nn.Dropout(cfg.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The GPT-2 language model: token + position embeddings, ``n_layer`` blocks, a final
    LayerNorm and an output projection tied to the token embedding."""

    #: What a LoRA adapter (``genzoo finetune --lora-rank``) adapts by default: the attention
    #: and MLP projections of every block, as in the LoRA paper and peft's GPT-2 default; not
    #: the output head, tied to the embedding (it would be most of a byte-level adapter).
    lora_targets = ("c_attn", "c_proj", "c_fc")

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.build(cfg)

    def prepare_lora(self) -> None:
        """Before peft injects LoRA layers: make each ``Conv1D`` transformers' own class,
        which peft adapts (same (in, out) weight, bias and product; only the class changes,
        so names, shapes and outputs stay). transformers is there: peft depends on it."""
        from transformers.pytorch_utils import Conv1D as PeftKnownConv1D
        for module in self.modules():
            if type(module) is Conv1D:
                module.__class__ = PeftKnownConv1D
                module.nx, module.nf = module.weight.shape

    def build(self, cfg: GPTConfig) -> None:
        """Create the modules (separate from ``__init__`` so a subclass can call it after its
        own base initialiser)."""
        if cfg.activation_function not in ACTIVATIONS:
            raise ValueError(f"activation_function {cfg.activation_function!r} is not supported; "
                             f"use one of {', '.join(ACTIVATIONS)}")
        self.gpt_config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.n_positions, cfg.n_embd),
            drop=nn.Dropout(cfg.embd_pdrop),
            h=nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer).
        Through ``nn.init`` so that ``genzoo.model.skip_init`` can skip it before a load."""
        std = self.gpt_config.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.gpt_config.n_layer))
            elif name.endswith(".weight") and ".ln_" not in name:
                nn.init.normal_(p, 0.0, std)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:  # LayerNorm gains
                nn.init.ones_(p)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); with a ``cache``, ``idx`` follows
        the cached positions. ``last_only`` computes the logits of the last position only."""
        B, T = idx.shape
        past = cache.pos if cache is not None else 0
        if past + T > self.gpt_config.n_positions:
            raise ValueError(f"sequence of {past + T} tokens exceeds the model's context of "
                             f"{self.gpt_config.n_positions}")
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x, cache)
        if cache is not None:
            cache.pos += T
        x = self.transformer.ln_f(x[:, -1:] if last_only else x)
        return self.lm_head(x)

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty key/value cache for ``batch`` sequences of up to ``max_len`` tokens."""
        c = self.gpt_config
        return KVCache(c.n_layer, batch, c.n_head, max_len or c.n_positions, c.n_embd // c.n_head)
