"""Per-sample seeds: sample i of a call with seed s draws from its own generator, seeded by a
mix of (s, i), so a sample does not depend on the batch size or on how many were asked for."""
from __future__ import annotations

_MASK = (1 << 64) - 1


#: Seeds are whole numbers in [0, SEED_LIMIT); anything else is refused, never wrapped.
SEED_LIMIT = 1 << 63


def check_seed(seed: object) -> int:
    """``seed`` if it is a whole number in [0, 2**63), else a one-line ``OptionError``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        from genzoo.errors import OptionError
        raise OptionError(f"seed must be a whole number from 0 to 2**63-1, got {seed!r}")
    return seed


def _mix(z: int) -> int:
    """The SplitMix64 finaliser: a bijection of 64-bit words that scatters nearby inputs."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for sample ``index`` of a call seeded with ``seed``.

    Seeds below 2**32 pack (seed, index) into one word (the streams genzoo has always drawn);
    a larger seed is first mixed whole, so it never aliases a small one (2**32 used to give
    seed 0's samples)."""
    if seed >> 32:
        return _mix(_mix(seed) ^ index) >> 1
    return _mix((seed << 32) | (index & 0xFFFFFFFF)) >> 1


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


def per_sample_labels(generators, prior, label=None, device=None):
    """One class label per generator, an (n,) long tensor: drawn from ``prior`` (a (K,)
    tensor of class probabilities) with one uniform from generator i, so sample i's label
    depends only on its seed; then replaced by ``label`` where given (an int for all, or one
    per sample). The draw happens either way: asking for sample i's own label gives sample i."""
    import torch
    cdf = torch.cumsum(prior.detach().double().cpu(), 0)
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    drawn = torch.searchsorted(cdf / cdf[-1], u, right=True).clamp(max=len(cdf) - 1)
    if label is not None:
        given = torch.as_tensor(label if isinstance(label, (list, tuple)) else
                                [label] * len(generators), dtype=torch.long)
        bad = given[(given < 0) | (given >= len(cdf))]
        if len(bad):
            from genzoo.errors import OptionError
            raise OptionError(f"label {int(bad[0])} is out of range: this model has "
                              f"classes 0-{len(cdf) - 1}")
        drawn = given
    return drawn.to(device) if device is not None else drawn


def slerp(a, b, t: float):
    """Spherical interpolation between tensors ``a`` and ``b`` (flattened directions) at
    ``t`` in [0, 1]: the path Gaussian latents should take (a straight line passes through
    latents of atypically small norm). Falls back to a straight line for parallel ends."""
    import torch
    fa, fb = a.flatten().double(), b.flatten().double()
    cos = torch.dot(fa, fb) / (fa.norm() * fb.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if float(omega) < 1e-6:
        return (1 - t) * a + t * b
    sin = torch.sin(omega)
    return ((torch.sin((1 - t) * omega) / sin) * a.double()
            + (torch.sin(t * omega) / sin) * b.double()).to(a.dtype)
