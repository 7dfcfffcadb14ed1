"""Prompts to the conditioning a latent diffusion UNet takes, exactly as diffusers' pipelines
make it (the oracle tests compare outputs within 1e-4, so every choice below is theirs).

- Stable Diffusion 1.x/2.x: each prompt padded to the tokenizer's 77 tokens, the text
  encoder's last hidden state; no negative prompt means the empty string.
- SDXL: both tokenizers and encoders, each encoder's penultimate hidden state, concatenated
  along the features; the pooled, projected output of the second encoder plus six "time ids"
  (original size, crop corner, target size) feed the UNet's added embedding. No negative
  prompt means zeros when the pipeline says ``force_zeros_for_empty_prompt`` (its default).
- AudioLDM (``ClapPromptEncoder``): the CLAP text encoder's projected embedding, L2-normalised,
  is the UNet's class embedding (``class_labels``); there are no encoder hidden states (the
  UNet's attention attends to itself). No negative prompt means the empty string.

Each distinct prompt is encoded once, in a batch of one as diffusers does (a text encoder's
rounding can depend on the batch size), and the result is indexed per sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass
class Conditioning:
    """What the UNet is called with for a batch: per-sample hidden states (None for AudioLDM),
    for SDXL the pooled text embeddings and time ids (``added``), for AudioLDM the class
    embedding's input (``class_labels``)."""

    hidden: torch.Tensor | None
    added: dict[str, torch.Tensor] | None = None
    class_labels: torch.Tensor | None = None

    @staticmethod
    def cat(first: "Conditioning", second: "Conditioning") -> "Conditioning":
        """The two conditionings stacked along the batch (unconditional first, as diffusers)."""
        added = None
        if first.added is not None and second.added is not None:
            added = {k: torch.cat([first.added[k], second.added[k]]) for k in first.added}
        return Conditioning(_cat(first.hidden, second.hidden), added,
                            _cat(first.class_labels, second.class_labels))

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``UNet2DConditionModel.forward``."""
        out: dict[str, Any] = {"encoder_hidden_states": self.hidden}
        if self.added is not None:
            out["added_cond_kwargs"] = self.added
        if self.class_labels is not None:
            out["class_labels"] = self.class_labels
        return out


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """``a`` and ``b`` stacked along the batch; None when either is."""
    return None if a is None or b is None else torch.cat([a, b])


class PromptEncoder:
    """Turns prompts into ``Conditioning`` for one pipeline's tokenizers and text encoders."""

    def __init__(self, tokenizers: Sequence[Any], encoders: Sequence[torch.nn.Module],
                 force_zeros_for_empty_prompt: bool = True):
        self.tokenizers = list(tokenizers)
        self.encoders = list(encoders)
        self.sdxl = len(self.encoders) == 2
        self.force_zeros = force_zeros_for_empty_prompt

    def encode(self, prompts: list[str], size: tuple[int, int],
               negative: bool = False) -> Conditioning:
        """The conditioning of ``prompts`` (one per sample) for images of ``size`` (h, w).
        ``negative``: these are negative prompts (None entries: diffusers' default)."""
        cache: dict[str | None, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for p in prompts:
            if p not in cache:
                cache[p] = self._one(p, negative)
        hidden = torch.cat([cache[p][0] for p in prompts])
        if not self.sdxl:
            return Conditioning(hidden)
        pooled = torch.cat([cache[p][1] for p in prompts])  # type: ignore[misc]
        # original size, crop top-left (0, 0), target size: the image asked for, uncropped
        ids = torch.tensor([[*size, 0, 0, *size]], dtype=hidden.dtype).repeat(len(prompts), 1)
        return Conditioning(hidden, {"text_embeds": pooled, "time_ids": ids.to(hidden.device)})

    def _one(self, prompt: str | None, negative: bool):
        """(hidden states (1, L, D), pooled (1, P) or None) of one prompt."""
        if self.sdxl and negative and prompt is None and self.force_zeros:
            hidden, pooled = self._one("", negative=False)
            return torch.zeros_like(hidden), torch.zeros_like(pooled)
        text = prompt or ""
        if not self.sdxl:
            tok, enc = self.tokenizers[0], self.encoders[0]
            ids = self._ids(tok, text)
            mask = None
            if getattr(enc.config, "use_attention_mask", False):
                mask = tok(text, padding="max_length", max_length=tok.model_max_length,
                           truncation=True, return_tensors="pt").attention_mask.to(ids.device)
            return enc(ids.to(_device(enc)), attention_mask=mask)[0], None
        states, pooled = [], None
        for tok, enc in zip(self.tokenizers, self.encoders):
            out = enc(self._ids(tok, text).to(_device(enc)), output_hidden_states=True)
            if pooled is None and out[0].ndim == 2:  # the projected pooled output
                pooled = out[0]
            states.append(out.hidden_states[-2])
        return torch.cat(states, dim=-1), pooled

    @staticmethod
    def _ids(tokenizer: Any, text: str) -> torch.Tensor:
        """Token ids padded (and cut) to the tokenizer's length, as diffusers makes them."""
        return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids


class ClapPromptEncoder:
    """AudioLDM's prompt conditioning: CLAP's normalised text embedding as ``class_labels``."""

    def __init__(self, tokenizer: Any, encoder: torch.nn.Module):
        self.tokenizer = tokenizer
        self.encoder = encoder

    def encode(self, prompts: list[str | None], negative: bool = False) -> Conditioning:
        """The conditioning of ``prompts`` (one per sample; None: the empty string)."""
        cache: dict[str | None, torch.Tensor] = {}
        for p in prompts:
            if p not in cache:
                cache[p] = self._one(p or "", negative)
        return Conditioning(None, class_labels=torch.cat([cache[p] for p in prompts]))

    def _one(self, text: str, negative: bool) -> torch.Tensor:
        """(1, D): the L2-normalised projected text embedding of ``text``."""
        tok = self.tokenizer
        # diffusers pads (and cuts) negative prompts to the embedding's width, not to the
        # tokenizer's length; both are 512 for AudioLDM's CLAP, and parity asks for its way
        length = (self.encoder.config.projection_dim if negative else tok.model_max_length)
        inputs = tok(text, padding="max_length", max_length=length, truncation=True,
                     return_tensors="pt")
        # Only the real tokens go through the encoder: CLAP pools the first token, padding is
        # masked out of every attention and RoBERTa numbers positions from the ids, so the
        # padded positions change nothing but the cost (512 of them for AudioLDM's CLAP).
        keep = inputs.attention_mask[0].bool()
        device = _device(self.encoder)
        embeds = self.encoder(inputs.input_ids[:, keep].to(device),
                              attention_mask=inputs.attention_mask[:, keep].to(device)
                              ).text_embeds
        return torch.nn.functional.normalize(embeds, dim=-1)


def _device(module: torch.nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
