"""Text-to-audio side by side with diffusers' AudioLDMPipeline, same folder.

Two random AudioLDM pipelines are built with diffusers and transformers and saved with
``save_pretrained``:

- ``tiny``: diffusers' own AudioLDM test sizes (plugins/diffusion/tests/_tiny_audioldm.py),
  its default length (0.016 s: 256 samples at 16 kHz).
- ``audioldm-shaped``: AudioLDM-S's layout scaled down in width to fit a 2-core CPU: its
  UNet2DConditionModel (a plain down block then three CrossAttn ones, mirrored up blocks, 2
  layers per block, 8-channel latents, CLAP's embedding as a concatenated "simple_projection"
  class embedding) at block_out_channels (32, 64, 96, 160) instead of (128, 256, 384, 640);
  its 3-block, 8-latent-channel autoencoder at (32, 64, 128) instead of (128, 256, 512); a
  4-layer, 128-wide CLAP text encoder (RoBERTa's 512-token padding, as AudioLDM pads) instead
  of RoBERTa-base's 12 x 768; its HiFi-GAN vocoder (64 mel bins, 16 kHz, upsampling 5-4-2-2-2,
  kernels 3/7/11) at 128 initial channels instead of 1024; 5.12 s of audio (a 128 x 16 latent).
- ``audioldm-shaped-clap``: the same with the text encoder at AudioLDM's own size (CLAP's
  RoBERTa-base text branch: 12 layers, 768 wide, 512 tokens; the vocabulary is the locally
  trained 1000 tokens, not RoBERTa's 50,265, which only changes the embedding table's size).
  AudioLDM's text encoder is not scaled down on a CPU, so this is the closer proxy of what a
  CPU run of a real checkpoint spends outside the UNet.

genzoo loads the folder (``genzoo.load(folder, device="cpu")``: fp32, its own DDIM),
diffusers loads it with ``AudioLDMPipeline.from_pretrained`` (its DDIMScheduler). Both make
the same prompt's waveforms with AudioLDM's defaults (DDIM, 10 steps, guidance 2.5) and the
same per-sample generators (``genzoo.seeding.sample_generators(0, n)``, given to diffusers as
its generator list), at batch 1 and 4; their waveforms must agree within 1e-4.

Speed: one warm-up call each (2 steps), then rounds (15 for tiny, 5 for the others, 1 with
--quick) alternating genzoo, diffusers, then diffusers, genzoo, ... (load from other jobs hits
both alike); medians.
Memory: each side's peak RSS (VmHWM, benchmarks/peak_rss.py) in its own fresh process that
imports, loads the folder and draws one batch of 4; median of 3 processes per side.

    OMP_NUM_THREADS=1 python benchmarks/bench_audioldm.py           # a few minutes here
    OMP_NUM_THREADS=1 python benchmarks/bench_audioldm.py --quick   # smoke run

Results go to benchmarks/audioldm_results.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# before torch loads: one thread, as the other benchmarks here (a shared 2-core machine)
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _pipeline_bench as pb  # noqa: E402  (after OMP_NUM_THREADS, before torch)

OUT = HERE / "audioldm_results.json"
PROMPT = "A hammer is hitting a wooden surface"
STEPS, GUIDANCE, SEED = 10, 2.5, 0
MAX_DIFF = 1e-4
#: The pipeline's networks, as its folder names them.
NETWORKS = ("unet", "vae", "text_encoder", "vocoder")
#: Fresh processes per side for peak RSS (the median is reported).
RSS_RUNS = 3
GOAL = "speed >= 1.0x diffusers (aim 1.3x) at <= 1.0x its peak RSS"

#: AudioLDM-S's layouts, scaled down in width (see the module docstring).
SHAPED = {
    "unet": dict(sample_size=128, in_channels=8, out_channels=8, layers_per_block=2,
                 block_out_channels=(32, 64, 96, 160),
                 down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
                 up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
                 cross_attention_dim=(32, 64, 96, 160), attention_head_dim=8,
                 norm_num_groups=32, class_embed_type="simple_projection",
                 projection_class_embeddings_input_dim=128, class_embeddings_concat=True),
    "vae": dict(in_channels=1, out_channels=1, latent_channels=8, layers_per_block=2,
                block_out_channels=(32, 64, 128), norm_num_groups=32, sample_size=256,
                down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3),
    "text_encoder": dict(bos_token_id=0, eos_token_id=2, pad_token_id=1, vocab_size=1000,
                         hidden_size=128, intermediate_size=512, num_attention_heads=2,
                         num_hidden_layers=4, projection_dim=128),
    "vocoder": dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=128,
                    upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                    resblock_kernel_sizes=[3, 7, 11],
                    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                    normalize_before=False),
    "scheduler": dict(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1),
}
#: CLAP's text branch at AudioLDM's size (RoBERTa-base), for ``audioldm-shaped-clap``.
REAL_CLAP = dict(SHAPED["text_encoder"], hidden_size=768, intermediate_size=3072,
                 num_attention_heads=12, num_hidden_layers=12, projection_dim=512)
CONFIGS = {"tiny": {"seconds": None, "batches": [1, 4], "rounds": 15},
           "audioldm-shaped": {"seconds": 5.12, "batches": [1, 4], "rounds": 5},
           "audioldm-shaped-clap": {"seconds": 5.12, "batches": [1, 4], "rounds": 5,
                                    "text_encoder": REAL_CLAP}}


def build(name: str, folder: Path) -> Path:
    """Build config ``name`` with diffusers and save it to ``folder`` in diffusers' layout."""
    pb.tests_path()
    import _tiny_audioldm as tiny
    if name == "tiny":
        return tiny.tiny_audioldm(folder)[0]
    import torch
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (ClapTextConfig, ClapTextModelWithProjection, RobertaTokenizer,
                              SpeechT5HifiGan, SpeechT5HifiGanConfig)
    tok_dir = tiny.write_roberta_tokenizer(folder.parent / f"{folder.name}-tokenizer",
                                           model_max_length=512)
    text_config = CONFIGS[name].get("text_encoder", SHAPED["text_encoder"])
    unet_config = dict(SHAPED["unet"],
                       projection_class_embeddings_input_dim=text_config["projection_dim"])
    torch.manual_seed(0)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(**SHAPED["vocoder"])).eval()
    tiny.audible(voc)
    pipe = AudioLDMPipeline(
        unet=UNet2DConditionModel(**unet_config).eval(),
        vae=AutoencoderKL(**SHAPED["vae"]).eval(),
        text_encoder=ClapTextModelWithProjection(ClapTextConfig(**text_config)).eval(),
        tokenizer=RobertaTokenizer.from_pretrained(str(tok_dir)),
        scheduler=DDIMScheduler(**SHAPED["scheduler"]), vocoder=voc)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


# ---- the two sides ------------------------------------------------------------------------
def load_diffusers(folder: Path):
    from diffusers import AudioLDMPipeline
    pipe = AudioLDMPipeline.from_pretrained(str(folder), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_diffusers(pipe, n: int, seconds, steps: int = STEPS):
    from genzoo.seeding import sample_generators
    return pipe(prompt=PROMPT, num_waveforms_per_prompt=n, num_inference_steps=steps,
                guidance_scale=GUIDANCE, audio_length_in_s=seconds,
                generator=sample_generators(SEED, n), output_type="pt").audios


def run_genzoo(model, n: int, seconds, steps: int = STEPS):
    return model.sample(n, seed=SEED, prompt=PROMPT, sampler="ddim", steps=steps,
                        guidance=GUIDANCE, seconds=seconds, batch_size=n).data[:, 0]


def speed(folder: Path, seconds, batches, rounds: int, steps: int) -> dict:
    """Waveforms/s of both sides per batch (median of ``rounds`` alternating calls after a
    warm-up), the median seconds per network and the largest waveform difference."""
    import genzoo
    model = genzoo.load(str(folder), device="cpu")
    pipe = load_diffusers(folder)
    splits = {side: pb.Split(text_encoder=m.text_encoder, unet=m.unet,
                             vae_decoder=m.vae.decoder, vocoder=m.vocoder)
              for side, m in (("genzoo", model), ("diffusers", pipe))}
    runs = {"genzoo": lambda n, s: run_genzoo(model, n, seconds, s),
            "diffusers": lambda n, s: run_diffusers(pipe, n, seconds, s)}
    out = {}
    for n in batches:
        secs, parts, made, diff = pb.side_by_side(runs, splits, n, rounds, steps)
        out[str(n)] = pb.speed_row(n, secs, parts, diff, "waveform",
                                   {"samples": int(made["genzoo"].shape[-1]),
                                    "waveform_std": float(made["diffusers"].std())})
    return out


# ---- peak memory, each side in its own fresh process --------------------------------------
RSS_SCRIPT = textwrap.dedent("""
    import sys
    side, folder, n, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    prompt, guidance = sys.argv[5], float(sys.argv[6])
    seconds = None if sys.argv[7] == "None" else float(sys.argv[7])
    if side == "genzoo":
        import genzoo
        model = genzoo.load(folder, device="cpu")
        model.sample(n, seed=0, prompt=prompt, sampler="ddim", steps=steps, guidance=guidance,
                     seconds=seconds, batch_size=n)
    else:
        import torch
        from diffusers import AudioLDMPipeline
        pipe = AudioLDMPipeline.from_pretrained(folder, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        pipe(prompt=prompt, num_waveforms_per_prompt=n, num_inference_steps=steps,
             guidance_scale=guidance, audio_length_in_s=seconds, output_type="pt",
             generator=[torch.Generator().manual_seed(i) for i in range(n)])
""")


def peak_rss(folder: Path, n: int, steps: int, seconds, tmp: Path) -> dict:
    """Peak RSS (MiB) of each side drawing a batch of ``n`` in a fresh process."""
    script = tmp / "audioldm_rss.py"
    script.write_text(RSS_SCRIPT)
    args = [str(folder), str(n), str(steps), PROMPT, str(GUIDANCE), str(seconds)]
    runs = pb.rss_pair(script, args, RSS_RUNS)
    g, d = (statistics.median(runs[side]) for side in ("genzoo", "diffusers"))
    return {"batch": n, "steps": steps, "genzoo_mib": g, "diffusers_mib": d, "ratio": g / d,
            "runs_mib": runs}


# ---- the run ------------------------------------------------------------------------------
def rows_of(configs: dict) -> list[dict]:
    """The results as benchmarks/run.py's rows (one per config and batch, one per RSS)."""
    return pb.rows_of(configs, "text-to-audio",
                      lambda c: (f"{c['audio_s']:g} s", f"DDIM {c['steps']}, guidance "
                                                        f"{GUIDANCE:g}"),
                      "waveform", "AudioLDMPipeline", MAX_DIFF)


def rows(quick: bool = False) -> list[dict]:
    """benchmarks/run.py's rows."""
    return rows_of(measure(quick)[0])


def measure(quick: bool) -> tuple[dict, float]:
    """Build, time and measure every config; (results, seconds taken)."""
    t_start = time.perf_counter()
    configs = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, spec in CONFIGS.items():
            steps, rounds = (3, 1) if quick else (STEPS, spec["rounds"])
            print(f"[{name}] building", file=sys.stderr, flush=True)
            folder = build(name, tmp / name)
            result = {"parameters": pb.parameters(folder, NETWORKS), "steps": steps,
                      "rounds": rounds, "seconds_asked": spec["seconds"]}
            result["batches"] = speed(folder, spec["seconds"], spec["batches"], rounds, steps)
            first = next(iter(result["batches"].values()))
            result["audio_s"] = first["samples"] / 16000
            print(f"[{name}] peak RSS", file=sys.stderr, flush=True)
            result["rss"] = peak_rss(folder, max(spec["batches"]), steps, spec["seconds"], tmp)
            configs[name] = result
    return configs, time.perf_counter() - t_start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write audioldm_results.json, print the table; 1 if outputs differ."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 steps, 1 round")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    meta = pb.meta("benchmarks/bench_audioldm.py", argv, quick=args.quick, prompt=PROMPT,
                   sampler="ddim", guidance=GUIDANCE, goal=GOAL)
    configs, seconds = measure(args.quick)
    meta["seconds"] = seconds
    data = {"meta": meta, "configs": configs, "rows": rows_of(configs)}
    return pb.report(data, Path(args.out), MAX_DIFF, "waveforms")

if __name__ == "__main__":
    sys.exit(main())
