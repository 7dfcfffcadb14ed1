"""The third-party audio family (tests/notes_plugin) installed for real, as pytest fixtures.

Use it in a test module with ``from _notes import notes_plugin  # noqa: F401`` and a test
argument ``notes_plugin`` (``notes_plugin_class`` for a whole class, e.g. a conformance kit
suite: ``@pytest.mark.usefixtures("notes_plugin_class")``). genzoo-notes is then an
installed distribution (a site folder with a ``.dist-info`` entry point ``notes``), and the
model ``notes-tiny`` (arch ``notes-harmonic``, family ``notes``, modality ``audio``) is in
the catalog with its weights and a card with sha256 digests. The fixture's value is the path
of that card file. For a subprocess (a server), ``install_notes(site)`` then
``build_weights(cards)`` with ``site`` on ``sys.path``, and ``site`` on ``PYTHONPATH``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from _site import forget, install_package

SRC = Path(__file__).resolve().parent / "notes_plugin" / "genzoo_notes"
#: The bundled model's name, and the seed its (untrained) weights are drawn from.
NAME = "notes-tiny"
WEIGHTS_SEED = 0


def install_notes(site: Path) -> Path:
    """Copy genzoo-notes into ``site`` as an installed distribution, build ``notes-tiny``'s
    weights beside it and write their card; returns the card file. ``site`` must then be on
    ``sys.path`` (the caller's job, so that it can be undone)."""
    return install_package(site, SRC, "genzoo-notes", "notes") / "weights" / "cards.yaml"


def build_weights(cards: Path) -> None:
    """Save a seeded ``NotesModel`` as ``notes-tiny`` and write its card with digests."""
    import torch
    from genzoo_notes.model import NotesModel
    torch.manual_seed(WEIGHTS_SEED)
    folder = cards.parent / NAME
    NotesModel({}).save_pretrained(folder)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(folder.iterdir())}
    cards.write_text(yaml.safe_dump({"version": 1, "models": [
        {"name": NAME, "family": "notes", "arch": "notes-harmonic", "license": "mit",
         "summary": "harmonic notes of 12 pitches, 0.5 s at 8 kHz (untrained, for tests)",
         "source": f"./{NAME}", "files": files, "capabilities": ["pitch"],
         "package": "genzoo-notes"}]}))


def _installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """genzoo-notes installed in ``site`` for as long as the generator runs."""
    from genzoo.catalog import registry
    from genzoo.plugins import manager as plugins
    cards = install_notes(site)
    monkeypatch.syspath_prepend(str(site))
    build_weights(cards)
    plugins.reset()
    registry.reset()
    yield cards
    forget("genzoo_notes")


@pytest.fixture
def notes_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """genzoo-notes installed, with the bundled model ``notes-tiny`` and its card file."""
    yield from _installed(tmp_path / "notes-site", monkeypatch)


@pytest.fixture(scope="class")
def notes_plugin_class(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``notes_plugin`` for a whole test class (the conformance kit's class-scoped finetune
    runs needs the plugin before any test's own fixtures)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _installed(tmp_path_factory.mktemp("notes") / "notes-site", monkeypatch)
