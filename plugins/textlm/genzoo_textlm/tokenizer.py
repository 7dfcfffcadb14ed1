"""Tokenizers for the text LMs: the ``tokenizers`` library's ``tokenizer.json`` format.

``TextTokenizer`` is the small interface the sampler, the scorer and the data loader use; it
wraps a ``tokenizers.Tokenizer`` (what GPT-2 folders and genzoo's own models ship). The
transformers format wraps its own tokenizer with the same methods.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from genzoo.errors import OptionError, WeightsError
from genzoo.fsutil import atomic_write_text

from .chat import id_list, read_chat_template, read_end_ids, read_special_tokens, render_chat

TOKENIZER_FILE = "tokenizer.json"


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_level_tokenizer():
    """A 256-token byte-level tokenizer (token id = byte value): GPT-2's byte-level BPE with no
    merges. It reads any UTF-8 text, and on ASCII text one token is one character."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # use_regex=False: no word splitting is needed when there are no merges.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


class TextTokenizer:
    """Text <-> token ids for a model, plus the special ids sampling needs.

    ``bos_id`` starts a sample whose prompt is empty; ``eos_id`` ends a sample when drawn, and
    so does every id of ``end_ids`` (a generation config's ``eos_token_id`` list).
    ``chat_template`` (Jinja, or None) turns a conversation into a prompt.
    """

    def __init__(self, tokenizer, bos_id: int | None = None, eos_id: int | None = None,
                 chat_template: str | None = None, end_ids: list[int] | tuple[int, ...] = (),
                 special_tokens: dict[str, str] | None = None):
        self.tok, self.bos_id, self.eos_id = tokenizer, bos_id, eos_id
        self.chat_template = chat_template
        #: token strings a template may write (bos_token...), as tokenizer_config.json names
        self.special_tokens = dict(special_tokens or {})
        # eos first, then the others, each once
        self.end_ids = list(dict.fromkeys(id_list(eos_id) + id_list(list(end_ids))))

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> "TextTokenizer":
        """Read ``tokenizer.json`` from a model folder (a one-line error when absent)."""
        from tokenizers import Tokenizer
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise WeightsError(f"{folder}: no {TOKENIZER_FILE}; a text model folder needs its "
                               "tokenizer (save it with tokenizers' Tokenizer.save)")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises bare Exception subclasses
            raise WeightsError(f"{path}: unreadable tokenizer ({str(e).splitlines()[0]}); "
                               "re-download or re-save the model") from e
        eos = id_list(config.get("eos_token_id"))
        special = read_special_tokens(folder)
        # the tokenizer's own eos (tokenizer_config.json) ends a sample too, as in transformers
        eos_token = tok.token_to_id(special["eos_token"]) if "eos_token" in special else None
        return cls(tok, config.get("bos_token_id"), (eos or [eos_token])[0],
                   read_chat_template(folder), eos + id_list(eos_token) + read_end_ids(folder),
                   special)

    @property
    def vocab_size(self) -> int:
        """The number of token ids, special tokens included."""
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and each token's (start, end) character span in ``text``."""
        enc = self.tok.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (an incomplete UTF-8 sequence at the end decodes to U+FFFD)."""
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` rendered by the chat template with the generation prompt.
        Special tokens come only from the template's text (nothing is added, so a BOS the
        template writes is not doubled)."""
        if self.chat_template is None:
            raise OptionError("this tokenizer has no chat template")
        # tokenizer_config.json's strings first, as transformers renders; the ids fill gaps
        special = {**self._id_tokens(), **self.special_tokens}
        return self.encode(render_chat(self.chat_template, messages, **special))

    def _id_tokens(self) -> dict[str, str]:
        """``bos_token`` / ``eos_token`` as the strings of ``bos_id`` / ``eos_id``."""
        return {key: self.tok.id_to_token(int(i)) for key, i in
                (("bos_token", self.bos_id), ("eos_token", self.eos_id)) if i is not None}

    def start_ids(self) -> list[int]:
        """What an empty prompt is fed as: BOS, else EOS (GPT-2 style), else a newline."""
        for i in (self.bos_id, self.eos_id):
            if i is not None:
                return [int(i)]
        return self.encode("\n")

    def save(self, folder: Path) -> None:
        """Write ``tokenizer.json``, plus a ``tokenizer_config.json`` so that transformers'
        ``AutoTokenizer`` also reads the folder."""
        folder = Path(folder)
        atomic_write_text(folder / TOKENIZER_FILE, self.tok.to_str(pretty=True))
        # the folder's own token strings kept (its eos_token ends samples too, on reload)
        cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast",
                               **self._id_tokens(), **self.special_tokens}
        if self.chat_template is not None:
            cfg["chat_template"] = self.chat_template
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(cfg, indent=2))
