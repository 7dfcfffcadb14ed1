"""Recipe: train and bundle ``mnist-features``, the evaluator's MNIST feature network.

Data: the 4,000 digits of ``mnist:train`` only; ``mnist:ref`` and ``mnist:floor`` (1,000
digits) are held out and give the test accuracy recorded in the card. Model: the small CNN of
``genzoo.eval.features`` (242k parameters), label-smoothed cross-entropy on randomly jittered
digits, AdamW 3e-3 with warm-up and cosine decay, batch 128, 1,500 steps (48 epochs; about
3 minutes on one CPU thread).

    python recipes/mnist_features.py train [--out runs/mnist-features] [--resume]
    python recipes/mnist_features.py bundle [--out runs/mnist-features]

``bundle`` stores fp16 weights in genzoo/eval/weights/mnist-features (only if the fp16 copy keeps
the accuracy) and writes sha256s, size and held-out accuracy into genzoo/eval/weights/features.yaml
(the feature net's digests; not part of the model catalog).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "genzoo/eval/weights/mnist-features"
STEPS = 1500


def heldout_accuracy(model) -> float:
    """Accuracy on the 1,000 held-out digits (mnist:ref + mnist:floor)."""
    import torch
    from genzoo.data import mnist_split
    parts = [mnist_split(s) for s in ("ref", "floor")]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    return model.accuracy(images, labels)


@click.group()
def main():
    """Train and bundle mnist-features."""


@main.command()
@click.option("--out", default=str(ROOT / "runs/mnist-features"), show_default=True)
@click.option("--steps", default=STEPS, show_default=True)
@click.option("--resume", is_flag=True)
@click.option("--stop-after", type=int, default=None)
def train(out, steps, resume, stop_after):
    """Train (or resume) the classifier into OUT and print its held-out accuracy."""
    import torch
    torch.set_num_threads(int(os.environ.get("GENZOO_THREADS", torch.get_num_threads())))
    import genzoo
    from genzoo.eval.features import MnistClassifier
    model = MnistClassifier()
    result = genzoo.finetune(model, "mnist:train", steps=steps, out=out, save_every=250,
                             resume=resume, stop_after=stop_after, progress=sys.stderr.isatty(),
                             log_every=100, device="cpu")
    click.echo(f"done: {result.steps} steps in {result.seconds:.0f} s, metrics {result.metrics}")
    if not result.stopped_early:
        click.echo(f"held-out accuracy (ref+floor, 1,000 digits): {heldout_accuracy(model):.4f}")


@main.command()
@click.option("--out", default=str(ROOT / "runs/mnist-features"), show_default=True)
@click.option("--min-accuracy", default=0.98, show_default=True)
def bundle(out, min_accuracy):
    """Copy the trained classifier into genzoo/eval/weights/mnist-features and update its card."""
    import torch
    sys.path.insert(0, str(ROOT / "recipes"))
    from bundle import bundle_model

    from genzoo.eval.features import MnistClassifier
    model = MnistClassifier.from_pretrained(out, device="cpu", dtype="fp32")
    acc32 = heldout_accuracy(model)
    # Measure the copy that will ship: weights rounded to fp16 and back.
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    acc16 = heldout_accuracy(model)
    click.echo(f"held-out accuracy: fp32 {acc32:.4f}, fp16 {acc16:.4f}")
    if acc16 < min_accuracy:
        raise click.ClickException(f"accuracy {acc16:.4f} is below {min_accuracy}; not bundled")
    fp16 = acc16 >= acc32 - 0.001
    metrics = {"heldout_accuracy": round(acc16 if fp16 else acc32, 4),
               "heldout_set": "mnist:ref+mnist:floor (1000 digits)", "train_set": "mnist:train"}
    if not fp16:
        model = MnistClassifier.from_pretrained(out, device="cpu", dtype="fp32")
    from genzoo.eval.features import FEATURES_CATALOG
    bundle_model(model, "mnist-features", WEIGHTS, metrics=metrics, fp16=fp16,
                 catalog=FEATURES_CATALOG)
    loaded = MnistClassifier.from_pretrained(WEIGHTS, device="cpu", dtype="fp32")
    click.echo(f"bundled copy reloads with accuracy {heldout_accuracy(loaded):.4f}")


if __name__ == "__main__":
    main()
