"""Class-conditional sample quality: does `--label 7` give sevens, and at what guidance?

For each guidance scale, ``n`` samples with labels 0..9 in turn are classified by the zoo's
MNIST classifier (``mnist-features``): label accuracy is the share predicted as their label.
FD is measured against the 500 ``mnist:ref`` digits (all classes), FD per class against that
class's 50 reference digits (reported as the mean over classes), and the seconds per 1,000
samples give guidance's cost (it runs the network on the labelled and unlabelled copy).

    python benchmarks/eval_labels.py diffusion-mnist --guidance 1,2,3,4 --n 1000
    python benchmarks/eval_labels.py runs/diffusion-mnist-labels --n 200   # an unbundled run
    python benchmarks/eval_labels.py gan-mnist --guidance none             # no guidance to set
    python benchmarks/eval_labels.py diffusion-mnist --guidance none --img2img 0.5

``--img2img S`` also measures image-to-image at strength S: the 500 held-out ``mnist:floor``
digits, each given its own label, are redrawn from; ``label_kept`` is the share still
classified as that label, ``change`` the mean absolute pixel change (0: the picture came back
unchanged).

Results go to benchmarks/label_results.json (one entry per model and guidance), with the
machine's CPU model.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    """The CPU model lscpu reports (where figures were measured)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def measure(model, n: int, guidance: float | None, seed: int = 0, **extra) -> dict:
    """Label accuracy, FD overall and per class, and speed of ``n`` labelled samples."""
    import torch
    from genzoo.data import mnist_split
    from genzoo.eval.features import feature_net
    from genzoo.eval.metrics import frechet_distance
    from genzoo.eval.refstats import gaussian_stats
    labels = [i % 10 for i in range(n)]
    options = {"label": labels, **extra} if guidance is None else \
        {"label": labels, "guidance": guidance, **extra}
    t0 = time.perf_counter()
    images = model.sample(n, seed=seed, progress=sys.stderr.isatty(), **options).images
    seconds = time.perf_counter() - t0
    net = feature_net("mnist")
    feats, probs = net(images)
    ref_images, ref_labels = mnist_split("ref")
    ref_feats, _ = net(ref_images)
    want = torch.tensor(labels)
    accuracy = float((probs.argmax(1) == want).double().mean())

    def fd(a, b):
        (m1, s1), (m2, s2) = gaussian_stats(a), gaussian_stats(b)
        return frechet_distance(m1, s1, m2, s2)
    per_class = [fd(feats[want == c], ref_feats[ref_labels == c]) for c in range(10)]
    return {"n": n, "guidance": guidance, "label_accuracy": accuracy,
            "fd": fd(feats, ref_feats), "fd_per_class_mean": sum(per_class) / 10,
            "fd_per_class": per_class, "s_per_1k": 1000 * seconds / n}


def measure_img2img(model, strength: float, seed: int = 0) -> dict:
    """Image-to-image from the held-out digits with their labels: the label kept, the change."""
    from genzoo.data import mnist_split
    from genzoo.eval.features import feature_net
    images, labels = mnist_split("floor")
    t0 = time.perf_counter()
    out = model.sample(len(images), seed=seed, init=images, strength=strength,
                       label=labels.tolist(), progress=sys.stderr.isatty()).images
    seconds = time.perf_counter() - t0
    _, probs = feature_net("mnist")(out)
    return {"n": len(images), "strength": strength,
            "label_kept": float((probs.argmax(1) == labels).double().mean()),
            "change": float((out - images).abs().mean()), "s_per_1k": 1000 * seconds / len(images)}


@click.command()
@click.argument("model_name")
@click.option("--guidance", "scales", default="1,2,3,4", show_default=True,
              help="Comma-separated guidance scales ('none': the model's default).")
@click.option("--n", default=1000, show_default=True)
@click.option("--img2img", "strength", type=float, default=None,
              help="Also measure image-to-image from held-out digits at this strength.")
@click.option("-O", "--option", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Another sampling option (e.g. temperature=1.0); named in the row.")
@click.option("--out", default=str(HERE / "label_results.json"), show_default=True)
def main(model_name, scales, n, strength, pairs, out):
    """Measure class-conditional sampling of MODEL_NAME at each guidance scale."""
    import torch
    torch.set_num_threads(int(os.environ.get("GENZOO_THREADS", torch.get_num_threads())))
    import genzoo
    from genzoo.fsutil import atomic_write_text
    from genzoo.options import parse_key_values, validate
    model = genzoo.load(model_name, device="cpu")
    extra = validate(model.options(), parse_key_values(pairs), model_name, as_text=True)
    suffix = "".join(f", {k} {v}" for k, v in extra.items())
    path = Path(out)
    data = json.loads(path.read_text()) if path.is_file() else {"results": {}}
    data["meta"] = {"cpu": cpu_model(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    for scale in filter(None, scales.split(",")):  # --guidance "": image-to-image only
        g = None if scale.strip() == "none" else float(scale)
        row = measure(model, n, g, **extra)
        key = model_name if g is None else f"{model_name}, guidance {g:g}"
        data["results"][key + suffix] = row
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        click.echo(f"{model_name} guidance {scale}: accuracy {row['label_accuracy']:.3f}, FD "
                   f"{row['fd']:.2f}, per-class FD {row['fd_per_class_mean']:.2f}, "
                   f"{row['s_per_1k']:.0f} s/1k")
    if strength is not None:
        row = measure_img2img(model, strength)
        data["results"][f"{model_name}, strength {strength:g}"] = row
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        click.echo(f"{model_name} img2img at {strength}: label kept {row['label_kept']:.3f}, "
                   f"change {row['change']:.3f}")


if __name__ == "__main__":
    main()
