"""sha256 verification of model files, with a small cache so unchanged files are hashed once.

The cache is a JSON file in the genzoo home (``$GENZOO_HOME`` or ``~/.cache/genzoo``) that maps
a file's real path to its ``[size, mtime_ns, ctime_ns, inode, device, sha256]``. A file whose
stat is unchanged is not read again; any change (a re-download, an edit) makes it hashed
again. The ctime is what makes the key unforgeable: putting a file's mtime back with
``os.utime`` (or ``touch -d``) sets its ctime to now, and no user-space call sets ctime, so an
edited file is always hashed again. The file is rewritten atomically, so concurrent processes
at worst hash a file twice.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Mapping

from genzoo.errors import IntegrityError, UnsafePathError, WeightsError
from genzoo.fsutil import atomic_write_text, genzoo_home

CACHE_NAME = "verified.json"
_MAX_ENTRIES = 5000
#: 2: entries keyed on ctime, inode and device too (1 trusted size and mtime alone).
_CACHE_VERSION = 2


def check_relative_names(names) -> None:
    """Refuse file names that could escape their folder (``..``, absolute, drive letters).

    Called before any download or file access, so a hostile card cannot make genzoo touch a
    path outside the model folder."""
    for name in names:
        if not isinstance(name, str) or not name:
            raise UnsafePathError(f"file name {name!r} is not a relative path")
        pure = PurePosixPath(name.replace("\\", "/"))
        if (pure.is_absolute() or ".." in pure.parts or name.startswith(("/", "\\", "~"))
                or (len(name) > 1 and name[1] == ":")):
            raise UnsafePathError(f"refusing file name {name!r}: it escapes the model folder "
                                  "(absolute paths and '..' are not allowed)")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    """What must be unchanged for a cached digest to stand (see the module docstring)."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class _VerifyCache:
    """``real path -> [*stat key, sha256]``, loaded lazily and saved only when changed."""

    def __init__(self) -> None:
        self.path = genzoo_home() / CACHE_NAME
        try:
            data = json.loads(self.path.read_text())
            fresh = isinstance(data, dict) and data.get("version") == _CACHE_VERSION
            self.entries = dict(data.get("entries", {})) if fresh else {}
        except (OSError, ValueError):
            self.entries = {}  # a missing or damaged cache only costs a re-hash
        self.dirty = False

    def digest(self, path: Path, force: bool = False) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        key = _stat_key(st)
        hit = self.entries.get(real)
        if not force and isinstance(hit, list) and len(hit) == len(key) + 1 and hit[:-1] == key:
            return hit[-1]
        digest = sha256_file(Path(real))
        self.entries[real] = [*key, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        if not self.dirty:
            return
        if len(self.entries) > _MAX_ENTRIES:  # keep the newest; the file stays small
            self.entries = dict(list(self.entries.items())[-_MAX_ENTRIES:])
        try:
            atomic_write_text(self.path, json.dumps({"version": _CACHE_VERSION,
                                                     "entries": self.entries}))
        except OSError:
            pass  # a read-only home only loses the speed-up, never correctness


def verify_folder(folder: Path, files: Mapping[str, str | None], *, source: str = "",
                  force: bool = False, expected_by: str = "the card") -> dict[str, str | None]:
    """Check that each file of ``files`` exists in ``folder`` and matches its sha256.

    Files listed with ``None`` only have to exist. Returns ``{name: digest or None}``. A
    mismatch raises ``IntegrityError`` naming the file, the expected and the found digest, and
    ``expected_by`` (where the expected digest comes from). ``force`` re-hashes even files the
    cache says are unchanged."""
    check_relative_names(files)
    folder = Path(folder)
    root = os.path.realpath(folder)
    cache = _VerifyCache()
    found: dict[str, str | None] = {}
    try:
        for name, expected in files.items():
            path = folder / name
            if not path.is_file():
                raise WeightsError(f"{source or folder}: file {name} is missing; download the "
                                   "model again (`genzoo download NAME`)")
            if not path.is_symlink() and not os.path.realpath(path).startswith(root + os.sep):
                raise UnsafePathError(f"{path}: resolves outside its model folder; refused")
            if expected is None:
                found[name] = None
                continue
            digest = cache.digest(path, force=force)
            if digest != expected.lower():
                raise IntegrityError(f"{source or folder}: {name} has sha256 {digest}, "
                                     f"{expected_by} expects {expected}; the file is refused — "
                                     "delete it (`genzoo cache rm NAME`) and download again")
            found[name] = digest
    finally:
        cache.save()
    return found
