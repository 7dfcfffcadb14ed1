"""Recipe: train the first-party ``vae-mnist`` model with genzoo's own engine.

Data: the 4,000 training digits of ``genzoo.data.mnist_split("train")`` (grey levels in [0, 1],
used as soft Bernoulli targets; the ref/floor splits are held out for evaluation). Model: the
house convolutional VAE (channels 32/64, a 256-wide layer each side, 16-d latent, 1.7M
parameters), AdamW 2e-3 (weight decay 0.1) with warm-up and cosine decay, batch 128, no EMA,
2,500 steps: on the held-out ``ref`` split the negative ELBO is lowest near there and grows with
longer training (106.6 nats at 2,000 steps, 109.9 at 4,000 without weight decay).

    python recipes/vae_mnist.py train --out runs/vae-mnist [--stop-after K]
    python recipes/vae_mnist.py train --out runs/vae-mnist --resume   # continue
    python recipes/vae_mnist.py bundle --out runs/vae-mnist

Training is resumable at any point (checkpoints every 500 steps). ``bundle`` writes the fp16
weights into the plugin package and the card's sha256s into its weights/cards.yaml.
"""
from __future__ import annotations

from bundle import ROOT, mnist_recipe  # recipes/ is on sys.path when this file runs

WEIGHTS = ROOT / "plugins/vae/genzoo_vae/weights/vae-mnist"


def _model():
    from genzoo_vae.model import ConvVAE
    return ConvVAE()


main = mnist_recipe("vae-mnist", WEIGHTS, steps=2500, make_model=_model,
                    lr=2e-3, batch_size=128, weight_decay=0.1,
                    save_every=500, sample_every=1000, log_every=100)

if __name__ == "__main__":
    main()
