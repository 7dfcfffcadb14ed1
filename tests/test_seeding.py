"""Per-sample seeds: independent of batch size and of how many samples were asked for."""
from __future__ import annotations

import torch

from genzoo.seeding import per_sample_randn, sample_generators, sample_seed


def test_seeds_are_distinct_and_stable():
    seeds = {sample_seed(s, i) for s in range(20) for i in range(200)}
    assert len(seeds) == 4000
    assert sample_seed(0, 1) == sample_seed(0, 1) and 0 <= sample_seed(2**40, 7) < 2**63


def test_first_k_of_n_equal_k():
    a = per_sample_randn(sample_generators(5, 10), (3, 2))
    b = per_sample_randn(sample_generators(5, 4), (3, 2))
    c = per_sample_randn(sample_generators(5, 6, start=4), (3, 2))
    assert torch.equal(a[:4], b) and torch.equal(a[4:], c)
    assert not torch.equal(a[0], a[1])
