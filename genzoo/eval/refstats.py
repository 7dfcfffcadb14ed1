"""Reference statistics for evaluation, cached per (dataset content, feature network).

Extracting features of a reference set is the slow, repeated part of evaluating; its
statistics (mean, covariance and the features themselves, which KID and precision/recall
need) are cached under ``$GENZOO_HOME/refstats`` as one safetensors file plus one JSON file,
both written atomically. The cache key hashes the images' exact pixel values and the feature
network's weights, so a changed dataset or a retrained network is never served stale.
Nothing here is pickled.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genzoo.fsutil import atomic_write_bytes, atomic_write_text
from genzoo.fsutil import genzoo_home

CACHE_VERSION = 1
#: At most this many reference feature rows are kept for KID and precision/recall.
MAX_FEATURE_ROWS = 10_000


@dataclass
class RefStats:
    """A reference set in a feature space: mean, covariance (float64) and features."""

    mu: np.ndarray
    sigma: np.ndarray
    features: torch.Tensor
    n: int
    source: str
    key: str
    cached: bool = False


def cache_dir() -> Path:
    """Where reference statistics live: ``$GENZOO_HOME/refstats``."""
    return genzoo_home() / "refstats"


def images_digest(images: torch.Tensor) -> str:
    """sha256 of the samples' shape and exact float32 values (images' pixels, audio's
    waveforms)."""
    t = images.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(repr(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, in float64 as pytorch-fid uses."""
    x = features.detach().to("cpu", torch.float64).numpy()
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def reference_stats(images: torch.Tensor, source: str, net, use_cache: bool = True,
                    meta: dict | None = None) -> RefStats:
    """Statistics of ``images`` (any modality's tensor of samples) in ``net``'s feature
    space, from the cache when it holds them. ``meta`` is the samples' metadata (audio's
    ``sample_rate``), handed to a net that takes it and part of the cache key when given (an
    empty one leaves the key as it always was, so image statistics cached before stay valid)."""
    from genzoo.eval.features import measure
    tail = f"|{json.dumps(meta, sort_keys=True, default=str)}" if meta else ""
    key = hashlib.sha256(f"v{CACHE_VERSION}|{net.key}|{images_digest(images)}{tail}"
                         .encode()).hexdigest()
    stem = cache_dir() / f"{_slug(source)}--{_slug(net.name)}--{key[:20]}"
    if use_cache:
        hit = _read(stem, key, source)
        if hit is not None:
            return hit
    feats, _ = measure(net, images, meta)
    mu, sigma = gaussian_stats(feats)
    if len(feats) > MAX_FEATURE_ROWS:  # a fixed subset keeps cache files small
        g = torch.Generator().manual_seed(0)
        feats = feats[torch.randperm(len(feats), generator=g)[:MAX_FEATURE_ROWS]]
    stats = RefStats(mu, sigma, feats.float().contiguous(), int(len(images)), source, key)
    if use_cache:
        _write(stem, stats, net)
    return stats


def _read(stem: Path, key: str, source: str) -> RefStats | None:
    """The cached stats at ``stem``, or None when absent, for another key, or unreadable."""
    meta_path, data_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not (meta_path.is_file() and data_path.is_file()):
        return None
    try:
        from safetensors.torch import load_file
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
            return None
        t = load_file(str(data_path))
        if hashlib.sha256(data_path.read_bytes()).hexdigest() != meta.get("data_sha256"):
            return None  # a half-replaced pair: recompute rather than trust it
        return RefStats(t["mu"].numpy(), t["sigma"].numpy(), t["features"], int(meta["n"]),
                        source, key, cached=True)
    except Exception:  # noqa: BLE001 - any unreadable cache entry is simply recomputed
        return None


def _write(stem: Path, stats: RefStats, net) -> None:
    """Write the safetensors file, then the JSON naming its digest (each atomically)."""
    from safetensors.torch import save
    data = save({"mu": torch.from_numpy(np.ascontiguousarray(stats.mu)),
                 "sigma": torch.from_numpy(np.ascontiguousarray(stats.sigma)),
                 "features": stats.features})
    atomic_write_bytes(stem.with_suffix(".safetensors"), data)
    meta = {"version": CACHE_VERSION, "key": stats.key, "source": stats.source, "n": stats.n,
            "feature": net.name, "feature_key": net.key, "dim": int(stats.mu.shape[0]),
            "data_sha256": hashlib.sha256(data).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2))


def _slug(text: str) -> str:
    """A short file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[-40:] or "data"
