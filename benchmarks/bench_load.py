"""Loading a cached model: genzoo against torch.load and bare safetensors, tensors actually read.

All three read the same weights of diffusion-mnist (bundled, so "cached" by construction):
genzoo.load builds the model and reads model.safetensors into it (card lookup, sha256 check
from the verification cache, arch import); the peers read the same state dict from a .pt file
written here (torch.load with weights_only=True; it is our own file) and with
safetensors.torch.load_file. Every tensor is touched (summed) so lazy mapping cannot hide I/O.

    python benchmarks/bench_load.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _touch(tensors) -> float:
    return float(sum(float(t.float().sum()) for t in tensors))


def rows(quick: bool = False) -> list[dict]:
    """Median seconds of each way of loading; ratios against both peers."""
    import torch
    from safetensors.torch import load_file
    import genzoo
    model = genzoo.load("diffusion-mnist", device="cpu")  # imports and caches everything once
    folder = Path(model.name_or_path if Path(str(model.name_or_path)).is_dir() else
                  genzoo.model_info("diffusion-mnist")["path"])
    weights = folder / "model.safetensors"
    rounds = 7 if quick else 21
    with tempfile.TemporaryDirectory() as d:
        pt = Path(d) / "state.pt"
        torch.save(load_file(str(weights)), pt)
        times = {"genzoo.load": [], "torch.load": [], "safetensors.load_file": []}
        for _ in range(rounds):
            t0 = time.perf_counter()
            m = genzoo.load("diffusion-mnist", device="cpu")
            _touch(m.state_dict().values())
            times["genzoo.load"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _touch(torch.load(pt, weights_only=True).values())
            times["torch.load"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _touch(load_file(str(weights)).values())
            times["safetensors.load_file"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    g = med["genzoo.load"]
    return [{"benchmark": "load cached diffusion-mnist", "genzoo": g, "peer": med["torch.load"],
             "peer_name": "torch.load (state dict)", "unit": "s", "ratio": med["torch.load"] / g,
             "goal": ">= 2.0 (peer/genzoo)", "ok": med["torch.load"] / g >= 2.0},
            {"benchmark": "load cached diffusion-mnist", "genzoo": g,
             "peer": med["safetensors.load_file"], "peer_name": "bare safetensors load_file",
             "unit": "s", "ratio": g / med["safetensors.load_file"], "goal": "<= 1.1",
             "ok": g / med["safetensors.load_file"] <= 1.1}]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    for row in rows(ap.parse_args().quick):
        print(json.dumps(row))
