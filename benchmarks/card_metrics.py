"""Measure every bundled model with `genzoo eval --write-card`: the only source of the metrics
in the first-party cards (and so of their README model-index).

    python benchmarks/card_metrics.py                      # all bundled models
    python benchmarks/card_metrics.py vae-mnist gan-mnist  # some of them

Image models are scored against ``mnist:ref`` with their defaults (1,000 samples); the text
model against the last 10% of tinyshakespeare, written to runs/shakespeare_val.txt. Each
result is also kept as benchmarks/card_eval_NAME.json. Then ``recipes/refresh_cards.py``
rewrites the bundled README.md files from the cards.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
MODELS = ("diffusion-mnist", "vae-mnist", "gan-mnist", "textlm-shakespeare")


def shakespeare_val() -> Path:
    """The held-out text: the last 10% of tinyshakespeare (the recipe trains on the rest)."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    path = ROOT / "runs" / "shakespeare_val.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[int(len(text) * 0.9):], encoding="utf-8")
    return path


def main(names: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for name in names or MODELS:
        args = ["genzoo", "eval", name, "--write-card", "--json",
                "-o", str(ROOT / "benchmarks" / f"card_eval_{name}.json")]
        if name.startswith("textlm"):
            args += ["--data", os.path.relpath(shakespeare_val(), ROOT)]
        print("$", " ".join(args), flush=True)
        subprocess.run(args, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main(sys.argv[1:])
