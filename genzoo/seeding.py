"""Per-sample seeds: sample i of a call with seed s draws from its own generator, seeded by a
mix of (s, i), so a sample does not depend on the batch size or on how many were asked for."""
from __future__ import annotations

_MASK = (1 << 64) - 1


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for sample ``index`` of a call seeded with ``seed``
    (SplitMix64 finaliser over the pair, so nearby pairs give unrelated streams)."""
    z = ((seed & 0xFFFFFFFF) << 32 | (index & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1


def sample_generators(seed: int, n: int, start: int = 0):
    """``n`` CPU ``torch.Generator`` objects for samples ``start .. start+n-1``."""
    import torch
    return [torch.Generator().manual_seed(sample_seed(seed, start + i)) for i in range(n)]


def per_sample_randn(generators, shape, device=None, dtype=None):
    """One standard-normal tensor of ``shape`` per generator, stacked: row i uses generator i
    (drawn on the CPU so that a seed gives the same sample on every device)."""
    import torch
    out = torch.stack([torch.randn(shape, generator=g) for g in generators])
    return out.to(device=device, dtype=dtype) if device is not None or dtype is not None else out
