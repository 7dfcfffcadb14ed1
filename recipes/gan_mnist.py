"""Recipe: train the first-party ``gan-mnist`` model with genzoo's own engine.

Data: the 4,000 training digits of ``genzoo.data.mnist_split("train")`` (the ref/floor splits
are held out for evaluation). Model: the house DCGAN (64-d latent; generator 128/64 channels with
GroupNorm, 0.54M parameters; spectral-norm discriminator 64/128 channels with a 3x3 layer after
each stride-2 layer, 0.32M), hinge loss, one discriminator and one generator AdamW step per
step (lr 5e-4, betas (0.5, 0.99), warm-up and cosine decay), batch 64, EMA generator 0.999,
4,000 steps. Class-conditional since genzoo 0.3: the one-hot label is appended to the
generator's latent and the discriminator is a projection discriminator. Short runs of other settings (a shallower discriminator, lr 2e-4, BatchNorm in the
generator, non-saturating loss without spectral norm, hidden linear layers) gave blotchier
digits or mode collapse at equal steps.

    python recipes/gan_mnist.py train --out runs/gan-mnist [--stop-after K]
    python recipes/gan_mnist.py train --out runs/gan-mnist --resume   # continue
    python recipes/gan_mnist.py bundle --out runs/gan-mnist

Training is resumable at any point (checkpoints every 250 steps). ``bundle`` writes the fp16
weights into the plugin package and the card's sha256s into its weights/cards.yaml.
"""
from __future__ import annotations

from bundle import ROOT, mnist_recipe  # recipes/ is on sys.path when this file runs

WEIGHTS = ROOT / "plugins/gan/genzoo_gan/weights/gan-mnist"


def _model():
    from genzoo_gan.model import DCGAN
    # class-conditional (projection discriminator); samples without a label from the prior
    return DCGAN({"num_classes": 10})


main = mnist_recipe("gan-mnist", WEIGHTS, steps=4000, make_model=_model,
                    lr=5e-4, batch_size=64, ema_decay=0.999,
                    save_every=250, sample_every=500, log_every=100)

if __name__ == "__main__":
    main()
