"""Engine overhead: genzoo's finetune step against a bare PyTorch loop, same model and batch.

Both train the house diffusion UNet (diffusion-mnist's config) on MNIST batches of 64 with
AdamW; the bare loop does forward, backward, clip and step and nothing else. The engine adds
its LR schedule, EMA, NaN guard, metrics and data indexing. Runs alternate (engine, bare,
engine, ...) so machine noise hits both alike; we report the median seconds per step.

    python benchmarks/bench_engine.py [--quick]
"""
from __future__ import annotations

import statistics
import time

import torch


def _bare(model, images, steps, batch_size):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        loss = model.training_loss(images[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return (time.perf_counter() - t0) / steps


def _engine(model, images, steps, batch_size):
    from genzoo.engine.train import finetune
    result = finetune(model, images, steps=steps, batch_size=batch_size, lr=1e-3,
                      progress=False, log_every=10**9)
    return result.seconds / steps


def rows(quick: bool = False) -> list[dict]:
    """Median s/step of each, alternating runs; returns one result row."""
    from genzoo.data import mnist_split
    from genzoo_diffusion.model import DiffusionModel
    images, _ = mnist_split("train")
    steps, rounds, bs = (8, 3, 64) if quick else (15, 9, 64)  # many short rounds: 2-core noise
    torch.manual_seed(0)
    model = DiffusionModel()
    _bare(model, images, 2, bs)  # warm up allocator and kernels
    engine, bare = [], []
    for _ in range(rounds):
        engine.append(_engine(model, images, steps, bs))
        bare.append(_bare(model, images, steps, bs))
    e, b = statistics.median(engine), statistics.median(bare)
    return [{"benchmark": "finetune step (diffusion UNet, batch 64)", "genzoo": e, "peer": b,
             "peer_name": "bare PyTorch loop", "unit": "s/step", "ratio": e / b,
             "goal": "<= 1.05", "ok": e / b <= 1.05}]


if __name__ == "__main__":
    from run import standalone
    standalone(rows, __doc__)
