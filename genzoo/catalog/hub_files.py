"""The files of an uncarded Hub repository, pinned: its listing at one commit, the JSON files a
plugin reads to choose among them, each chosen file verified against the listing, and genzoo's
record of their sha256 (the *pins*).

A card names its files and their sha256; an ``hf://org/repo`` named directly has no card, so
``fetch_selected`` asks the Hub which files the repository holds at the commit its revision
resolves to (``list_repo``), lets the plugins choose (``select``, given the listing and a
``read_json`` reader), downloads only those, and checks each one against the listing
(``verify_listed``): an LFS file (every large weight file on the Hub) by the sha256 the Hub
lists, any other by its git object id. The sha256 of every verified file is written to
``$GENZOO_HOME/pins/ORG--REPO/COMMIT.json`` (``save_pins``) together with the listing, so a
later use of the same commit, offline included, chooses the same files and verifies them
against what was recorded, without asking the Hub (a commit never changes).
Nothing here knows a family or a format; ``huggingface_hub`` is imported only when used.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from genzoo.catalog import hub as hub
from genzoo.catalog.hub_http import (ask_repo, bound_hub_client, checked_endpoint, hub_errors,
                                     hub_offline)
from genzoo.catalog.integrity import check_relative_names, verify_folder
from genzoo.errors import GenzooError, HubError, IntegrityError, WeightsError
from genzoo.fsutil import atomic_write_text, genzoo_home

__all__ = ["fetch_selected", "Selector", "Listed", "Pinned", "NotCached", "list_repo",
           "hub_reader", "folder_reader", "json_reader", "verify_listed", "load_pins",
           "save_pins", "pins_path", "MAX_JSON_BYTES"]

#: A JSON file a plugin reads to choose files is refused above this size.
MAX_JSON_BYTES = 16 << 20
_PINS_VERSION = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_OID_RE = re.compile(r"^[0-9a-f]{40}$")
_COMMIT_RE = _OID_RE


@dataclass(frozen=True)
class Listed:
    """One file of a Hub repository at a commit, as the Hub lists it: its size, its git object
    id (for an LFS file, the pointer's) and, for an LFS file, the sha256 of its content."""

    size: int | None = None
    blob_id: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Pinned:
    """A Hub repository's chosen files, fetched at one commit and verified: ``files`` maps
    each file name to its sha256."""

    folder: Path
    commit: str
    files: dict[str, str]


class NotCached(HubError):
    """A file a choice needs is not in the local cache (the caller asks the Hub, or says so)."""


#: ``select(filenames, read_json)``: the files of a repository's listing a model needs, or
#: None when no plugin knows the layout (the api layer asks the plugins' genzoo_select_files).
Selector = Callable[[list[str], Callable[[str], Any]], Optional[list[str]]]


def fetch_selected(source: str | hub.Source, select: Selector | None = None,
                   revision: str | None = None, *, name: str | None = None) -> Pinned:
    """Fetch an ``hf://`` source that has no card: the repository's listing at the commit
    ``revision`` (else the source's, else main) resolves to, only the files ``select`` chooses
    from it (None: those ``DEFAULT_PATTERNS`` match; pickle files never), each verified
    against the listing and its sha256 recorded (the pins). A commit whose files were recorded
    is served from the cache without the Hub, offline too, verified against the record.
    ``name`` only improves error messages."""
    src = _hf_source(source)
    rev = revision or src.revision or "main"
    where = f"hf://{src.repo_id}" + (f"@{rev}" if revision or src.revision else "")
    endpoint = checked_endpoint()  # before huggingface_hub, whose import fails on a bad one
    if _COMMIT_RE.match(rev):
        pinned = _pinned_in_cache(src.repo_id, rev, select, where)
        if pinned is not None:  # a commit never changes: no need to ask the Hub
            return pinned
    info, unreachable = ((None, "offline (HF_HUB_OFFLINE)") if hub_offline() else ask_repo(
        endpoint or "https://huggingface.co", src.repo_id, rev, where))
    if info is None:
        commit = rev if _COMMIT_RE.match(rev) else _cached_ref(src.repo_id, rev)
        pinned = _pinned_in_cache(src.repo_id, commit, select, where) if commit else None
        if pinned is None:
            raise HubError(f"{where}: not in the local cache and the Hub is unreachable; run "
                           f"`genzoo download {name or src.text}` while online or unset "
                           f"HF_HUB_OFFLINE ({unreachable})")
        return pinned
    commit = str(info.get("sha") or "")
    if not _COMMIT_RE.match(commit):
        raise HubError(f"{where}: the Hub's answer names no commit for revision {rev!r}")
    bound_hub_client()
    listing = list_repo(src.repo_id, commit, endpoint, where)
    read = hub_reader(src.repo_id, commit, endpoint, hub.hub_cache_dir(), where)
    names = _choose(listing, select, json_reader(read, listing, where), where)
    folder = _download_names(src.repo_id, rev, names, endpoint, where)
    if folder.name != commit:
        raise HubError(f"{where}: the revision moved from {commit[:12]} to {folder.name[:12]} "
                       "during the download; run the command again")
    digests = verify_listed(folder, names, listing, where)
    save_pins(src.repo_id, commit, listing, digests)
    return Pinned(folder, commit, digests)


def _choose(listing: Mapping[str, Listed], select: Selector | None,
            read_json: Callable[[str], Any], where: str) -> list[str]:
    """The files to fetch: ``select``'s answer, else those ``DEFAULT_PATTERNS`` match (pickle
    files left out). A pickle file chosen, or nothing to fetch at all, is one WeightsError; a
    GenzooError ``select`` raises (a plugin refusing the repository) names the repository."""
    names = sorted(listing)
    try:
        chosen = select(names, read_json) if select is not None else None
    except GenzooError as e:  # a plugin's refusal: said of this repository
        if str(e).startswith(where.partition("@")[0]):
            raise
        raise type(e)(f"{where}: {e}") from None
    if chosen is None:
        chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in hub.DEFAULT_PATTERNS)
                  and not _is_pickle(n)]
    chosen = sorted(set(chosen))
    check_relative_names(chosen)
    pickles = [n for n in chosen if _is_pickle(n)]
    if pickles:
        raise WeightsError(f"{where}: {', '.join(pickles)} would be pickle weights, which "
                           "genzoo never downloads or loads; use safetensors")
    if not chosen:
        shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "") or "no files"
        raise WeightsError(f"{where}: no file genzoo can use in the repository (found {shown})")
    return chosen


def _is_pickle(filename: str) -> bool:
    return any(fnmatch.fnmatch(filename.lower(), p) for p in hub.NEVER_PATTERNS)


def _download_names(repo_id: str, rev: str, names: list[str], endpoint: str | None,
                    where: str) -> Path:
    """Download exactly ``names`` of ``repo_id`` at ``rev`` into the Hugging Face cache (the
    names are escaped: huggingface_hub matches them as patterns); returns the snapshot."""
    from huggingface_hub import snapshot_download

    from genzoo import __version__
    with hub_errors(where, rev, endpoint, "connect and try again"):
        folder = snapshot_download(
            repo_id, revision=rev, cache_dir=hub.hub_cache_dir(), endpoint=endpoint,
            allow_patterns=[glob.escape(n) for n in names],
            ignore_patterns=list(hub.NEVER_PATTERNS),
            library_name="genzoo", library_version=__version__)
    return Path(folder)


def _cached_ref(repo_id: str, rev: str) -> str | None:
    """The commit the Hugging Face cache last saw branch or tag ``rev`` at, else None."""
    try:
        ref = (_repo_cache(repo_id) / "refs" / rev).read_text().strip()
    except (OSError, ValueError):
        return None
    return ref if _COMMIT_RE.match(ref) else None


def _repo_cache(repo_id: str) -> Path:
    return hub.hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def _pinned_in_cache(repo_id: str, commit: str, select: Selector | None,
                     where: str) -> Pinned | None:
    """The files ``select`` chooses at ``commit``, from the cache and verified against their
    recorded sha256; None when nothing was recorded or a chosen file was never fetched."""
    pins = load_pins(repo_id, commit)
    folder = _repo_cache(repo_id) / "snapshots" / commit
    if pins is None or not folder.is_dir():
        return None
    listing, recorded = pins
    read = folder_reader(folder, where)
    try:
        names = _choose(listing, select, json_reader(read, listing, where), where)
    except NotCached:
        return None
    if not all(n in recorded and (folder / n).is_file() for n in names):
        return None
    files = {n: recorded[n] for n in names}
    verify_folder(folder, files, source=where, expected_by="the sha256 recorded at download")
    return Pinned(folder, commit, files)


def _hf_source(source: str | hub.Source) -> hub.Source:
    """``source`` parsed; anything but an ``hf://`` source is a one-line HubError."""
    try:
        src = source if isinstance(source, hub.Source) else hub.parse_source(source)
    except ValueError as e:
        raise HubError(f"bad source: {e}") from None
    if src.kind != "hf" or src.repo_id is None:
        raise HubError(f"{src.text}: expected an hf://org/repo[@revision] source")
    return src


# ---- the listing, the readers, the checks --------------------------------------------------
def list_repo(repo_id: str, commit: str, endpoint: str | None, where: str) -> dict[str, Listed]:
    """Every file of ``repo_id`` at ``commit`` (folders walked), as the Hub's tree lists it.
    Each request is bounded like every Hub call (``hub_http.bound_hub_client``)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    listing: dict[str, Listed] = {}
    with hub_errors(where, commit, endpoint, "connect and try again"):
        for item in HfApi(endpoint=endpoint).list_repo_tree(repo_id, revision=commit,
                                                            recursive=True):
            if not isinstance(item, RepoFile):
                continue
            lfs = getattr(item, "lfs", None)
            listing[item.path] = Listed(size=item.size, blob_id=item.blob_id or None,
                                        sha256=getattr(lfs, "sha256", None) or None)
    check_relative_names(listing)  # a hostile listing names nothing outside the repo folder
    return listing


def hub_reader(repo_id: str, commit: str, endpoint: str | None, cache_dir: Path,
               where: str) -> Callable[[str], bytes]:
    """``read(name) -> bytes``: one file of the repository at ``commit``, downloaded into the
    Hugging Face cache (a commit already there is not asked for again)."""
    def read(filename: str) -> bytes:
        from huggingface_hub import hf_hub_download

        from genzoo import __version__
        with hub_errors(where, commit, endpoint, "connect and try again"):
            path = hf_hub_download(repo_id, filename, revision=commit, cache_dir=cache_dir,
                                   endpoint=endpoint, library_name="genzoo",
                                   library_version=__version__)
        return Path(path).read_bytes()
    return read


def folder_reader(folder: Path, where: str) -> Callable[[str], bytes]:
    """``read(name) -> bytes`` from a local snapshot ``folder``; a file not there is
    ``NotCached``."""
    def read(filename: str) -> bytes:
        try:
            return (folder / filename).read_bytes()
        except OSError:
            raise NotCached(f"{where}: {filename} is not in the local cache") from None
    return read


def json_reader(read: Callable[[str], bytes], listing: Mapping[str, Listed],
                where: str) -> Callable[[str], Any]:
    """``read_json(name)``: the parsed JSON of file ``name`` of the listing, as plugins get it
    to choose files. A name not in the listing is a ``FileNotFoundError`` (the plugin's
    mistake); a file above ``MAX_JSON_BYTES`` or not valid JSON a one-line ``WeightsError``
    (the repository's)."""
    def read_json(filename: str) -> Any:
        if not isinstance(filename, str) or filename not in listing:
            raise FileNotFoundError(f"{filename!r} is not a file of {where}")
        size = listing[filename].size
        if size is not None and size > MAX_JSON_BYTES:
            raise WeightsError(f"{where}: {filename} is {size} bytes; genzoo reads JSON files "
                               f"of at most {MAX_JSON_BYTES >> 20} MiB")
        data = read(filename)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise WeightsError(f"{where}: {filename} is not valid JSON ({e})") from None
    return read_json


def _blob_id_and_sha256(path: Path) -> tuple[str, str]:
    """A file's git object id (``sha1("blob SIZE\\0" + content)``) and its sha256, one read."""
    size = path.stat().st_size
    git, sha = hashlib.sha1(f"blob {size}\0".encode()), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            git.update(chunk)
            sha.update(chunk)
    return git.hexdigest(), sha.hexdigest()


def verify_listed(folder: Path, names: list[str], listing: Mapping[str, Listed],
                  where: str) -> dict[str, str]:
    """Check each of ``names`` in ``folder`` against the listing (an LFS file by its sha256,
    any other by its git object id) and return ``{name: sha256}``. A file that differs is a
    one-line ``IntegrityError``; a missing one a ``WeightsError``."""
    lfs = {n: listing[n].sha256 for n in names if listing[n].sha256}
    found = verify_folder(folder, lfs, source=where, expected_by="the Hub's listing")
    digests = {n: str(d) for n, d in found.items()}
    for name in names:
        if name in lfs:
            continue
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"{where}: {name} was not downloaded; run the command again")
        blob_id, digest = _blob_id_and_sha256(path)
        expected = listing[name].blob_id
        if expected and not _OID_RE.match(expected):
            expected = None  # a mirror that lists no usable object id: the sha256 is recorded
        if expected and blob_id != expected:
            raise IntegrityError(f"{where}: {name} has git object id {blob_id}, the Hub lists "
                                 f"{expected}; the file is refused — delete it (`genzoo cache "
                                 f"rm {where.partition('@')[0]}`) and download again")
        digests[name] = digest
    return digests


# ---- the pins: what was verified, per repository and commit --------------------------------
def pins_path(repo_id: str, commit: str) -> Path:
    """Where the pins of ``repo_id`` at ``commit`` are kept, in the genzoo home."""
    return genzoo_home() / "pins" / repo_id.replace("/", "--") / f"{commit}.json"


def load_pins(repo_id: str, commit: str) -> tuple[dict[str, Listed], dict[str, str]] | None:
    """``(listing, {name: sha256 verified})`` recorded for ``repo_id`` at ``commit``; None when
    nothing was recorded or the record is damaged (the Hub is asked again)."""
    try:
        data = json.loads(pins_path(repo_id, commit).read_text(encoding="utf-8"))
        if data.get("version") != _PINS_VERSION or data.get("commit") != commit:
            return None
        listing = {str(n): Listed(*entry) for n, entry in data["listing"].items()}
        digests = {str(n): str(d) for n, d in data["sha256"].items()}
        check_relative_names(listing)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, GenzooError):
        return None  # missing, damaged, or naming a file outside the repository: not trusted
    if not all(_SHA256_RE.match(d) for d in digests.values()) or not set(digests) <= set(listing):
        return None
    return listing, digests


def save_pins(repo_id: str, commit: str, listing: Mapping[str, Listed],
              digests: Mapping[str, str]) -> None:
    """Record the listing of ``repo_id`` at ``commit`` and the sha256 of the files verified,
    adding to what earlier fetches of that commit recorded. A home that cannot be written only
    costs asking the Hub again next time."""
    earlier = load_pins(repo_id, commit)
    verified = {**(earlier[1] if earlier else {}), **digests}
    record = {"version": _PINS_VERSION, "repo": repo_id, "commit": commit,
              "listing": {n: [e.size, e.blob_id, e.sha256] for n, e in sorted(listing.items())},
              "sha256": dict(sorted(verified.items()))}
    try:
        atomic_write_text(pins_path(repo_id, commit), json.dumps(record, indent=1))
    except OSError:
        pass
