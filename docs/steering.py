"""Retake docs/steering.png: what the steering options do to the bundled diffusion-mnist.

    python docs/steering.py            # writes docs/steering.png (about a minute on a CPU)

Rows, eight seeds each: ``--label 7``; a held-out digit (first column: the picture itself)
redrawn at ``--strength 0.5`` with its label; the same digit with its lower half masked
(``--mask``: white regenerates) and completed; gan-mnist and vae-mnist with ``--label 7``.
"""
from __future__ import annotations

from pathlib import Path

import torch

import genzoo
from genzoo.data import mnist_split
from genzoo.samples import Samples

OUT = Path(__file__).resolve().parent / "steering.png"


def main() -> None:
    """Sample each row and save them as one grid, a row per steering option."""
    digits, labels = mnist_split("floor")
    picture, label = digits[3:4], int(labels[3])  # a held-out digit the models never saw
    mask = torch.zeros_like(picture)
    mask[..., 14:, :] = 1.0  # white = regenerate: the lower half
    model = genzoo.load("diffusion-mnist", device="cpu")
    rows = [model.sample(8, seed=0, label=7).images,
            torch.cat([picture, model.sample(7, seed=0, init=picture.expand(7, -1, -1, -1),
                                             strength=0.5, label=label).images]),
            torch.cat([picture * (1 - mask), model.sample(
                7, seed=0, init=picture.expand(7, -1, -1, -1),
                mask=mask.expand(7, -1, -1, -1), label=label).images])]
    for name in ("gan-mnist", "vae-mnist"):
        rows.append(genzoo.load(name, device="cpu").sample(8, seed=0, label=7).images)
    Samples(images=torch.cat(rows)).save(OUT, nrow=8)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
