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

from genzoo.errors import WeightsError
from genzoo.fsutil import atomic_write_text

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

    ``bos_id`` starts a sample whose prompt is empty; ``eos_id`` ends a sample when drawn.
    """

    def __init__(self, tokenizer, bos_id: int | None = None, eos_id: int | None = None):
        self.tok, self.bos_id, self.eos_id = tokenizer, bos_id, eos_id

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
        return cls(tok, config.get("bos_token_id"), config.get("eos_token_id"))

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
        cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
        for key, i in (("bos_token", self.bos_id), ("eos_token", self.eos_id)):
            if i is not None:
                cfg[key] = self.tok.id_to_token(int(i))
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(cfg, indent=2))
