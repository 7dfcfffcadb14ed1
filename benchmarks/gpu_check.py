"""GPU check for a lent accelerator: every first-party family samples and finetunes on CUDA.

For each bundled model: sample throughput in fp32 and bf16 autocast, a short finetune in bf16
through the engine (seconds per step, samples/s), and for the diffusion UNet the same sampling
with torch.compile. For the text LM, the finetune's model-FLOPs utilisation (6 * params *
tokens/s against the GPU's dense bf16 peak). Results go to $OUT/gpu_check.json (or ./).

    bash benchmarks/gpu_check.sh          # installs genzoo, then runs this (< 8 minutes)
    python benchmarks/gpu_check.py --dry-run   # the same code paths on CPU, tiny sizes

The dry run exists so that the first minutes of a lent GPU are not spent finding a typo.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense, per the datasheets


DEVICE = "cuda"


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeat=3) -> float:
    fn()  # warm-up (and compile)
    _sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def image_family(name: str, n: int, sample_opts: dict, steps: int, batch: int) -> dict:
    """Sampling (fp32, bf16) and a bf16 finetune of an image model on random digits."""
    import genzoo
    out = {}
    for dtype in ("fp32", "bf16"):
        model = genzoo.load(name, device=DEVICE, dtype=dtype)
        sec = _time(lambda: model.sample(n, seed=0, batch_size=n, **sample_opts))
        out[f"sample_{dtype}_samples_per_s"] = n / sec
    data = torch.rand(4096, *model.config["image_shape"])
    with tempfile.TemporaryDirectory() as d:
        model = genzoo.load(name, device=DEVICE)
        r = genzoo.finetune(model, data, steps=steps, out=d, batch_size=batch, dtype="bf16",
                            progress=False, log_every=steps)
        out["finetune_bf16_s_per_step"] = r.seconds / steps
        out["finetune_bf16_samples_per_s"] = r.history[-1]["samples_per_s"]
        out["finetuned_folder_samples"] = bool(len(genzoo.load(d, device=DEVICE).sample(4)))
    return out


def diffusion_compile(n: int) -> dict:
    """DPM-Solver++ 20 steps with the UNet eager against torch.compile'd (bf16)."""
    import genzoo
    model = genzoo.load("diffusion-mnist", device=DEVICE, dtype="bf16")
    eager = _time(lambda: model.sample(n, seed=0, batch_size=n))
    model.unet = torch.compile(model.unet)
    compiled = _time(lambda: model.sample(n, seed=0, batch_size=n))
    return {"eager_samples_per_s": n / eager, "compiled_samples_per_s": n / compiled,
            "compile_speedup": eager / compiled}


def text_family(steps: int, batch: int, tokens: int = 256) -> dict:
    """Generation tokens/s and a bf16 finetune with its model-FLOPs utilisation."""
    import genzoo
    model = genzoo.load("textlm-shakespeare", device=DEVICE, dtype="bf16")
    sec = _time(lambda: model.sample(8, seed=0, prompt="ROMEO:", max_new_tokens=tokens,
                                     batch_size=8))
    out = {"generate_tokens_per_s": 8 * tokens / sec}
    text = Path(os.environ.get("GENZOO_TEXT", "/dev/null"))
    with tempfile.TemporaryDirectory() as d:
        if not text.is_file() or text.stat().st_size < 10_000:
            text = Path(d) / "text.txt"
            import pydoc_data.topics as topics
            text.write_text("\n".join(topics.topics.values()))
        r = genzoo.finetune(model, str(text), steps=steps, out=d + "/ft", batch_size=batch,
                            dtype="bf16", progress=False, log_every=steps)
    from genzoo_textlm.base import DEFAULT_TRAIN_CTX
    ctx = model.train_ctx or min(model.max_context, DEFAULT_TRAIN_CTX)  # tokens per window
    tok_per_s = r.history[-1]["samples_per_s"] * ctx
    flops = 6 * model.num_parameters() * tok_per_s
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    out.update({"finetune_bf16_s_per_step": r.seconds / steps, "train_tokens_per_s": tok_per_s,
                "model_tflops": flops / 1e12,
                "mfu": flops / (peak * 1e12) if peak else None})
    return out


def main() -> int:
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="run every check on the CPU with tiny sizes (figures meaningless)")
    dry = ap.parse_args().dry_run
    DEVICE = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check (--dry-run runs the code paths on CPU)",
              file=sys.stderr)
        return 1
    result = {"device": "cpu (dry run)" if dry else torch.cuda.get_device_name(),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    k = 64 if dry else 1  # divide sizes by k on a dry run
    steps = 2 if dry else 200
    checks = {
        "diffusion-mnist": lambda: image_family("diffusion-mnist", 1024 // k, {}, steps, 256 // k),
        "diffusion-compile": lambda: diffusion_compile(1024 // k),
        "vae-mnist": lambda: image_family("vae-mnist", 8192 // k, {}, steps, 512 // k),
        "gan-mnist": lambda: image_family("gan-mnist", 8192 // k, {}, steps, 256 // k),
        "textlm-shakespeare": lambda: text_family(steps, 64 // k, 256 // k),
    }
    failed = 0
    for name, check in checks.items():
        t0 = time.perf_counter()
        try:
            result[name] = check()
        except Exception as e:  # report every family even when one fails
            result[name] = {"error": f"{type(e).__name__}: {e}"}
            failed += 1
        print(f"{name}: {time.perf_counter() - t0:.0f} s {json.dumps(result[name])}", flush=True)
    out = Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
