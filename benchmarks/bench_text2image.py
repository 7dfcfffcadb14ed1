"""Text-to-image side by side with diffusers' StableDiffusionPipeline, same folder.

Two random pipelines are built with diffusers and saved with ``save_pretrained``:

- ``tiny``: diffusers' own test sizes (plugins/diffusion/tests/_tiny_sd.py), 64x64 output.
- ``sd15-shaped``: Stable Diffusion 1.5's layout scaled down in width to fit a 2-core CPU:
  its UNet2DConditionModel (three CrossAttn down blocks and a plain one, mirrored up blocks,
  2 layers per block, 8 heads, 32 groups) at block_out_channels (32, 64, 128, 128) instead of
  (320, 640, 1280, 1280) and cross_attention_dim 128 instead of 768; a 6-layer, 128-wide CLIP
  text encoder (2 heads of 64, quick_gelu) over CLIP's real vocabulary and tokenizer; SD's
  autoencoder layout (4 blocks, 2 layers each, 32 groups) at (32, 64, 128, 128) instead of
  (128, 256, 512, 512); 256x256 output, so the UNet runs on 32x32 latents.

genzoo loads the folder (``genzoo.load(folder, device="cpu")``, its defaults: fp32, its own
DPM-Solver++), diffusers loads it with ``StableDiffusionPipeline.from_pretrained`` and
``DPMSolverMultistepScheduler.from_config`` of the saved scheduler config. Both draw the same
prompt with the same steps (20), guidance (7.5) and per-sample generators
(``genzoo.seeding.sample_generators(0, n)``, given to diffusers as its generator list), at
batch 1 and a larger batch; their images must agree within 1e-4.

Speed: one warm-up call each (2 steps: oneDNN primitives and allocator pools are made per
shape, not per step), then 3 rounds (1 with --quick) alternating genzoo, diffusers, then
diffusers, genzoo, ..., so that load from the other jobs on the machine hits both alike;
medians. Each call's time
is split by forward hooks into the text encoder, the UNet, the VAE decoder and the rest (the
sampler or scheduler loop, latents, guidance arithmetic, post-processing).

Memory: each side's peak RSS (VmHWM, benchmarks/peak_rss.py) in its own fresh process that
imports, loads the folder and draws one batch.

    OMP_NUM_THREADS=1 python benchmarks/bench_text2image.py            # about 10 minutes here
    OMP_NUM_THREADS=1 python benchmarks/bench_text2image.py --quick    # smoke run, 2 minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_text2image.py --profile  # below, 15 minutes

``--profile`` (written under "profile" in the JSON, kept by later plain runs) measures, on
the sd15-shaped pipeline at batch 1 and in this harness only, what each candidate lever
would change: diffusers under inference_mode instead of its no_grad, channels-last UNet
and VAE, SDPA's math kernel instead of the flash one, bf16 autocast on the UNet (the VAE
decode kept in fp32; one VAE decode in bf16 is timed apart, on a smaller latent, as it takes
minutes on a CPU without AVX512-BF16), torch.compile's steady state and compile time; then
torch.profiler's top operators and the loop's own cost per step (the UNet stubbed out). Results go to benchmarks/text2image_results.json; README's text-to-image table
is generated from it (benchmarks/readme_tables.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# before torch loads. One thread by default: on this project's 2-core machine, shared with
# other engineers' test runs, 2 OpenMP threads made the same UNet call swing from 2.5 to 17 s
# (a descheduled thread stalls every parallel region); 1 thread held it within 1.5x.
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _pipeline_bench as pb  # noqa: E402  (after OMP_NUM_THREADS, before torch)
from _pipeline_bench import timed  # noqa: E402

OUT = HERE / "text2image_results.json"
PROMPT = "a photo of an astronaut riding a horse on mars"
STEPS, GUIDANCE, SEED = 20, 7.5, 0
#: the parity the oracle tests promise (fp32, same generators)
MAX_DIFF = 1e-4
GOAL = "speed >= 1.0x diffusers (aim 1.3x) at <= 1.0x its peak RSS"

#: SD 1.5's UNet, text encoder and autoencoder layouts, scaled down in width.
SD15_SHAPED = {
    "unet": dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(32, 64, 128, 128),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32),
    "text_encoder": dict(hidden_size=128, intermediate_size=512, num_attention_heads=2,
                         num_hidden_layers=6, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=128, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407, layer_norm_eps=1e-5),
    "vae": dict(block_out_channels=[32, 64, 128, 128], in_channels=3, out_channels=3,
                down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2,
                latent_channels=4, norm_num_groups=32, sample_size=256),
}
CONFIGS = {
    "tiny": {"what": "diffusers' test sizes (UNet (4, 8), 5x32 CLIP, VAE (4, 8))",
             "batches": (1, 4)},
    "sd15-shaped": {"what": "SD 1.5 layout, UNet (32, 64, 128, 128) x2 layers, 8 heads, "
                            "cross-attention 128; CLIP 6x128; VAE (32, 64, 128, 128)",
                    "batches": (1, 4)},
}


def build(name: str, folder: Path) -> Path:
    """Build config ``name`` with diffusers and save it to ``folder`` in diffusers' layout."""
    pb.tests_path()
    import _tiny_sd
    if name == "tiny":
        return _tiny_sd.tiny_sd(folder)[0]
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.schedulers import PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    tok_dir = _tiny_sd.write_clip_tokenizer(folder.parent / f"{folder.name}-tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_SHAPED["unet"]).eval()
    vae = AutoencoderKL(**SD15_SHAPED["vae"]).eval()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=_tiny_sd.VOCAB_SIZE,
                                        **SD15_SHAPED["text_encoder"])).eval()
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text,
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        scheduler=PNDMScheduler.from_config(_tiny_sd.SD15_SCHEDULER), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):  # as real SD repositories ship them
        (folder / "tokenizer" / f).write_bytes((tok_dir / f).read_bytes())
    return folder


# ---- the two sides ------------------------------------------------------------------------
def load_diffusers(folder: Path):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), use_safetensors=True)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_diffusers(pipe, n: int, steps: int = STEPS):
    from genzoo.seeding import sample_generators
    return pipe(prompt=PROMPT, num_images_per_prompt=n, num_inference_steps=steps,
                guidance_scale=GUIDANCE, generator=sample_generators(SEED, n),
                output_type="pt").images


def run_genzoo(model, n: int, steps: int = STEPS):
    return model.sample(n, seed=SEED, prompt=PROMPT, sampler="dpmsolver++", steps=steps,
                        guidance=GUIDANCE, batch_size=n).images


def hooks_of(side, unet: bool = True) -> pb.Split:
    """Hooks timing ``side``'s text encoder, UNet (unless ``unet`` is False) and VAE decoder."""
    return pb.Split(text_encoder=side.text_encoder, unet=side.unet if unet else None,
                    vae_decoder=side.vae.decoder)


def speed(folder: Path, batches, rounds: int, steps: int) -> dict:
    """Images/s of both sides per batch (median of ``rounds`` alternating calls after a
    warm-up), each call's split by network, and the largest image difference."""
    import genzoo
    model = genzoo.load(str(folder), device="cpu")
    pipe = load_diffusers(folder)
    splits = {"genzoo": hooks_of(model), "diffusers": hooks_of(pipe)}
    runs = {"genzoo": lambda n, s: run_genzoo(model, n, s),
            "diffusers": lambda n, s: run_diffusers(pipe, n, s)}
    out = {}
    for n in batches:
        secs, parts, _, diff = pb.side_by_side(runs, splits, n, rounds, steps)
        out[str(n)] = pb.speed_row(n, secs, parts, diff, "image", {})
    return out


# ---- peak memory, each side in its own fresh process --------------------------------------
RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    side, folder, n, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    prompt, guidance = sys.argv[5], float(sys.argv[6])
    if side == "genzoo":
        import genzoo
        model = genzoo.load(folder, device="cpu")
        model.sample(n, seed=0, prompt=prompt, sampler="dpmsolver++", steps=steps,
                     guidance=guidance, batch_size=n)
    else:
        import torch
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
        with open(folder + "/scheduler/scheduler_config.json") as f:
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(json.load(f))
        pipe.set_progress_bar_config(disable=True)
        pipe(prompt=prompt, num_images_per_prompt=n, num_inference_steps=steps,
             guidance_scale=guidance, output_type="pt",
             generator=[torch.Generator().manual_seed(i) for i in range(n)])
""")


def peak_rss(folder: Path, n: int, steps: int, tmp: Path) -> dict:
    """Peak RSS (MiB) of each side drawing a batch of ``n`` in a fresh process."""
    script = tmp / "t2i_rss.py"
    script.write_text(RSS_SCRIPT)
    runs = pb.rss_pair(script, [str(folder), str(n), str(steps), PROMPT, str(GUIDANCE)], 1)
    g, d = runs["genzoo"][0], runs["diffusers"][0]
    return {"batch": n, "steps": steps, "genzoo_mib": g, "diffusers_mib": d, "ratio": g / d}


# ---- the experiments of --profile -----------------------------------------------------------
def profile(folder: Path, steps: int, rounds: int, compile_unet: bool) -> dict:
    """What each lever would change on this pipeline at batch 1, measured in this harness:
    median seconds per image of alternating calls, each call's split by network, and the
    largest difference from diffusers' images."""
    import torch
    import genzoo
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model = genzoo.load(str(folder), device="cpu")
    bf16 = genzoo.load(str(folder), device="cpu", dtype="bf16")
    decode_in_autocast = bf16.decode

    def decode_fp32(z):  # the VAE out of autocast: bf16 there is the slow half (see below)
        with torch.autocast("cpu", enabled=False):
            return decode_in_autocast(z)
    bf16.decode = decode_fp32
    pipe = load_diffusers(folder)
    splits = {"genzoo": hooks_of(model), "bf16": hooks_of(bf16), "diffusers": hooks_of(pipe)}

    @contextlib.contextmanager
    def channels_last():
        for net in (model.unet, model.vae):
            net.to(memory_format=torch.channels_last)
        try:
            yield
        finally:
            for net in (model.unet, model.vae):
                net.to(memory_format=torch.contiguous_format)

    none = contextlib.nullcontext
    variants = {
        "diffusers (no_grad, its default)": ("diffusers", none,
                                             lambda: run_diffusers(pipe, 1, steps)),
        "diffusers under torch.inference_mode": ("diffusers", torch.inference_mode,
                                                 lambda: run_diffusers(pipe, 1, steps)),
        "genzoo (fp32, its default)": ("genzoo", none, lambda: run_genzoo(model, 1, steps)),
        "genzoo, channels-last UNet and VAE": ("genzoo", channels_last,
                                               lambda: run_genzoo(model, 1, steps)),
        "genzoo, SDPA math kernel (not flash)": ("genzoo", lambda: sdpa_kernel(SDPBackend.MATH),
                                                 lambda: run_genzoo(model, 1, steps)),
        'genzoo, dtype="bf16" UNet, VAE decode in fp32': ("bf16", none,
                                                          lambda: run_genzoo(bf16, 1, steps)),
    }
    compile_s = None
    if compile_unet:  # a third copy without hooks on its UNet (dynamo would trace them)
        compiled = genzoo.load(str(folder), device="cpu")
        splits["compiled"] = hooks_of(compiled, unet=False)
        compiled.unet = torch.compile(compiled.unet)
        t0 = time.perf_counter()
        run_genzoo(compiled, 1, steps)
        compile_s = time.perf_counter() - t0
        variants["genzoo, torch.compile'd UNet (steady state)"] = (
            "compiled", none, lambda: run_genzoo(compiled, 1, steps))
    for name, (_, ctx, fn) in variants.items():  # warm-up, each at this shape
        print(f"  warm-up: {name}", file=sys.stderr, flush=True)
        with ctx():
            fn()
    reference = run_diffusers(pipe, 1, steps)
    secs: dict[str, list[float]] = {k: [] for k in variants}
    parts: dict[str, list[dict]] = {k: [] for k in variants}
    diffs: dict[str, float] = {k: 0.0 for k in variants}
    for r in range(rounds):
        for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            split, ctx, fn = variants[name]
            with ctx():
                s, part, img = timed(fn, splits[split])
            secs[name].append(s)
            parts[name].append(part)
            diffs[name] = max(diffs[name], float((img - reference).abs().max()))
            print(f"  {name}: {s:.2f} s", file=sys.stderr, flush=True)
    base = statistics.median(secs["diffusers (no_grad, its default)"])
    out = {"steps": steps, "rounds": rounds, "variants": {}}
    for name in variants:
        med = statistics.median(secs[name])
        out["variants"][name] = {
            "s_per_image": med, "vs_diffusers": base / med, "max_abs_diff": diffs[name],
            "split_s": {k: statistics.median(p[k] for p in parts[name]) for k in parts[name][0]}}
    if compile_s is not None:
        out["variants"]["genzoo, torch.compile'd UNet (steady state)"]["compile_s"] = compile_s
    out["vae_decode_bf16"] = vae_decode_bf16(model, latent=8 if steps < STEPS else 16)
    out["top_ops"] = top_ops(model, steps=3)
    out["loop_overhead"] = per_step_overhead(model, pipe, splits, steps)
    return out


def vae_decode_bf16(model, latent: int) -> dict:
    """Seconds of one VAE decode of a (1, 4, latent, latent) latent, fp32 against bf16
    autocast (a single call each: the bf16 one takes minutes on a CPU without AVX512-BF16)."""
    import torch
    z = torch.randn(1, 4, latent, latent, generator=torch.Generator().manual_seed(0))
    out = {"latent": latent}
    with torch.inference_mode():
        model.vae.decode(z)  # warm
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                t0 = time.perf_counter()
                model.vae.decode(z)
                out[f"{name}_s"] = time.perf_counter() - t0
    return out


def top_ops(model, steps: int) -> list[dict]:
    """torch.profiler's operators by self CPU time over a genzoo call (``steps`` steps)."""
    from torch.profiler import ProfilerActivity, profile as tprofile
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        run_genzoo(model, 1, steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:12]]


def per_step_overhead(model, pipe, splits: dict, steps: int = STEPS, n: int = 1) -> dict:
    """The loop's own cost: genzoo's sampler and diffusers' scheduler loop (latents, guidance
    arithmetic, solver updates, post-processing), with the UNet's forward replaced by zeros
    of its output's shape and the text encoder's and VAE decoder's time taken out."""
    import torch

    def stub(x, *args, return_dict=True, **kwargs):
        out = torch.zeros_like(x[:, :4])
        return (out,) if not return_dict else type("Out", (), {"sample": out})()

    out = {}
    for side, unet, fn in (("genzoo", model.unet, lambda: run_genzoo(model, n, steps)),
                           ("diffusers", pipe.unet, lambda: run_diffusers(pipe, n, steps))):
        unet.forward = stub
        try:
            fn()
            rest = [timed(fn, splits[side])[1]["rest"] for _ in range(5)]
        finally:
            del unet.forward
        out[side] = {"loop_s_per_call": statistics.median(rest),
                     "loop_ms_per_step": 1000 * statistics.median(rest) / steps}
    return out


# ---- the whole run ----------------------------------------------------------------------------
def rows_of(configs: dict) -> list[dict]:
    """The results as benchmarks/run.py's rows (one per config and batch, one per RSS)."""
    return pb.rows_of(configs, "text-to-image",
                      lambda c: (c["output"], f"DPM++ {c['steps']}, guidance {GUIDANCE:g}"),
                      "image", "StableDiffusionPipeline", MAX_DIFF)


def rows(quick: bool = False) -> list[dict]:
    """benchmarks/run.py's rows (``run.py --only text2image``)."""
    return rows_of(measure(quick)[0])


def measure(quick: bool) -> tuple[dict, float]:
    """Build, time and measure every config; (results, seconds taken)."""
    t_start = time.perf_counter()
    configs = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, spec in CONFIGS.items():
            sd = name == "sd15-shaped"
            steps = (3 if sd else 5) if quick else STEPS
            rounds = 1 if quick else 3
            batches = spec["batches"][:1] if quick and sd else spec["batches"]
            print(f"[{name}] building", file=sys.stderr, flush=True)
            folder = build(name, tmp / name)
            result = {"what": spec["what"], "steps": steps, "rounds": rounds,
                      "parameters": pb.parameters(folder, ("unet", "text_encoder", "vae"))}
            result["batches"] = speed(folder, batches, rounds, steps)
            result["output"] = "x".join(map(str, result_shape(folder)))
            print(f"[{name}] peak RSS", file=sys.stderr, flush=True)
            result["rss"] = peak_rss(folder, max(batches), steps, tmp)
            configs[name] = result
    return configs, time.perf_counter() - t_start


def result_shape(folder: Path) -> tuple[int, int]:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    f = 2 ** (len(vae["block_out_channels"]) - 1)
    return unet["sample_size"] * f, unet["sample_size"] * f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps, 1 round")
    ap.add_argument("--profile", action="store_true",
                    help="run the lever experiments on sd15-shaped (batch 1) instead")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    out_path = Path(args.out)
    old = json.loads(out_path.read_text()) if out_path.is_file() else {}
    meta = pb.meta("benchmarks/bench_text2image.py", argv, quick=args.quick, prompt=PROMPT,
                   sampler="dpmsolver++", guidance=GUIDANCE, goal=GOAL)
    if args.profile:
        steps = 5 if args.quick else STEPS
        with tempfile.TemporaryDirectory() as d:
            folder = build("sd15-shaped", Path(d) / "sd15-shaped")
            result = profile(folder, steps, 1 if args.quick else 3, not args.quick)
        old["profile"] = {"meta": meta, **result}
        out_path.write_text(json.dumps(old, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0
    configs, seconds = measure(args.quick)
    meta["seconds"] = seconds
    data = {"meta": meta, "configs": configs, "rows": rows_of(configs)}
    if "profile" in old:
        data["profile"] = old["profile"]
    return pb.report(data, out_path, MAX_DIFF, "images")

if __name__ == "__main__":
    sys.exit(main())
