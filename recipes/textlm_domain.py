"""Recipe: adapt ``textlm-shakespeare`` to another real text, full finetuning against LoRA.

The new domain is Python's own documentation as shipped with every CPython:
``pydoc_data.topics.topics`` (the text ``help("if")`` prints; about 465,000 characters),
its topics joined in sorted order. The first 90% of the characters train, the last 10% are
held out. Retention is measured on held-out Shakespeare: the last 10% of tinyshakespeare
(the same split ``recipes/textlm_shakespeare.py`` validated the base on; pass its path with
``--shakespeare``).

Runs, each from the bundled textlm-shakespeare with the genzoo engine, the same data order,
batch 16 x 256 bytes and steps, checkpointed every 100 steps (rerun with ``--resume``):

- ``full``: every weight, AdamW lr 3e-4 (the family's rate; 10x the engine's gentle default
  for loaded models, which moves too little in a few hundred steps);
- ``lora``: a rank-8 adapter (alpha 8) on every attention and MLP projection, lr 2e-3 (LoRA
  is usually run at about ten times the full-finetuning rate).

Measured: held-out nats/char on the new text and on Shakespeare (non-overlapping 256-byte
windows, fp32), trainable parameters, what is saved, steps and minutes on one CPU thread.

    OMP_NUM_THREADS=1 python recipes/textlm_domain.py \
        --shakespeare /work/shared/data/tinyshakespeare.txt --out runs/domain --resume
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

BASE = "textlm-shakespeare"
RUNS = {"full": dict(lr=3e-4), "lora": dict(lr=2e-3, lora={"rank": 8, "alpha": 8})}
COMMON = dict(batch_size=16, warmup=30, save_every=100, log_every=50, seed=0, progress=False)


def domain_text() -> str:
    """Python's pydoc topics, joined in sorted topic order (deterministic)."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def split(text: str) -> tuple[str, str]:
    """The first 90% of the characters train, the last 10% are held out."""
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


def train(kind: str, data: Path, out: Path, steps: int, resume: bool) -> dict:
    """One run from the bundled base; returns its steps, seconds and saved size."""
    import genzoo
    from genzoo.engine.lora import trainable_count
    model = genzoo.load(BASE, device="cpu", dtype="fp32")
    t0 = time.perf_counter()
    result = genzoo.finetune(model, data, steps=steps, out=out, resume=resume and out.exists(),
                             overwrite=not resume, **COMMON, **RUNS[kind])
    seconds = time.perf_counter() - t0
    saved = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    info = {"steps": result.steps, "train_loss": result.metrics.get("loss"),
            "seconds_this_run": round(seconds, 1), "trainable": trainable_count(model),
            "params": model.num_parameters(), "saved_bytes": saved}
    log = out / "recipe.json"
    earlier = json.loads(log.read_text()) if log.is_file() and resume else {}
    info["train_seconds"] = round(earlier.get("train_seconds", 0.0) * resume + seconds, 1)
    log.write_text(json.dumps(info))
    print(f"{kind}: {json.dumps(info)}", flush=True)
    return info


def score(target: str, texts: dict[str, str]) -> dict[str, float]:
    """Held-out nats/char of ``target`` (a name or folder) on each text."""
    import genzoo
    model = genzoo.load(target, device="cpu", dtype="fp32")
    return {name: round(model.score_text(text, batch_size=32)["nats_per_char"], 4)
            for name, text in texts.items()}


def cpu_model() -> str:
    """The CPU's model name, as lscpu reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines()
                    if l.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def main() -> None:
    """Train both runs (resumable), score the base and both results, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shakespeare", required=True, help="tinyshakespeare.txt")
    ap.add_argument("--out", type=Path, default=Path("runs/domain"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", default="full,lora")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_text, held_out = split(domain_text())
    data = args.out / "pydoc_train.txt"
    data.write_text(train_text, encoding="utf-8")
    shakespeare = Path(args.shakespeare).read_text(encoding="utf-8")
    texts = {"pydoc_heldout": held_out, "shakespeare_heldout": split(shakespeare)[1]}
    results = {"cpu": cpu_model(), "threads": os.environ.get("OMP_NUM_THREADS"),
               "base": score(BASE, texts)}
    for kind in args.runs.split(","):
        info = train(kind, data, args.out / kind, args.steps, args.resume)
        results[kind] = {**info, **score(str(args.out / kind), texts)}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("| run | trainable params | saved | pydoc held-out nats/char | Shakespeare held-out "
          "nats/char | steps | minutes |\n|---|---|---|---|---|---|---|")
    base = results["base"]
    print(f"| {BASE} (no adaptation) | - | - | {base['pydoc_heldout']:.3f} | "
          f"{base['shakespeare_heldout']:.3f} | - | - |")
    for kind in args.runs.split(","):
        r = results[kind]
        print(f"| {kind} | {r['trainable']:,} | {r['saved_bytes'] / 1e6:.2f} MB | "
              f"{r['pydoc_heldout']:.3f} | {r['shakespeare_heldout']:.3f} | {r['steps']} | "
              f"{r['train_seconds'] / 60:.1f} |")


if __name__ == "__main__":
    main()
