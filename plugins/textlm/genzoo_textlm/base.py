"""`TextLM`: what every text-LM architecture shares on top of ``genzoo.GenerativeModel`` —
sampling options, text data for finetuning, the next-token loss and ``score_text``.

A subclass provides ``logits(ids)``, ``backend()`` (a ``sampling.Backend``), ``max_context``
and a ``tokenizer`` with the ``TextTokenizer`` methods.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from genzoo.errors import OptionError, WeightsError
from genzoo.model import GenerativeModel
from genzoo.options import Option
from genzoo.samples import Samples

from .chat import conversation
from .decoding import collect_texts, has_stepper, start_text, step_texts
from .sampling import TextBatch, generate_texts
from .scoring import score_ids, score_report
from .textdata import text_dataset

#: Longest training window by default (CPU-friendly; a model's context may be longer).
DEFAULT_TRAIN_CTX = 256


class TextLM(GenerativeModel):
    """Shared behaviour of the text LMs (family ``textlm``, modality ``text``)."""

    family: ClassVar[str] = "textlm"
    modality: ClassVar[str] = "text"
    data_help: ClassVar[str] = "a UTF-8 text file or a folder of .txt files"
    sample_defaults: ClassVar[dict[str, Any]] = dict(
        prompt="", messages=None, system=None, max_new_tokens=256, temperature=1.0, top_k=None,
        top_p=None, stop=None, stream=None, batch_size=16)
    sample_options: ClassVar[tuple[Option, ...]] = (
        Option("prompt", "str", "", "text the samples continue"),
        Option("messages", "json", None, "a conversation, [{role, content}, ...]: the samples "
               "are the assistant's reply (chat models; the CLI takes a .json file)"),
        Option("system", "str", None, "a system message put first in the conversation"),
        Option("max_new_tokens", "int", 256, "tokens to generate per sample", min=1),
        Option("temperature", "float", 1.0, "softmax temperature (0: greedy)", min=0.0),
        Option("top_k", "int", None, "keep the k most likely tokens", min=1),
        Option("top_p", "float", None, "keep the smallest set of tokens holding this mass",
               min=1e-6, max=1.0),
        Option("stop", "strs", None, "a string that ends a sample (repeat the flag for several)"),
        Option("stream", "callable", None, "API only: receives the text piece by piece (n=1)"),
        Option("batch_size", "int", 16, "samples generated together", min=1),
    )
    eval_defaults: ClassVar[dict[str, Any]] = {"n": 32, "max_new_tokens": 200}
    train_defaults: ClassVar[dict[str, Any]] = dict(
        batch_size=16, lr=3e-4, warmup=50, weight_decay=0.1, grad_clip=1.0, betas=(0.9, 0.95))

    tokenizer: Any = None
    #: Whether sampling may run past ``max_context`` (a decoder that slides its window); one
    #: that cannot refuses a prompt that leaves no room for a reply.
    slides_context: ClassVar[bool] = False
    #: Training window length for ``prepare_data``; None means min(context, 256).
    train_ctx: int | None = None

    # ---- provided by the architecture -----------------------------------------------------
    @property
    def max_context(self) -> int:
        """The most tokens the model attends to at once."""
        raise NotImplementedError

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, V) next-token logits for (B, T) token ids."""
        raise NotImplementedError

    def backend(self):
        """A fresh ``sampling.Backend`` (prefill/step with a key/value cache)."""
        raise NotImplementedError

    # ---- sampling ------------------------------------------------------------------------
    def sample(self, n: int = 16, seed: int = 0, batch_size: int | None = None,
               progress: Any = False, *, distributed: str = "all", **options):
        """Draw ``n`` texts (see ``generate`` for the options); sample i depends only on
        (seed, i). With n=1, ``stream=callable`` receives the text piece by piece. ``meta``
        holds the usage: ``prompt_tokens``, ``completion_tokens`` and ``finish_reasons``
        (one per sample). ``distributed``: as ``GenerativeModel.iter_samples`` (a rank given
        no batch by ``main`` or ``local`` gets no texts)."""
        parts = list(self.iter_samples(n, seed, batch_size, progress, distributed=distributed,
                                       **options))
        if not parts:
            return Samples(texts=[], meta=self.plan_sampling(n, seed, batch_size, **options).meta)
        meta = {k: v for k, v in parts[0].meta.items() if k not in ("start", "stream")}
        for key in ("completion_tokens", "finish_reasons"):
            meta[key] = [x for p in parts for x in p.meta.get(key, ())]
        return Samples(texts=[t for p in parts for t in p.texts or ()], meta=meta)

    def to_samples(self, out: Any, meta: dict[str, Any], start: int) -> Samples:
        """One batch of texts with its usage figures (``TextBatch``) in ``meta``."""
        meta = dict(meta)
        if isinstance(out, TextBatch):
            meta.update(prompt_tokens=out.prompt_tokens,
                        completion_tokens=list(out.completion_tokens),
                        finish_reasons=list(out.finish_reasons))
        return Samples(texts=list(out), meta=meta)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The schema's checks, then a conversation's: well-formed messages, no prompt
        beside them, and a chat template to render them (one-line ``OptionError``s)."""
        opts = super().check_options(options)
        if opts.get("messages") is None and opts.get("system") is None:
            return opts
        if opts.get("prompt") and opts.get("messages") is not None:
            raise OptionError("give either a prompt or messages, not both")
        if opts.get("prompt"):  # --system with --prompt: a one-question conversation
            opts["messages"], opts["prompt"] = [{"role": "user", "content": opts["prompt"]}], ""
        opts["messages"] = conversation(opts.get("messages"), opts.get("system"))
        opts["system"] = None  # now the first message
        self._need_tokenizer()
        self._need_template()
        return opts

    def _need_template(self) -> None:
        """A model given a conversation must have a chat template to render it."""
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise OptionError(f"{self.name_or_path or self.arch} has no chat template "
                              f"({self.no_template_hint}), so it takes a prompt, not messages")

    #: Said when a model without a chat template is given messages.
    no_template_hint: ClassVar[str] = ("none in tokenizer_config.json or chat_template.jinja")

    def generate(self, generators: list[torch.Generator], prompt: str = "",
                 max_new_tokens: int = 256, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, stop=None, stream=None, messages=None,
                 system: str | None = None) -> TextBatch:
        """One text per generator: ``prompt`` plus up to ``max_new_tokens`` tokens drawn at
        ``temperature`` (0: greedy) from the ``top_k`` / ``top_p`` filtered distribution, cut
        before the first ``stop`` string (a string or a list) or at any end id. Given
        ``messages`` (and/or ``system``), the chat template renders them as the prompt and the
        texts are the assistant's replies alone. ``stream`` (one generator only) receives the
        prompt, then each new piece of text."""
        self._need_tokenizer()
        prompt, ids, reply_only = self.request_ids(prompt, messages, system)
        return generate_texts(self.backend(), self.tokenizer, generators, prompt=prompt,
                              max_new_tokens=max_new_tokens, temperature=temperature,
                              top_k=top_k, top_p=top_p, stop=stop, stream=stream,
                              device=self.device,
                              prompt_ids=ids if reply_only else None)

    def request_ids(self, prompt: str, messages: Any, system: str | None
                    ) -> tuple[str, list[int], bool]:
        """(prompt text, prompt ids, replies only) of one request, for ``generate`` and the
        step-by-step path alike: a conversation rendered by the chat template, else the
        prompt (or the start ids); a prompt leaving a non-sliding model no room is refused."""
        tok = self.tokenizer
        if messages is not None or system is not None:
            self._need_template()
            ids = tok.chat_ids(conversation(messages, system))
            self._check_room(len(ids))
            return "", ids, True
        if not isinstance(prompt, str):
            raise OptionError(f"prompt must be a string, got {type(prompt).__name__}")
        ids = tok.encode(prompt) if prompt else []
        self._check_room(len(ids))
        return (prompt, ids, False) if ids else ("", tok.start_ids(), False)

    def _check_room(self, prompt_tokens: int) -> None:
        """A decoder that cannot slide refuses a prompt that fills its context."""
        if not self.slides_context and prompt_tokens >= self.max_context:
            raise OptionError(f"the prompt is {prompt_tokens} tokens; "
                              f"{self.name_or_path or self.arch} reads at most "
                              f"{self.max_context}, leaving no room for a reply")

    # ---- step by step: continuous batching in `genzoo serve` (genzoo_textlm.decoding) ----
    @property
    def supports_stepping(self) -> bool:  # type: ignore[override]
        """True for the native GPT and transformers models (``decoding.has_stepper``)."""
        return has_stepper(self)

    def start_sequence(self, generator: torch.Generator, **options: Any) -> Any:
        """One sample's decoding state after its prompt's prefill and first token."""
        return start_text(self, generator, **options)

    def step_sequences(self, states: list[Any]) -> None:
        """One more token for every live state, in one batched forward."""
        step_texts(self, states)

    def collect_sequences(self, states: list[Any], meta: dict[str, Any]) -> Samples:
        """A request's finished states as texts, with their usage figures in ``meta``."""
        return collect_texts(states, meta)

    # ---- training ------------------------------------------------------------------------
    def prepare_data(self, data: Any):
        """A text file or folder (or token ids) as (ctx + 1)-token training windows."""
        self._need_tokenizer()
        ctx = self.train_ctx or min(self.max_context, DEFAULT_TRAIN_CTX)
        return text_dataset(data, self.tokenizer, ctx)

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats/token) of a (B, ctx + 1) batch of windows."""
        batch = batch.to(self.device)
        logits = self.logits(batch[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate_metrics(self, reference: str, *, seed: int = 0) -> dict[str, float]:
        """What ``genzoo eval`` reports beyond diversity: the held-out text's likelihood
        (nats per token and per character, perplexity, bits per character; see ``score_text``)."""
        return dict(self.score_text(reference))

    def score_text(self, text: str, batch_size: int = 16, ctx: int | None = None,
                   stride: int | None = None) -> dict[str, float]:
        """Negative log-likelihood of ``text``: a dict of nats_per_token, nats_per_char,
        tokens, chars (those scored: all but the first token), perplexity (per token) and
        bits_per_char. Non-overlapping windows of ``ctx`` tokens (default: the model's
        context) unless ``stride`` is given; see ``genzoo_textlm.scoring``."""
        self._need_tokenizer()
        ctx = ctx or self.max_context
        if not 1 <= ctx <= self.max_context:
            raise OptionError(f"ctx must be between 1 and the model's context "
                              f"({self.max_context}), got {ctx}")
        ids, offsets = self.tokenizer.encode_with_offsets(text)
        if len(ids) < 2:
            raise OptionError("the text is too short to score: give at least two tokens")
        was_training = self.training
        self.eval()
        try:
            with self.autocast():
                total = score_ids(self.logits, ids, ctx, batch_size, stride, self.device)
        finally:
            self.train(was_training)
        return score_report(total, len(ids) - 1, len(text) - offsets[0][1])

    def _need_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise WeightsError(f"{self.name_or_path or self.arch}: this model has no tokenizer; "
                               "load a folder with tokenizer.json or set model.tokenizer")
