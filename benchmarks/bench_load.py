"""Loading a cached model: genzoo against torch.load and bare safetensors, tensors actually read.

All three read the same weights of diffusion-mnist (bundled, so "cached" by construction):
genzoo.load builds the model and reads model.safetensors into it (card lookup, sha256 check
from the verification cache, arch import); the peers read the same state dict from a .pt file
written here (torch.load with weights_only=True; it is our own file) and with
safetensors.torch.load_file. Every tensor is touched (summed) so lazy mapping cannot hide I/O.

    python benchmarks/bench_load.py [--quick]
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def _touch(tensors) -> float:
    return float(sum(float(t.float().sum()) for t in tensors))


def _compare(label: str, load_genzoo, weights: Path, rounds: int) -> list[dict]:
    """Median seconds of genzoo vs torch.load vs safetensors on the same weights."""
    import torch
    from safetensors.torch import load_file
    with tempfile.TemporaryDirectory() as d:
        pt = Path(d) / "state.pt"
        torch.save(load_file(str(weights)), pt)
        times = {"genzoo": [], "torch.load": [], "safetensors": []}
        for _ in range(rounds):
            t0 = time.perf_counter()
            _touch(load_genzoo().state_dict().values())
            times["genzoo"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _touch(torch.load(pt, weights_only=True).values())
            times["torch.load"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _touch(load_file(str(weights)).values())
            times["safetensors"].append(time.perf_counter() - t0)
    g, t, s = (statistics.median(times[k]) for k in ("genzoo", "torch.load", "safetensors"))
    return [{"benchmark": f"load {label}", "genzoo": g, "peer": t, "unit": "s",
             "peer_name": "torch.load (state dict)", "ratio": t / g,
             "goal": ">= 2.0 (peer/genzoo)", "ok": t / g >= 2.0},
            {"benchmark": f"load {label}", "genzoo": g, "peer": s, "unit": "s",
             "peer_name": "bare safetensors load_file", "ratio": g / s, "goal": "<= 1.1",
             "ok": g / s <= 1.1}]


def rows(quick: bool = False) -> list[dict]:
    """The bundled diffusion-mnist (1.2M parameters, by card name: catalog lookup, digest
    check and arch import included) and a GPT-2-small-shaped byte-level text model (86M, by folder)."""
    import torch
    import genzoo
    genzoo.load("diffusion-mnist", device="cpu")  # imports and caches everything once
    folder = Path(genzoo.model_info("diffusion-mnist")["path"])
    out = _compare("diffusion-mnist (1.2M params, by name)",
                   lambda: genzoo.load("diffusion-mnist", device="cpu"),
                   folder / "model.safetensors", 7 if quick else 21)
    from genzoo_textlm.model import GPTModel
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        GPTModel.from_config(dict(vocab_size=256, n_positions=1024, n_embd=768, n_layer=12,
                                  n_head=12)).save_pretrained(Path(d) / "gpt")
        out += _compare("GPT-2-small-shaped byte-level model (86M params, by folder)",
                        lambda: genzoo.load(str(Path(d) / "gpt"), device="cpu"),
                        Path(d) / "gpt" / "model.safetensors", 3 if quick else 7)
    return out


if __name__ == "__main__":
    from run import standalone
    standalone(rows, __doc__)
