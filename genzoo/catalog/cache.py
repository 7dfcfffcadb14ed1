"""The card-aware cache operations behind ``genzoo cache ls | rm | verify``.

``genzoo.catalog.hub`` knows sources and the Hugging Face cache but not cards; the registry knows cards
and parses their sources with ``genzoo.catalog.hub``. Operations that need both (which cards use a
cached repo, a card name -> its repo, re-hashing a model against its card's digests) live here,
above both, so that neither imports the other. Importing this module does not import torch or
huggingface_hub.
"""
from __future__ import annotations

from genzoo.errors import HubError
from genzoo.catalog.hub import cached_repos, hub_repo_id, local_folder, parse_source, remove_cached_repo
from genzoo.catalog.integrity import verify_folder
from genzoo.catalog.registry import get_registry

__all__ = ["cache_entries", "remove_from_cache", "verify_cached"]


def _cards_by_repo() -> dict[str, list[str]]:
    """Hub repo id -> names of the cards whose source is that repo."""
    out: dict[str, list[str]] = {}
    for card in get_registry().list():
        src = parse_source(card.source)
        if src.kind == "hf":
            out.setdefault(src.repo_id, []).append(card.name)
    return out


def cache_entries() -> list[dict]:
    """Model repos in the Hugging Face cache, each with ``models``: the genzoo cards using it."""
    repos = cached_repos()
    cards = _cards_by_repo() if repos else {}
    return [{"repo_id": r["repo_id"], "models": cards.get(r["repo_id"], []),
             **{k: v for k, v in r.items() if k != "repo_id"}} for r in repos]


def _repo_for(name: str) -> str:
    """A card name, ``hf://org/repo`` or ``org/repo`` -> the Hub repo id."""
    repo_id = hub_repo_id(name)
    if repo_id is not None:
        return repo_id
    src = parse_source(get_registry().get(name).source)
    if src.kind != "hf":
        raise HubError(f"{name}: its weights are {src.text}, not in the Hugging Face cache")
    return src.repo_id


def remove_from_cache(name: str) -> int:
    """Delete every cached revision of the model's Hub repo (``name``: a card name,
    ``hf://org/repo`` or ``org/repo``); returns the bytes freed."""
    return remove_cached_repo(_repo_for(name), label=name)


def verify_cached(name: str) -> dict[str, str]:
    """Re-hash a downloaded (or bundled) model's files: ``{file: "ok" | "ok (no digest)"}``.

    Raises ``IntegrityError`` on a mismatch and ``HubError`` when it is not downloaded."""
    card = get_registry().get(name)
    folder = local_folder(card.source, card.files)
    if folder is None:
        raise HubError(f"{name}: not downloaded; run `genzoo download {name}`")
    found = verify_folder(folder, card.files, source=name, force=True)
    return {f: "ok" if d else "ok (no digest in the card)" for f, d in found.items()}
