"""Files genzoo writes: atomic writes (a reader, or a crash, never sees a half-written file)
and ``genzoo_home``, the folder of genzoo's own caches."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def genzoo_home() -> Path:
    """genzoo's own cache folder (verified digests, measured levers, reference statistics):
    ``$GENZOO_HOME``, else ``$XDG_CACHE_HOME/genzoo`` or ``~/.cache/genzoo``."""
    env = os.environ.get("GENZOO_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genzoo"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _readable(path: str | os.PathLike) -> None:
    """Give a finished file the mode a plain ``open`` would (temp files are created 0600)."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``folder``; on success move each file into ``folder`` with an
    atomic rename (files already there and not rewritten are kept); on failure remove it all."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        folder.mkdir(parents=True, exist_ok=True)
        for item in sorted(tmp.iterdir()):
            if item.is_file():
                _readable(item)
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class LockHeld(Exception):
    """Another live process holds the lock; ``pid`` is the one it wrote (None if unreadable)."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is locked by pid {pid}")
        self.path, self.pid = path, pid


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an OS lock (``flock``) on ``path`` for the ``with`` block, writing our pid into it.

    The kernel drops the lock when the process dies, however it dies, so a crash never leaves a
    stale lock behind (a pid file alone would). Raises :class:`LockHeld` at once, without
    waiting, when another process holds it. Where ``fcntl`` is missing (Windows) no lock is
    taken."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            raise LockHeld(path, int(text) if text.isdigit() else None) from None
        # only the holder rewrites the pid: a refused process must not erase it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

