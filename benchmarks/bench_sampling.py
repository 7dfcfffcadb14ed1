"""Diffusion sampling side by side with diffusers.

(a) same weights: a diffusers UNet2DModel folder (random weights, MNIST-sized, DDIM scheduler)
    sampled by genzoo (``genzoo.load`` on the folder: diffusers' UNet, genzoo's native sampler
    and levers) and by diffusers' own ``DDIMPipeline`` - same steps, same batch; samples/s.
(b) the main job end to end: ``genzoo sample diffusion-mnist -n 64`` as a whole process against
    a diffusers script sampling 64 digits from a UNet2DModel of no more compute (FLOPs counted
    and printed), with the same sampler (DPM-Solver++) and steps (20); wall seconds.
(c) peak memory (max RSS) of sampling 1,000 digits, genzoo against the diffusers script.

genzoo runs as a user gets it (eager fp32 on CPU) and with the levers that pay here: bf16
autocast (native on AVX512-BF16 CPUs, measured FD unchanged) and torch.compile (steady state,
with its compile time reported, full runs only).

Runs alternate so that machine noise hits both alike; medians are reported.

    python benchmarks/bench_sampling.py [--quick]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

DIFFUSERS_SCRIPT = textwrap.dedent("""
    import sys, torch
    from diffusers import UNet2DModel, DPMSolverMultistepScheduler
    from PIL import Image
    folder, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    unet = UNet2DModel.from_pretrained(folder, use_safetensors=True).eval()
    sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                        prediction_type="v_prediction")
    sched.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    imgs = []
    with torch.inference_mode():
        for start in range(0, n, 256):
            x = torch.randn(min(256, n - start), 1, 28, 28, generator=g)
            for t in sched.timesteps:
                x = sched.step(unet(x, t).sample, t, x).prev_sample
            imgs.append(((x + 1) / 2).clamp(0, 1))
            sched.set_timesteps(20)
    x = torch.cat(imgs)
    grid = (x[:64, 0] * 255).round().to(torch.uint8).reshape(8, 8, 28, 28).permute(0, 2, 1, 3)
    Image.fromarray(grid.reshape(8 * 28, 8 * 28).numpy()).save(out)
""")


def _diffusers_unet(sample_size=28, channels=(32, 64, 64)):
    """A UNet2DModel shaped like genzoo's house UNet (attention at the lowest resolution)."""
    from diffusers import UNet2DModel
    return UNet2DModel(sample_size=sample_size, in_channels=1, out_channels=1,
                       block_out_channels=channels, layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


def _flops(module, *inputs) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        module(*inputs)
    return fc.get_total_flops()


def same_weights(tmp: Path, rounds: int, n: int, steps: int, quick: bool) -> list[dict]:
    """(a): genzoo vs DDIMPipeline on one diffusers folder; samples/s. genzoo runs eager fp32
    (its default on CPU), then with each lever a user can pull: bf16 autocast (``dtype="bf16"``;
    native on CPUs with AVX512-BF16/AMX and on GPUs) and, in a full run, torch.compile."""
    import torch
    from diffusers import DDIMPipeline, DDIMScheduler
    import genzoo
    torch.manual_seed(0)
    unet = _diffusers_unet()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    DDIMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp / "pipe", safe_serialization=True)
    pipe = DDIMPipeline.from_pretrained(tmp / "pipe", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    models = {"fp32": genzoo.load(str(tmp / "pipe"), device="cpu", dtype="fp32"),
              "bf16": genzoo.load(str(tmp / "pipe"), device="cpu", dtype="bf16")}
    compile_seconds = {}
    if not quick:  # inductor compiles for tens of seconds on 2 cores: full runs only
        for name, dtype in (("compiled", "fp32"), ("bf16+compiled", "bf16")):
            models[name] = genzoo.load(str(tmp / "pipe"), device="cpu", dtype=dtype)
            models[name].unet = torch.compile(models[name].unet)
            t0 = time.perf_counter()
            models[name].sample(n, seed=0, sampler="ddim", steps=1, batch_size=n)
            compile_seconds[name] = time.perf_counter() - t0  # short when inductor's cache is warm
    times: dict[str, list[float]] = {k: [] for k in [*models, "diffusers"]}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.sample(n, seed=0, sampler="ddim", steps=steps, batch_size=n)
            times[name].append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        pipe(batch_size=n, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
             output_type="np")
        times["diffusers"].append(n / (time.perf_counter() - t0))
    p = statistics.median(times["diffusers"])
    label = {"fp32": "eager fp32 (default)", "bf16": 'bf16 autocast (dtype="bf16")',
             "compiled": "torch.compile'd UNet, steady state",
             "bf16+compiled": "bf16 and torch.compile, steady state"}
    out = []
    for name in models:
        g = statistics.median(times[name])
        row = {"benchmark": f"same-weights sampling (DDIM-{steps}, {n} samples), {label[name]}",
               "genzoo": g, "peer": p, "peer_name": "diffusers DDIMPipeline (fp32)",
               "unit": "samples/s", "ratio": g / p, "goal": ">= 1.0 (aim 1.5 with levers)",
               "ok": g / p >= 1.0}
        if name in compile_seconds:
            row["compile_seconds"] = compile_seconds[name]
        out.append(row)
    return out


def main_job(tmp: Path, rounds: int) -> list[dict]:
    """(b) and (c): the whole `genzoo sample diffusion-mnist` process vs a diffusers script."""
    import torch
    from genzoo_diffusion.model import DiffusionModel
    torch.manual_seed(0)
    unet = _diffusers_unet()
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([500])
    ours_flops = _flops(DiffusionModel().unet, x, t)
    peer_flops = _flops(unet, x, t)
    script = tmp / "diffusers_sample.py"
    script.write_text(DIFFUSERS_SCRIPT)
    genzoo_cmd = [sys.executable, "-m", "genzoo", "sample", "diffusion-mnist", "-n", "64",
                  "-o", str(tmp / "g.png")]
    peer_cmd = [sys.executable, str(script), str(tmp / "unet"), "64", str(tmp / "d.png")]
    bf16_cmd = genzoo_cmd + ["--dtype", "bf16"]
    from peak_rss import peak_rss_mib
    from run import wall_seconds
    wall_seconds(genzoo_cmd), wall_seconds(peer_cmd)  # warm the page cache
    ours, ours_bf16, theirs = [], [], []
    for _ in range(rounds):
        ours.append(wall_seconds(genzoo_cmd))
        ours_bf16.append(wall_seconds(bf16_cmd))
        theirs.append(wall_seconds(peer_cmd))
    p = statistics.median(theirs)
    rows = []
    for label, times in (("", ours), (", genzoo --dtype bf16", ours_bf16)):
        g = statistics.median(times)
        rows.append({"benchmark": f"main job end to end (64 digits, DPM-Solver++ 20){label}",
                     "genzoo": g, "peer": p, "peer_name": "diffusers script, UNet2DModel (fp32)",
                     "unit": "s", "ratio": p / g, "goal": ">= 2.0 (peer/genzoo)",
                     "ok": p / g >= 2.0,
                     "flops_per_forward": {"genzoo": ours_flops, "peer": peer_flops}})
    # the main job as a user types it, against the bare cost of starting torch
    job16 = genzoo_cmd[:6] + ["16", "-o", str(tmp / "g16.png")]
    torch_cmd = [sys.executable, "-c", "import torch"]
    job, imp = [], []
    for _ in range(5):
        job.append(wall_seconds(job16))
        imp.append(wall_seconds(torch_cmd))
    j, i = statistics.median(job), statistics.median(imp)
    rows.append({"benchmark": "genzoo sample diffusion-mnist -n 16 (whole process)", "genzoo": j,
                 "peer": i, "peer_name": "python -c 'import torch'", "unit": "s",
                 "ratio": j / i, "goal": "<= 2.0", "ok": j / i <= 2.0})
    # each process's own VmHWM: wait4 would report this (larger) benchmark process for both
    g_rss = peak_rss_mib(["-m", "genzoo", "sample", "diffusion-mnist", "-n", "1000",
                          "-o", str(tmp / "g.npz")])
    p_rss = peak_rss_mib([str(script), str(tmp / "unet"), "1000", str(tmp / "d.png")])
    rows.append({"benchmark": "peak RSS sampling 1,000 digits", "genzoo": g_rss, "peer": p_rss,
                 "peer_name": "diffusers script", "unit": "MiB", "ratio": g_rss / p_rss,
                 "goal": "report", "ok": True})
    return rows


def rows(quick: bool = False) -> list[dict]:
    """All sampling rows."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = same_weights(tmp, 3 if quick else 5, 64, 20 if quick else 50, quick)
        rows += main_job(tmp, 3 if quick else 5)
    return rows


if __name__ == "__main__":
    from run import standalone
    standalone(rows, __doc__)
