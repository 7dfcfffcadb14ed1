"""Text data for finetuning: a file or a folder of text files, as (ctx + 1)-token windows."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import DataError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text"}
MIN_CTX = 8


class TextWindows:
    """Every (ctx + 1)-token window of one long token sequence: ``ds[idx]`` is an (len(idx),
    ctx + 1) int64 batch whose rows start at the token positions ``idx`` (the engine's epoch
    permutations over all start positions give nanoGPT's random-window sampling)."""

    def __init__(self, ids: torch.Tensor, ctx: int, source: str = ""):
        if ids.ndim != 1:
            raise DataError(f"{source or 'tokens'}: expected a 1-D tensor of token ids")
        if len(ids) < MIN_CTX + 1:
            raise DataError(f"{source or 'text'}: only {len(ids)} tokens; give at least "
                            f"{MIN_CTX + 1} tokens of text to train on")
        self.ids = ids.long()
        self.ctx = min(int(ctx), len(ids) - 1)  # a short text trains on shorter windows
        self.source = source
        self._offsets = torch.arange(self.ctx + 1)

    def __len__(self) -> int:
        return len(self.ids) - self.ctx

    def __getitem__(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        return self.ids[idx[:, None] + self._offsets]


def read_text(data: Any) -> tuple[str, str]:
    """(text, source) from a path: one file (any name), or a folder whose .txt/.md/.rst files
    (searched recursively, in sorted order) are joined with blank lines."""
    path = Path(os.fspath(data)).expanduser()
    if not path.exists():
        raise DataError(f"data path {os.fspath(data)!r} does not exist: give a text file or a "
                        "folder of .txt/.md files")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"{path}: no text files (.txt, .md, .rst) found in this folder or below")
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{f}: not UTF-8 text ({e.reason} at byte {e.start}); convert it "
                            "or remove it from the folder") from e
    text = "\n\n".join(parts)
    if not text.strip():
        raise DataError(f"{path}: the text is empty")
    return text, str(path)


def text_dataset(data: Any, tokenizer, ctx: int) -> TextWindows:
    """A ``TextWindows`` dataset from a path, a string of text wrapped as ``("text", s)``,
    a 1-D tensor of token ids, or an existing ``TextWindows`` (returned as is)."""
    if isinstance(data, TextWindows):
        return data
    if isinstance(data, torch.Tensor):
        return TextWindows(data, ctx, "tensor")
    if isinstance(data, tuple) and len(data) == 2 and data[0] == "text":
        text, source = data[1], "text"
    else:
        text, source = read_text(data)
    if tokenizer is None:
        raise DataError("this model has no tokenizer, so it cannot read text; load a model "
                        "folder that has tokenizer.json")
    return TextWindows(torch.tensor(tokenizer.encode(text), dtype=torch.long), ctx, source)
