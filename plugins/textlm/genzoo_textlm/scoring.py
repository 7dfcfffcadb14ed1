"""Scoring text: the negative log-likelihood of a text under a causal LM, per token and char.

The text is tokenized once. The first token has no context and is not scored; every other
token is scored exactly once. With ``stride=None`` (the default) the text is cut into
non-overlapping windows of ``ctx`` predictions (consecutive windows share one token, the
context of the next; the last, shorter one is filled back to ``ctx`` with earlier tokens as
context), so a token sees between 0 and ctx-1 earlier tokens, the way nanoGPT's validation
loss is measured. With ``stride=S < ctx`` windows slide by S tokens and score only
their last S tokens, which then all see at least ctx-S earlier tokens (lower, "strided"
perplexity, as in the transformers perplexity guide).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from genzoo.errors import OptionError


def windows(n_tokens: int, ctx: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """(start, end, n_scored) for each window over ``n_tokens`` tokens: the window feeds
    tokens[start:end-1] and scores the last ``n_scored`` of the targets tokens[start+1:end]."""
    stride = stride or ctx
    if not 0 < stride <= ctx:
        raise OptionError(f"stride must be between 1 and ctx ({ctx}), got {stride}")
    if n_tokens < 2:
        return []
    end = min(ctx + 1, n_tokens)
    out = [(0, end, end - 1)]
    while end < n_tokens:
        new_end = min(end + stride, n_tokens)
        out.append((max(0, new_end - ctx - 1), new_end, new_end - end))
        end = new_end
    return out


@torch.inference_mode()
def score_ids(logits_fn: Callable[[torch.Tensor], torch.Tensor], ids: list[int], ctx: int,
              batch_size: int = 16, stride: int | None = None, device=None) -> float:
    """Total nats of ``ids[1:]`` given their windows' context; ``logits_fn`` maps (B, T) ids
    to (B, T, V) logits. Windows of equal length are batched together."""
    if batch_size < 1:
        raise OptionError(f"batch_size must be a positive integer, got {batch_size}")
    ids_t = torch.tensor(ids, dtype=torch.long)
    by_len: dict[int, list[tuple[int, int, int]]] = {}
    for w in windows(len(ids), ctx, stride):
        by_len.setdefault(w[1] - w[0], []).append(w)
    total = 0.0
    for length, group in by_len.items():
        for b in range(0, len(group), batch_size):
            chunk = group[b:b + batch_size]
            x = torch.stack([ids_t[s:e] for s, e, _ in chunk]).to(device)
            logits = logits_fn(x[:, :-1]).float()
            nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
            total += sum(float(nll[i, length - 1 - k:].sum()) for i, (_, _, k) in enumerate(chunk))
    return total


def score_report(total_nats: float, tokens: int, chars: int) -> dict[str, float]:
    """The numbers ``score_text`` returns, from a total NLL and the counts it covers."""
    if tokens < 1 or chars < 1:
        raise OptionError("the text is too short to score: give at least two tokens of text")
    per_char = total_nats / chars
    return {"nats_per_token": total_nats / tokens, "nats_per_char": per_char,
            "tokens": tokens, "chars": chars,
            "perplexity": math.exp(total_nats / tokens), "bits_per_char": per_char / math.log(2)}
