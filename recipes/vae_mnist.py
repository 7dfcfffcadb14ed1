"""Recipe: train the first-party ``vae-mnist`` model with genzoo's own engine.

Data: the 4,000 training digits of ``genzoo.data.mnist_split("train")`` (grey levels in [0, 1],
used as soft Bernoulli targets; the ref/floor splits are held out for evaluation). Model: the
house convolutional VAE, class-conditional (q(z|x, y), p(x|z, y); channels 32/64 with a 3x3
convolution after the decoder's upsampling, a 256-wide layer each side, 8-d latent), AdamW 2e-3
(weight decay 0.1) with warm-up and cosine decay, batch 128, no EMA, 2,500 steps (the
unconditional model's held-out negative ELBO was lowest near there).

Why these settings (``benchmarks/vae_variants.py``: 2,500 steps each, 1,000 samples against
``mnist:ref``, label accuracy by the zoo's classifier; Intel Xeon, one thread): the unconditional 16-d model had FD 48.4; conditional with a 16-d latent FD 22.3 at
83.3% label accuracy; adding the decoder convolution FD 18.1, 86.4%, neg ELBO 102.9 nats; a
12-d latent FD 16.1, 85.7%; an 8-d latent FD 12.4, 90.2%, neg ELBO 111.5. The 8-d latent is the
only one that reaches the 90% label accuracy asked for, at the cost of likelihood: a smaller
latent leaves the label more of the work, and keeps less of each digit's detail.

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
    return ConvVAE({"num_classes": 10, "decoder_depth": 1, "latent_dim": 8})


main = mnist_recipe("vae-mnist", WEIGHTS, steps=2500, make_model=_model,
                    lr=2e-3, batch_size=128, weight_decay=0.1,
                    save_every=500, sample_every=1000, log_every=100)

if __name__ == "__main__":
    main()
