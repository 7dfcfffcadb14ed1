"""Fault injection, weights: a verified file altered behind genzoo's back is always re-hashed
and refused, even when its size and mtime are put back (``os.utime``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genzoo.errors import IntegrityError
from genzoo.catalog.integrity import CACHE_NAME, sha256_file, verify_folder
from genzoo.fsutil import genzoo_home


def _tamper_keeping_size_and_mtime(path: Path) -> None:
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_utime_cannot_forge_a_verified_file(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(os.urandom(4096))
    digest = sha256_file(weights)
    assert verify_folder(folder, {"model.safetensors": digest}) == {"model.safetensors": digest}
    assert (genzoo_home() / CACHE_NAME).is_file()  # the digest is cached now
    _tamper_keeping_size_and_mtime(weights)
    with pytest.raises(IntegrityError, match="model.safetensors has sha256"):
        verify_folder(folder, {"model.safetensors": digest})


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin.safetensors").write_bytes(b"x" * 100)
    digest = sha256_file(folder / "a.bin.safetensors")
    verify_folder(folder, {"a.bin.safetensors": digest})
    import genzoo.catalog.integrity as integrity

    def no_reads(path):
        raise AssertionError(f"{path} was hashed again although unchanged")
    monkeypatch.setattr(integrity, "sha256_file", no_reads)
    verify_folder(folder, {"a.bin.safetensors": digest})


def test_a_version_1_cache_entry_is_not_trusted(tmp_path):
    """Entries written by genzoo 0.1 held only size and mtime: they are re-hashed."""
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"good weights")
    good = sha256_file(weights)
    st = os.stat(weights)
    home = genzoo_home()
    home.mkdir(parents=True, exist_ok=True)
    (home / CACHE_NAME).write_text(json.dumps({"version": 1, "entries": {
        os.path.realpath(weights): [st.st_size, st.st_mtime_ns, "0" * 64]}}))
    assert verify_folder(folder, {"model.safetensors": good})["model.safetensors"] == good
