"""Step-by-step decoding: many requests' sequences advanced together, one token per step.

This is genzoo's optional stepping contract (``GenerativeModel.start_sequence`` /
``step_sequences``) for the text LMs. Each sequence owns its key/value cache, its generator
and its stopping rules; a step stacks every live sequence's last token and runs ONE forward
over the batch, so a server can admit a request between two steps and retire another as soon
as it ends (continuous batching).

Exactness: a sequence's tokens are picked with ``sampling.pick_tokens`` on its own row and
generator, and ended by the same rules as ``sampling.generate_ids`` (an end id, ``on_token``,
``max_new_tokens``), so it gets the tokens it would get alone, up to the float rounding of a
batched matmul:

* the native GPT uses *ragged* attention: the projections and MLPs run batched, attention
  runs per row against that row's own cache (no padding, no mask: the same kernel call as an
  unbatched step);
* a transformers model runs with its caches *left-padded* to a common length, a 0/1 attention
  mask and per-row ``position_ids``; the padded keys are masked out, so each row sees exactly
  its own past. The padded batch cache is kept between steps and rebuilt only when a sequence
  joins or leaves.

Measured (CPU, fp32): 96 sequences with random prompts (1-40 tokens), limits (1-60 tokens)
and joining steps (0-40), greedy and sampled, on textlm-shakespeare and the tests' tiny Qwen2
chat model, all equal token for token to their one-at-a-time runs.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from genzoo.samples import Samples

from .sampling import (_cut_at_stop, _Streamer, check_sampling, pick_tokens, stop_strings,
                       tokenizer_end_ids)

OnToken = Callable[[list[int]], bool]


class TokenSequence:
    """One sequence's decoding state at the level of token ids.

    ``ids`` are the new tokens so far; ``done`` and ``finish_reason`` ("stop": an end id or
    ``on_token`` said so; "length": ``max_new_tokens`` reached) say whether it ended.
    ``next_id`` is the token the next step feeds (None when done); ``cache`` belongs to the
    model's stepper."""

    def __init__(self, prompt_ids: list[int], generator: torch.Generator, max_new_tokens: int,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 end_ids: Sequence[int] = (), on_token: OnToken | None = None):
        self.prompt_ids = list(prompt_ids)
        self.generator, self.max_new_tokens = generator, max_new_tokens
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.end_ids, self.on_token = frozenset(int(i) for i in end_ids), on_token
        self.ids: list[int] = []
        self.done, self.finish_reason = False, None  # type: bool, str | None
        self.next_id: int | None = None
        self.cache: Any = None

    def accept(self, logits: torch.Tensor) -> None:
        """Pick the next token from this row's (1, V) logits and apply the stopping rules, in
        the order ``sampling.generate_ids`` applies them."""
        tok = pick_tokens(logits, [self.generator], [True], self.temperature, self.top_k,
                          self.top_p)[0]
        self.next_id = None
        if tok in self.end_ids:
            self.done, self.finish_reason = True, "stop"
            return
        self.ids.append(tok)
        if self.on_token is not None and self.on_token(self.ids):
            self.done, self.finish_reason = True, "stop"
        elif len(self.ids) >= self.max_new_tokens:
            self.done, self.finish_reason = True, "length"
        else:
            self.next_id = tok

    def stop(self, reason: str = "cancelled") -> None:
        """End the sequence now (its request was cancelled) and free its cache."""
        self.done, self.finish_reason, self.next_id = True, reason, None
        self._free()

    def _free(self) -> None:
        """Let go of the keys/values (a shared batch cache goes when no row is live)."""
        owner, self.cache = self.cache, None
        if hasattr(owner, "release"):
            owner.release()


#: A transformers model's stepper holds its batch cache between steps: one per model, kept
#: only while the model lives (the stepper references ``model.hf``, never the model).
_HF_STEPPERS: "weakref.WeakKeyDictionary[Any, HFStepper]" = weakref.WeakKeyDictionary()


def has_stepper(model: Any) -> bool:
    """Whether ``stepper_for`` can step ``model``: a transformers model (it holds ``hf``) or
    the native GPT (it holds GPT-2's modules); another ``TextLM`` subclass cannot."""
    from .gpt import GPT
    return hasattr(model, "hf") or isinstance(model, GPT)


def stepper_for(model: Any) -> "GPTStepper | HFStepper":
    """The stepper of a text LM: ragged attention for the native GPT (stateless), padded
    caches for a transformers model (told apart by what the model holds, not by its name)."""
    if hasattr(model, "hf"):
        if model not in _HF_STEPPERS:
            _HF_STEPPERS[model] = HFStepper(model.hf)
        return _HF_STEPPERS[model]
    return GPTStepper(model)


def start(stepper: "GPTStepper | HFStepper", seq: TokenSequence) -> TokenSequence:
    """Prefill ``seq``'s prompt alone and pick its first token."""
    seq.accept(stepper.prefill(seq))
    if seq.done:
        seq._free()
    return seq


def step(stepper: "GPTStepper | HFStepper", seqs: Sequence[TokenSequence]) -> None:
    """Advance every live sequence of ``seqs`` by one token with one batched forward."""
    live = [s for s in seqs if not s.done and s.next_id is not None]
    if not live:
        return
    # on the CPU once for the whole batch (pick_tokens works there): not one sync per row
    logits = stepper.step(live).detach().float().cpu()
    for i, s in enumerate(live):
        s.accept(logits[i:i + 1])
        if s.done:
            s._free()  # memory goes back at once, not when the request is collected


# ---- the native GPT: ragged attention over per-sequence caches ------------------------------
class GPTStepper:
    """Batched steps of ``gpt.GPT`` over per-sequence ``KVCache``s (batch 1 each). When a
    sequence's context is full its cache restarts from its last ``n_positions // 2`` tokens,
    as ``model._CachedDecoder`` does, alone (a rare, one-off re-read)."""

    def __init__(self, model: Any):
        self.model, self.n = model, model.gpt_config.n_positions

    def _restart(self, seq: TokenSequence, ids: list[int]) -> torch.Tensor:
        seq.cache = self.model.new_cache(1)
        x = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        return self.model(x, seq.cache, last_only=True)[:, -1]

    def prefill(self, seq: TokenSequence) -> torch.Tensor:
        """(1, V) logits after the prompt (its last ``n_positions`` tokens)."""
        return self._restart(seq, seq.prompt_ids[-self.n:])

    def step(self, seqs: Sequence[TokenSequence]) -> torch.Tensor:
        """(B, V) next-token logits after feeding each sequence its ``next_id``."""
        out: list[torch.Tensor | None] = [None] * len(seqs)
        batch = []
        for i, s in enumerate(seqs):
            if s.cache.pos >= self.n:
                out[i] = self._restart(s, (s.prompt_ids + s.ids)[-max(1, self.n // 2):])[0]
            else:
                batch.append(i)
        if batch:
            logits = self._forward([seqs[i] for i in batch])
            for j, i in enumerate(batch):
                out[i] = logits[j]
        return torch.stack(out)  # type: ignore[arg-type]

    def _forward(self, seqs: Sequence[TokenSequence]) -> torch.Tensor:
        m, dev = self.model, self.model.device
        t = m.transformer
        idx = torch.tensor([[s.next_id] for s in seqs], dtype=torch.long, device=dev)
        pos = torch.tensor([[s.cache.pos] for s in seqs], dtype=torch.long, device=dev)
        x = t.drop(t.wte(idx) + t.wpe(pos))
        for block in t.h:
            x = x + _ragged_attention(block.attn, block.ln_1(x), [s.cache for s in seqs])
            x = x + block.mlp(block.ln_2(x))
        for s in seqs:
            s.cache.pos += 1
        return m.lm_head(t.ln_f(x))[:, -1]


def _ragged_attention(attn: Any, x: torch.Tensor, caches: list[Any]) -> torch.Tensor:
    """``gpt.CausalSelfAttention`` for one new token per row, row i attending to its own
    cache: the projections batched, the attention per row (as an unbatched step computes it)."""
    B, T, C = x.shape
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (u.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for u in (q, k, v))
    rows = []
    for i, cache in enumerate(caches):
        keys, values = cache.update(attn.layer_idx, k[i:i + 1], v[i:i + 1])
        rows.append(F.scaled_dot_product_attention(q[i:i + 1], keys, values, scale=attn.scale))
    y = torch.cat(rows).transpose(1, 2).reshape(B, T, C)
    return attn.resid_dropout(attn.c_proj(y))


# ---- transformers: left-padded caches, a mask and per-row positions ------------------------
class HFStepper:
    """Batched steps of a transformers causal LM. A sequence keeps its own keys/values after
    its prefill; when the batch's membership changes (one joins or leaves) every member's
    keys/values are left-padded to the longest into one cache, the padding masked out and each
    row given its own positions. Between changes the batch cache simply grows by a column per
    step (no copying), so only joins and leaves cost a regrouping."""

    def __init__(self, hf: Any):
        import inspect
        self.hf = hf
        # the argument is ``cache`` in newer transformers, ``past_key_values`` before
        self.key = "cache" if "cache" in inspect.signature(hf.forward).parameters \
            else "past_key_values"
        self.rows: list[TokenSequence] = []  # whose keys/values ``cache`` holds, by row
        self.cache: Any = None
        self.pad: list[int] = []  # each row's left padding
        self.mask: torch.Tensor | None = None  # (rows, width), 0 on padding

    def _run(self, ids: torch.Tensor, cache: Any = None, **kw: Any):
        out = self.hf(input_ids=ids, use_cache=True, **{self.key: cache}, **kw)
        return out.logits[:, -1], getattr(out, self.key)

    def prefill(self, seq: TokenSequence) -> torch.Tensor:
        """(1, V) logits after the prompt, as ``transformers_format._HFDecoder.prefill``."""
        x = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self.hf.device)
        logits, seq.cache = self._run(x)
        return logits

    def step(self, seqs: Sequence[TokenSequence]) -> torch.Tensor:
        """(B, V) next-token logits after feeding each sequence its ``next_id``."""
        if len(seqs) != len(self.rows) or any(a is not b for a, b in zip(seqs, self.rows)):
            self._regroup(seqs)
        assert self.mask is not None  # set by _regroup
        dev, width = self.hf.device, self.mask.size(1)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(seqs), 1)], 1)
        ids = torch.tensor([[s.next_id] for s in seqs], dtype=torch.long, device=dev)
        pos = torch.tensor([[width - p] for p in self.pad], dtype=torch.long, device=dev)
        # no padding (one row, or rows of one length): no mask, as an unbatched step runs
        mask = self.mask if any(self.pad) else None
        logits, self.cache = self._run(ids, self.cache, attention_mask=mask, position_ids=pos)
        return logits

    def _regroup(self, seqs: Sequence[TokenSequence]) -> None:
        """One left-padded cache for ``seqs``: rows taken from the old batch cache (without
        their padding) or from a newcomer's own prefill cache."""
        from transformers import DynamicCache
        old = _layers(self.cache) if self.rows else []
        kvs = []
        for s in seqs:
            i = next((i for i, r in enumerate(self.rows) if r is s), None)
            if i is None:
                kvs.append(_layers(s.cache))
            else:
                kvs.append([(k[i:i + 1, :, self.pad[i]:], v[i:i + 1, :, self.pad[i]:])
                            for k, v in old])
        lengths = [kv[0][0].size(2) for kv in kvs]
        longest = max(lengths)
        cache = DynamicCache()
        for layer in range(len(kvs[0])):
            cache.update(torch.cat([_pad_left(kv[layer][0], longest) for kv in kvs]),
                         torch.cat([_pad_left(kv[layer][1], longest) for kv in kvs]), layer)
        self.cache, self.rows = cache, list(seqs)
        self.pad = [longest - n for n in lengths]
        self.mask = torch.ones(len(seqs), longest, dtype=torch.long, device=self.hf.device)
        for i, p in enumerate(self.pad):
            self.mask[i, :p] = 0
        for s in seqs:
            s.cache = self  # its keys/values live in this batch now

    def release(self) -> None:
        """Drop the batch cache once none of its rows is live (memory back between bursts)."""
        if all(r.done for r in self.rows):
            self.rows, self.cache, self.pad, self.mask = [], None, [], None


def _pad_left(t: torch.Tensor, length: int) -> torch.Tensor:
    """(1, H, n, D) -> (1, H, length, D), zeros first (masked out by the attention mask)."""
    n = t.size(2)
    return t if n == length else F.pad(t, (0, 0, length - n, 0))


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a transformers cache, whichever cache API it has."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v, *_ in cache]  # the legacy tuple of tuples


# ---- text: what ``TextLM.start_sequence`` / ``step_sequences`` / ``collect_sequences`` give ----
class TextSequence:
    """One text sample being decoded: its ``TokenSequence`` plus the text rules of
    ``sampling.generate_texts`` (cut before the first stop string; pieces held back while
    they may still be the start of a stop string or an incomplete character; a reply to a
    conversation decoded alone, a prompt's continuation decoded after the prompt)."""

    def __init__(self, tokenizer: Any, prompt: str, prompt_ids: list[int], stops: list[str],
                 reply_only: bool = False):
        self.tokenizer, self.prompt, self.prompt_ids, self.stops = \
            tokenizer, prompt, prompt_ids, stops
        self.reply_only = reply_only
        self.prefix = "" if reply_only else tokenizer.decode(prompt_ids)
        self.text = ""  # the continuation so far, cut at a stop string
        self._pieces: list[str] = []
        self._streamer = _Streamer(self._pieces.append,
                                   max((len(s) for s in stops), default=1) - 1, prompt)
        self.tokens: TokenSequence | None = None

    @property
    def done(self) -> bool:
        """Whether the sample has ended (stop, end id, length or ``stop()``)."""
        return self.tokens is None or self.tokens.done

    def on_token(self, ids: list[int]) -> bool:
        """``TokenSequence``'s callback: with stop strings, update the text and say whether
        one appeared (without any, the text is decoded only when asked for)."""
        if not self.stops:
            return False
        text = self._decode(ids)
        cut = _cut_at_stop(text, self.stops)
        self.text = text if cut is None else text[:cut]
        return cut is not None

    def _decode(self, ids: list[int]) -> str:
        if self.reply_only:
            return self.tokenizer.decode(ids)
        # as generate_texts: decode with the prompt so a leading space joins correctly
        full = self.tokenizer.decode(self.prompt_ids + ids)
        return full[len(self.prefix):] if full.startswith(self.prefix) \
            else self.tokenizer.decode(ids)

    def _current(self) -> str:
        if not self.stops and self.tokens is not None:
            self.text = self._decode(self.tokens.ids)
        return self.text

    def settle(self) -> None:
        """After the last token: the final text."""
        self._current()

    def take_piece(self) -> str:
        """The text produced since the last call ("" when nothing new), holding back what
        may still be the start of a stop string or an incomplete character until the end."""
        self._streamer.update(self.prompt + self._current(), final=self.done)
        out = "".join(self._pieces)
        self._pieces.clear()
        return out

    def stop(self) -> None:
        """End now (the request was cancelled); the cache is freed."""
        if self.tokens is not None:
            self.tokens.stop()

    def result(self) -> str:
        """The sample as ``generate`` returns it: prompt + continuation, or the reply."""
        return self.prompt + self.text


def start_text(model: Any, generator: torch.Generator, prompt: str = "",
               max_new_tokens: int = 256, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, stop: str | Sequence[str] | None = None,
               messages: Any = None, system: str | None = None, **_: Any) -> TextSequence:
    """``TextLM.start_sequence``: check the options as ``generate_texts`` does, prefill the
    prompt and pick the first token."""
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    model._need_tokenizer()
    tok = model.tokenizer
    stops = stop_strings(stop)
    prompt, prompt_ids, reply_only = model.request_ids(prompt, messages, system)
    seq = TextSequence(tok, prompt, prompt_ids, stops, reply_only)
    seq.tokens = TokenSequence(prompt_ids, generator, max_new_tokens, temperature, top_k, top_p,
                               tokenizer_end_ids(tok), seq.on_token)
    start(stepper_for(model), seq.tokens)
    if seq.done:
        seq.settle()
    return seq


def step_texts(model: Any, seqs: Sequence[TextSequence]) -> None:
    """``TextLM.step_sequences``: one batched step of every live sequence."""
    live = [s for s in seqs if not s.done]
    step(stepper_for(model), [s.tokens for s in live])  # type: ignore[misc]
    for s in live:
        if s.done:
            s.settle()


def collect_texts(seqs: Sequence[TextSequence], meta: dict[str, Any]) -> Samples:
    """``TextLM.collect_sequences``: one request's texts, with the usage figures
    ``TextLM.sample`` records (prompt_tokens, completion_tokens, finish_reasons)."""
    meta = {k: v for k, v in meta.items() if k != "stream"}
    meta.update(prompt_tokens=len(seqs[0].prompt_ids) if seqs else 0,
                completion_tokens=[len(s.tokens.ids) if s.tokens else 0 for s in seqs],
                finish_reasons=[s.tokens.finish_reason if s.tokens else "stop" for s in seqs])
    return Samples(texts=[s.result() for s in seqs], meta=meta)
