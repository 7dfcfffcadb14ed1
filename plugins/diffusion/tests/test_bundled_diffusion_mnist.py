"""The bundled diffusion-mnist model makes good, diverse digits (measured, not looked at).

Scored like every zoo model: the evaluator's MNIST classifier features against the 500
held-out reference digits. On 200 samples the default sampler measured FD ~11 (the real-data
floor at 500 samples is 3.4); the bounds leave room for machine differences, not for a
broken model (noise scores FD in the thousands).
"""
from __future__ import annotations

import pytest

import genzoo
from genzoo.catalog.registry import get_registry

pytestmark = pytest.mark.skipif(not get_registry().get("diffusion-mnist").files,
                                reason="diffusion-mnist weights not bundled")


@pytest.mark.slow
def test_default_sampler_gives_recognisable_digits_of_every_class():
    model = genzoo.load("diffusion-mnist", device="cpu")
    r = genzoo.evaluate(model, n=200, seed=0)
    assert r["classes_covered"] == 10 and r["class_max_share"] < 0.2
    assert r["class_confidence"] > 0.75  # the classifier is sure what digit it sees
    assert r["fd"] < 25 and r["precision"] > 0.6 and r["recall"] > 0.6


def test_main_job_sample_is_deterministic_per_seed():
    model = genzoo.load("diffusion-mnist", device="cpu")
    a = model.sample(3, seed=11, steps=4).images
    b = model.sample(5, seed=11, steps=4, batch_size=2).images
    assert a.shape == (3, 1, 28, 28) and (a - b[:3]).abs().max() < 1e-5
