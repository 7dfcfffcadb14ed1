"""Autoregressive sampling shared by the native GPT and the transformers format.

A backend supplies ``prefill(ids) -> logits`` (the prompt, (B, T) -> (B, V)) and
``step(ids) -> logits`` (one new token per row, (B, 1) -> (B, V)); this module picks tokens.
Each row draws from its own CPU generator on CPU probabilities, so sample i depends only on
its generator (and so on (seed, i)), never on the batch it was drawn in.
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Protocol, Sequence

import torch

from genzoo.errors import OptionError


class Backend(Protocol):
    def prefill(self, ids: torch.Tensor) -> torch.Tensor: ...
    def step(self, ids: torch.Tensor) -> torch.Tensor: ...


def check_sampling(max_new_tokens, temperature, top_k, top_p) -> None:
    """One-line errors for out-of-range sampling options."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise OptionError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if temperature < 0:
        raise OptionError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise OptionError(f"top_k must be a positive integer, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise OptionError(f"top_p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None,
                  top_p: float | None) -> torch.Tensor:
    """Float logits (B, V) scaled by 1/temperature, outside top-k / the top-p nucleus -inf."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop = (probs.cumsum(-1) - probs) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def pick_tokens(logits: torch.Tensor, generators: Sequence[torch.Generator], active: list[bool],
                temperature: float, top_k: int | None, top_p: float | None) -> list[int]:
    """The next token of each row: argmax when ``temperature`` is 0, else a draw from row i's
    filtered distribution with ``generators[i]`` (inactive rows get argmax, no draw)."""
    logits = logits.detach().float().cpu()
    greedy = logits.argmax(-1).tolist()
    if temperature == 0:
        return greedy
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    return [int(torch.multinomial(probs[i], 1, generator=g)) if on else greedy[i]
            for i, (g, on) in enumerate(zip(generators, active))]


class _Streamer:
    """Sends the text of one sample in pieces as it grows, holding back an incomplete UTF-8
    character and anything that could still turn out to be the start of a stop string."""

    def __init__(self, callback: Callable[[str], None], hold: int, prompt: str):
        self.callback, self.hold, self.sent, self.floor = callback, hold, 0, len(prompt)
        self.update(prompt)

    def update(self, text: str, final: bool = False) -> None:
        end = len(text) if final else max(self.sent, self.floor,
                                          len(text.rstrip("\ufffd")) - self.hold)
        if end > self.sent:
            self.callback(text[self.sent:end])
            self.sent = end


def _cut_at_stop(text: str, stop: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


class TextBatch(list):
    """The texts of one batch (a plain list to its callers) with their usage figures:
    ``prompt_tokens`` (tokens of the prompt), ``completion_tokens`` (tokens generated per
    text) and ``finish_reasons`` ("stop": an end id or a stop string; "length")."""

    prompt_tokens: int = 0
    completion_tokens: list[int]
    finish_reasons: list[str]

    def __getitem__(self, index):  # type: ignore[override]
        """A slice keeps its rows' figures (a server splits one batch among its requests)."""
        if not isinstance(index, slice):
            return super().__getitem__(index)
        part = TextBatch(super().__getitem__(index))
        part.prompt_tokens = self.prompt_tokens
        part.completion_tokens = list(getattr(self, "completion_tokens", []))[index]
        part.finish_reasons = list(getattr(self, "finish_reasons", []))[index]
        return part


def generate_ids(backend: Backend, prompt_ids: list[int], generators: Sequence[torch.Generator],
                 max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_id: int | Collection[int] | None = None,
                 on_token: Callable[[int, list[int]], bool] | None = None,
                 device=None) -> list[list[int]]:
    """New token ids for each of ``len(generators)`` rows continuing ``prompt_ids``. A row ends
    at an end id (``eos_id``: one id or several; not included) or when ``on_token(row, ids)``
    returns True."""
    ends = set() if eos_id is None else {eos_id} if isinstance(eos_id, int) else set(eos_id)
    n = len(generators)
    out: list[list[int]] = [[] for _ in range(n)]
    active = [True] * n
    logits = backend.prefill(torch.tensor([prompt_ids] * n, dtype=torch.long, device=device))
    for t in range(max_new_tokens):
        nxt = pick_tokens(logits, generators, active, temperature, top_k, top_p)
        for i, tok in enumerate(nxt):
            if not active[i]:
                continue
            if tok in ends:
                active[i] = False
                continue
            out[i].append(tok)
            if on_token is not None and on_token(i, out[i]):
                active[i] = False
        if not any(active) or t == max_new_tokens - 1:
            break
        logits = backend.step(torch.tensor(nxt, dtype=torch.long, device=device)[:, None])
    return out


def stop_strings(stop: str | Sequence[str] | None) -> list[str]:
    """The ``stop`` option as a list; an empty stop string would cut every text at once, so it
    means no stop."""
    return [s for s in ([stop] if isinstance(stop, str) else stop or []) if s]


def tokenizer_end_ids(tokenizer: Any) -> list[int]:
    """The ids that end a sample: the tokenizer's ``end_ids`` (every end id of the model's
    generation config), else its ``eos_id``; None-free."""
    ids = getattr(tokenizer, "end_ids", None) or [tokenizer.eos_id]
    return [i for i in ids if i is not None]


def generate_texts(backend: Backend, tokenizer, generators: Sequence[torch.Generator], *,
                   prompt: str = "", max_new_tokens: int = 256, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None,
                   stop: str | Sequence[str] | None = None,
                   stream: Callable[[str], None] | None = None, device=None,
                   prompt_ids: list[int] | None = None,
                   end_ids: Collection[int] | None = None) -> TextBatch:
    """Texts (prompt + continuation, cut before the first ``stop`` string) for each generator.

    Given ``prompt_ids`` (a rendered conversation) instead of ``prompt``, the texts are the
    replies alone. Rows end at any of ``end_ids`` (default: the tokenizer's ``end_ids``, else
    its ``eos_id``). With one generator and a ``stream`` callable, the prompt text (if any) and
    then each new piece are passed to ``stream`` as they are generated (the pieces add up to
    the returned text).
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    if not isinstance(prompt, str):
        raise OptionError(f"prompt must be a string, got {type(prompt).__name__}")
    stops = stop_strings(stop)
    reply_only = prompt_ids is not None
    if reply_only:
        prompt = ""
    else:
        prompt_ids = tokenizer.encode(prompt) if prompt else []
        if not prompt_ids:
            prompt_ids, prompt = tokenizer.start_ids(), ""
    if end_ids is None:
        end_ids = tokenizer_end_ids(tokenizer)
    streamer = None
    if stream is not None and len(generators) == 1:
        streamer = _Streamer(stream, max((len(s) for s in stops), default=1) - 1, prompt)
    texts = [""] * len(generators)
    cut_rows: set[int] = set()
    prefix = "" if reply_only else tokenizer.decode(prompt_ids)

    def continuation(ids: list[int]) -> str:
        # decode with the prompt so that tokenizers that drop a leading space (SentencePiece)
        # join the two correctly; fall back to the new ids alone if that is not a prefix.
        # A reply is decoded alone, as transformers' chat pipelines do.
        if reply_only:
            return tokenizer.decode(ids)
        full = tokenizer.decode(prompt_ids + ids)
        return full[len(prefix):] if full.startswith(prefix) else tokenizer.decode(ids)

    def on_token(i: int, ids: list[int]) -> bool:
        text = continuation(ids)
        cut = _cut_at_stop(text, stops) if stops else None
        texts[i] = text if cut is None else text[:cut]
        if cut is not None:
            cut_rows.add(i)
        if streamer is not None:
            streamer.update(prompt + texts[i], final=cut is not None)
        return cut is not None

    ids = generate_ids(backend, prompt_ids, generators, max_new_tokens, temperature, top_k,
                       top_p, [i for i in end_ids if i is not None],
                       on_token if (stops or streamer) else None, device)
    if not (stops or streamer):
        texts = [continuation(row) for row in ids]
    if streamer is not None:
        streamer.update(prompt + texts[0], final=True)
    out = TextBatch(prompt + t for t in texts)
    out.prompt_tokens = len(prompt_ids)
    out.completion_tokens = [len(row) for row in ids]
    # a row shorter than the limit ended on an end id; a stop string may end it at the limit
    out.finish_reasons = ["stop" if i in cut_rows or len(row) < max_new_tokens else "length"
                          for i, row in enumerate(ids)]
    return out
