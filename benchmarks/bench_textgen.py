"""Benchmark: text generation speed of genzoo's native GPT vs transformers' ``generate``.

Both load the same GPT-2-layout folder (default: a random 6-layer, 384-wide GPT-2 with a
512-token context and a 256-token vocabulary; ``--model shakespeare``: the bundled
textlm-shakespeare weights; or any GPT-2 folder) and generate ``--tokens`` new tokens (capped
at the context left after the prompt, as transformers cannot go past it) by sampling
(temperature 1, no top-k) from a short prompt, fp32 on the CPU. Each side runs once to warm up, then ``--runs`` times, alternating; the
medians (tokens/s, counting generated tokens per sample times the batch) and their ratio are
printed. Goal: genzoo >= 1.0x transformers.

    OMP_NUM_THREADS=1 python benchmarks/bench_textgen.py [--model shakespeare|FOLDER] [--batch 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "plugins/textlm/genzoo_textlm/weights/textlm-shakespeare"
RANDOM = dict(vocab_size=256, n_positions=512, n_embd=384, n_layer=6, n_head=6,
              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
PROMPT = "ROMEO:\n"


def model_folder(arg: str | None, tmp: Path) -> tuple[Path, str]:
    """The folder to benchmark and a description of it."""
    if arg == "shakespeare":
        return BUNDLED, "textlm-shakespeare (bundled)"
    if arg:
        return Path(arg), arg
    import torch
    from genzoo_textlm.model import GPTModel
    torch.manual_seed(0)
    GPTModel.from_config(RANDOM).save_pretrained(tmp / "random")
    return tmp / "random", f"random GPT-2 {json.dumps(RANDOM)}"


def rows(quick: bool = False) -> list[dict]:
    """benchmarks/run.py's row: tokens/s against transformers' generate, same weights."""
    r = measure(model=None, tokens=256, batch=1, runs=3 if quick else 5)
    return [{"benchmark": "text generation, 256 tokens (random GPT-2, 6x384)", "genzoo": r["genzoo"],
             "peer": r["transformers"], "peer_name": "transformers generate", "unit": "tokens/s",
             "ratio": r["genzoo"] / r["transformers"], "goal": ">= 1.0",
             "ok": r["genzoo"] >= r["transformers"]}]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a GPT-2-layout folder (default: see the docstring)")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    r = measure(args.model, args.tokens, args.batch, args.runs)
    print(f"model: {r['what']}; {args.tokens} new tokens, batch {args.batch}, "
          f"{r['threads']} thread(s), {args.runs} runs")
    print(f"genzoo       {r['genzoo']:8.1f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in r['g'])})")
    print(f"transformers {r['transformers']:8.1f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in r['h'])})")
    print(f"ratio genzoo/transformers: {r['genzoo'] / r['transformers']:.2f}x")


def measure(model, tokens, batch, runs) -> dict:
    """Median tokens/s of genzoo and transformers on the same folder, alternating runs."""
    from types import SimpleNamespace
    args = SimpleNamespace(model=model, tokens=tokens, batch=batch, runs=runs)

    import torch
    import genzoo
    with tempfile.TemporaryDirectory() as tmp:
        folder, what = model_folder(args.model, Path(tmp))
        ours = genzoo.load(str(folder), device="cpu", dtype="fp32")
        t0 = time.perf_counter()
        from transformers import AutoTokenizer, GPT2LMHeadModel
        theirs = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(folder)
        print(f"transformers import + load: {time.perf_counter() - t0:.1f} s")

    ids = torch.tensor([tok(PROMPT)["input_ids"]] * args.batch)
    args.tokens = min(args.tokens, ours.max_context - ids.shape[1])

    def run_genzoo() -> float:
        t = time.perf_counter()
        out = ours.sample(args.batch, seed=0, prompt=PROMPT, max_new_tokens=args.tokens,
                          temperature=1.0, batch_size=args.batch)
        dt = time.perf_counter() - t
        assert len(out) == args.batch
        return args.batch * args.tokens / dt

    def run_transformers() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            out = theirs.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                  top_k=0, max_new_tokens=args.tokens,
                                  min_new_tokens=args.tokens, pad_token_id=0)
        dt = time.perf_counter() - t
        return args.batch * (out.shape[1] - ids.shape[1]) / dt

    run_genzoo(), run_transformers()  # warm-up
    g, h = [], []
    for _ in range(args.runs):
        g.append(run_genzoo())
        h.append(run_transformers())
    return {"what": what, "genzoo": statistics.median(g), "transformers": statistics.median(h),
            "g": g, "h": h, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    main()
