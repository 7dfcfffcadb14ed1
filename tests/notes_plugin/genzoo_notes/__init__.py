"""genzoo-notes: hooks only (no torch here); the class is named by import string."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import genzoo


@genzoo.hookimpl
def genzoo_architectures() -> list[dict[str, Any]]:
    """The one architecture: a pitch-conditional harmonic synthesiser."""
    return [{"name": "notes-harmonic", "family": "notes",
             "target": "genzoo_notes.model:NotesModel",
             "summary": "pitch-conditional harmonic notes (audio, 8 kHz), for contract tests"}]


@genzoo.hookimpl
def genzoo_model_cards() -> list[Path]:
    """The card file the build step writes beside the weights (none before it ran)."""
    cards = Path(__file__).parent / "weights" / "cards.yaml"
    return [cards] if cards.is_file() else []
