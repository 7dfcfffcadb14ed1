"""The kit's device checks: explicit CPU/fp32, and CUDA with bf16 autocast where there is
one (skipped without). Imported only when a conformance test runs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genzoo.kit.learning import required_values
from genzoo.model import GenerativeModel


def check_cpu_fp32(model: GenerativeModel) -> None:
    """Explicit CPU/fp32: parameters on CPU in float32, autocast off, samples its modality
    accepts (``Modality.check``: float32 tensors, ...)."""
    model.to_device("cpu", "fp32")
    assert model.autocast_dtype is None, "dtype='fp32' must leave autocast off"
    for name, p in model.named_parameters():
        assert p.device.type == "cpu", f"{name} is on {p.device}"
        assert p.dtype == torch.float32, f"{name} is {p.dtype}; keep parameters in float32"
    samples = model.sample(2, seed=0, **required_values(model, 2))
    model.sample_modality().check(samples)


def require_cuda() -> None:
    """Skip unless a CUDA GPU is available."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


def check_cuda_bf16(model: GenerativeModel, data, out: Path) -> None:
    """On CUDA in bf16 (when supported): finite samples on the CPU that their modality
    accepts (``Modality.check``: dtype, layout, range), and two finite finetune steps under
    bf16 autocast."""
    from genzoo.engine.train import finetune
    dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    model.to_device("cuda", dtype)
    assert model.device.type == "cuda"
    samples = model.sample(2, seed=0, **required_values(model, 2))
    samples.spec().check(samples)
    if isinstance(samples.data, torch.Tensor):
        assert samples.data.device.type == "cpu" and torch.isfinite(samples.data).all()
    result = finetune(model, data, steps=2, out=out, batch_size=4, progress=False, device="cuda",
                      dtype=dtype)
    assert all(math.isfinite(v) for k, v in result.metrics.items() if k.startswith("loss"))
