"""Texts: a list of strings; ``.txt``, ``.jsonl`` or one ``.txt`` per sample."""
from __future__ import annotations

from typing import Any, Callable

from genzoo.samples import Modality, Samples
from genzoo.writers import TextFileWriter


class TextModality(Modality):
    """Strings: what a language model makes (printed, streamed, or written)."""

    name = "text"
    summary = "texts (a list of strings): .txt, .jsonl, one .txt per sample"
    holds = "list"
    plural = "texts"
    default_n = 1
    default_output = None  # printed on stdout (streamed when n is 1)
    streams = True
    sample_suffix = ".txt"
    content_type = "text/plain; charset=utf-8"
    pipeline_tags = {"": "text-generation"}
    usage = 'samples = model.sample(3, prompt="Hello", seed=0)\nprint(samples.texts)'
    gallery_html = "<pre>{text}</pre>"

    def writers(self) -> dict[str, Callable[..., Any]]:
        """``.txt``: blank-line separated; ``.jsonl``: one JSON object per text."""
        return {".txt": TextFileWriter, ".jsonl": TextFileWriter}

    def encode(self, samples: Samples, i: int) -> bytes:
        """Text ``i`` as UTF-8."""
        return str(samples.data[i]).encode("utf-8")

    def to_json(self, samples: Samples, i: int) -> Any:
        """Text ``i`` itself."""
        return samples.data[i]

    def check(self, samples: Samples) -> None:
        """Texts are a list of ``str``."""
        super().check(samples)
        bad = [type(t).__name__ for t in samples.data if not isinstance(t, str)]
        assert not bad, f"texts must be strings, got {bad[0]}"
