"""Which conditional VAE to bundle: train a vae-conv config with the recipe's trainer settings
(AdamW 2e-3, weight decay 0.1, batch 128) on ``mnist:train`` and measure what the choice rests
on: FD of 1,000 unlabelled samples against ``mnist:ref``, the likelihood figures, and label
accuracy of 1,000 labelled samples (``eval_labels.measure``).

    OMP_NUM_THREADS=1 python benchmarks/vae_variants.py cond16 '{"num_classes": 10}'
    OMP_NUM_THREADS=1 python benchmarks/vae_variants.py cond8 \\
        '{"num_classes": 10, "decoder_depth": 1, "latent_dim": 8}'

Each run trains into runs/vae-variant-NAME (about 5 minutes on one Xeon thread) and prints one
line of JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(name: str, config: dict, steps: int = 2500) -> dict:
    """Train ``config`` for ``steps`` and return its figures."""
    import torch
    torch.set_num_threads(1)
    import genzoo
    from eval_labels import measure
    from genzoo.eval.metrics import evaluate
    from genzoo_vae.model import ConvVAE
    out = f"runs/vae-variant-{name}"
    t0 = time.time()
    genzoo.finetune(ConvVAE(config), "mnist:train", steps=steps, out=out, lr=2e-3, batch_size=128,
                    weight_decay=0.1, progress=False)
    model = genzoo.load(out, device="cpu")
    res = evaluate(model, n=1000, seed=0)
    labels = measure(model, 1000, None)
    return {"name": name, "config": config, "train_s": round(time.time() - t0),
            **{k: res[k] for k in ("fd", "precision", "recall", "neg_elbo", "iw_nll")},
            "label_accuracy": labels["label_accuracy"]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
