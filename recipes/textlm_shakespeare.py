"""Recipe: train ``textlm-shakespeare``, a small GPT-2-architecture byte-level LM, on one CPU
thread in under 45 minutes, measure its validation loss and bundle it into genzoo-textlm.

Data: tinyshakespeare (40,000 lines of Shakespeare, 1,115,394 characters), Andrej
Karpathy's char-rnn ``data/tinyshakespeare/input.txt``
(https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt),
also used by nanoGPT. It is not in the repository: pass its path with ``--data``. Split as
nanoGPT does: the first 90% of the characters train, the last 10% validate.

Model: 4 layers, 4 heads, 192 wide, context 256, 256-token byte-level tokenizer (on this
ASCII text one token is one character, so nats/token = nats/char), no dropout.
Training: the genzoo engine, batch 16 x 256 tokens, AdamW lr 2e-3 (betas 0.9/0.99, weight
decay 0.1), 100 warm-up steps then cosine decay to 2e-4, clip 1.0; as many steps (at most
4,000) as fit in 40 minutes, planned from the time of the first 40; checkpoints every 250
steps (rerun with ``--resume`` after an interruption).

    tools/slot.sh /tmp/textlm-train.log python recipes/textlm_shakespeare.py \
        --data /work/shared/data/tinyshakespeare.txt --resume

Stages (``--stage``): ``train`` (resumable), ``eval`` (validation nats/char of the trained
folder, fp32 and fp16 weights), ``bundle`` (fp16 weights into
plugins/textlm/genzoo_textlm/weights/textlm-shakespeare and the card in its weights/cards.yaml);
``all`` runs the three.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "textlm-shakespeare"
WEIGHTS_DIR = ROOT / "plugins/textlm/genzoo_textlm/weights" / NAME

CONFIG = dict(vocab_size=256, n_positions=256, n_embd=192, n_layer=4, n_head=4,
              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
TRAIN = dict(batch_size=16, lr=2e-3, warmup=100, weight_decay=0.1, grad_clip=1.0)
BETAS = (0.9, 0.99)  # a larger beta2 than GPT-2's 0.95: few tokens per step
SAMPLING = dict(temperature=0.8, top_k=None, max_new_tokens=500)


def split(text: str) -> tuple[str, str]:
    """nanoGPT's split: the first 90% of the characters train, the last 10% validate."""
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


def train(text: str, out: Path, max_steps: int, minutes: float, resume: bool, seed: int) -> None:
    """Train from scratch (or resume) with the genzoo engine inside a wall-clock budget.

    The step count is planned once: 40 steps are timed first (they fall inside the 100-step
    warm-up, whose learning rates do not depend on the total), then the run is sized to end
    within ``minutes`` and continued from the engine's checkpoint. The plan is kept in
    ``out/plan.json`` so a resumed run keeps the same schedule."""
    import torch
    from genzoo.engine.train import finetune
    from genzoo_textlm.model import GPTModel
    from genzoo_textlm.textdata import TextWindows

    torch.manual_seed(seed)  # the initial weights (a resumed run reloads its checkpoint)
    model = GPTModel.from_config(CONFIG)
    model.train_defaults = {**model.train_defaults, "betas": BETAS}
    train_text, _ = split(text)
    data = TextWindows(torch.tensor(model.tokenizer.encode(train_text)), CONFIG["n_positions"],
                       "tinyshakespeare[:90%]")
    kw = dict(out=out, seed=seed, save_every=250, progress=False, log_every=50, **TRAIN)
    plan_path = out / "plan.json"
    t0 = time.perf_counter()
    if resume and plan_path.is_file():
        plan = json.loads(plan_path.read_text())
    else:
        probe = 40
        r = finetune(model, data, steps=max_steps, stop_after=probe, resume=resume, **kw)
        per_step = r.seconds / max(1, r.steps)
        left = minutes * 60 - (time.perf_counter() - t0)
        steps = int(max(1000, min(max_steps, left / (per_step * 1.1) + r.steps)))
        plan = {"steps": steps, "probe_s_per_step": round(per_step, 3), "minutes": minutes}
        plan_path.write_text(json.dumps(plan))
        print(f"planned {steps} steps at {per_step:.2f} s/step", flush=True)
    result = finetune(model, data, steps=plan["steps"], resume=True, **kw)
    seconds = time.perf_counter() - t0
    plan["train_seconds"] = round(plan.get("train_seconds", 0.0) + seconds, 1)  # all runs
    plan_path.write_text(json.dumps(plan))
    print(f"trained to step {result.steps} in {seconds / 60:.1f} min this run "
          f"({plan['train_seconds'] / 60:.1f} min in all); last loss "
          f"{result.metrics.get('loss', float('nan')):.4f}", flush=True)


def evaluate(text: str, out: Path) -> dict:
    """Validation nats/char of the trained folder, with fp32 weights and rounded to fp16."""
    import torch
    from genzoo_textlm.model import GPTModel

    _, val = split(text)
    model = GPTModel.from_pretrained(out, device="cpu")
    t0 = time.perf_counter()
    fp32 = model.score_text(val, batch_size=32)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    fp16 = model.score_text(val, batch_size=32)
    metrics = {"val_nats_per_char": round(fp16["nats_per_char"], 4),
               "val_nats_per_char_fp32": round(fp32["nats_per_char"], 4),
               "val_bits_per_char": round(fp16["bits_per_char"], 4),
               "val_chars": fp16["chars"], "eval_ctx": CONFIG["n_positions"],
               "eval_windows": "non-overlapping"}
    plan_path = out / "plan.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        metrics.update(train_steps=plan["steps"],
                       train_minutes_1_thread=round(plan.get("train_seconds", 0) / 60, 1))
    print(f"validation: {json.dumps(metrics)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return metrics


def bundle_weights(out: Path, metrics: dict) -> None:
    """fp16 weights + tokenizer + card into the plugin package, and the card in the plugin's
    weights/cards.yaml (files with sha256, params, size, metrics) through recipes/bundle.py."""
    from genzoo_textlm.model import GPTModel

    sys.path.insert(0, str(ROOT / "recipes"))
    from bundle import bundle_model

    model = GPTModel.from_pretrained(out, device="cpu")
    bundle_model(model, NAME, WEIGHTS_DIR, metrics, fp16=True, card={"summary": SUMMARY})


SUMMARY = ("A 1.9M-parameter GPT-2-architecture byte-level language model trained from scratch "
           "on tinyshakespeare (first 90%) by recipes/textlm_shakespeare.py.")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/work/shared/data/tinyshakespeare.txt",
                   help="path of tinyshakespeare input.txt (see the module docstring)")
    p.add_argument("--out", default=str(ROOT / "runs" / NAME), help="training folder")
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--minutes", type=float, default=40.0, help="training wall-clock budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--stage", default="all", choices=["all", "train", "eval", "bundle"])
    args = p.parse_args(argv)
    text = Path(args.data).read_text(encoding="utf-8")
    out = Path(args.out)
    if args.stage in ("all", "train"):
        train(text, out, args.max_steps, args.minutes, args.resume, args.seed)
    if args.stage in ("all", "eval", "bundle"):
        metrics = evaluate(text, out)
        (out / "val_metrics.json").write_text(json.dumps(metrics, indent=2))
        if args.stage in ("all", "bundle"):
            bundle_weights(out, metrics)


if __name__ == "__main__":
    main()
