"""Benchmark: continuous batching of chats in `genzoo serve` — 8 concurrent streamed chats
against the same 8 one after another, and one stream against transformers' ``generate``.

A real server process (``genzoo serve --allow-folders``, one OpenMP thread unless
``OMP_NUM_THREADS`` says otherwise) on a free loopback port serves two Qwen2 chat models built
on the fly with random weights (no download): the tiny chat model of the textlm tests
(2 layers, hidden 32) and a mid-size one (6 layers, hidden 384, about 10M parameters), both
with the tests' locally trained ChatML tokenizer. Each chat is ``POST /v1/chat/completions``
with ``stream: true``, greedy, ``max_tokens`` 64, a different user message per chat, chosen
among ``TOPICS`` so that transformers' greedy reply runs the full 64 tokens (the tiny model
ends some replies after a few tokens by design; such chats would time prefills, not decoding).
Each model runs ``--runs`` rounds of (8 concurrent, the same 8 one after another,
transformers on the same 8); ratios are medians over the rounds of neighbours in time.

Reported per model: throughput (completion tokens/s over the wall time of the phase) of the
8 concurrent chats and of the same 8 one after another, and their ratio (goal >= 3x); time to
first token p50/p99 in both phases; the server's RSS before and after (goal: flat, within
10%); and the tokens/s of one stream (the sequential phase) against transformers'
``generate`` on the same model and the same chats in this process, greedy, as many new
tokens as the server gave each chat (goal >= 1.0x). A markdown table is printed with the
CPU's model name (as lscpu gives it).

    OMP_NUM_THREADS=1 python benchmarks/bench_chat_serve.py [--chats 8] [--tokens 64]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_serve import _free_port, _rss_mib  # the serve benchmark's port and RSS probes

ROOT = Path(__file__).resolve().parents[1]
MID = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
           num_key_value_heads=2)
#: How the server is started (the options follow).
SERVE = [sys.executable, "-m", "genzoo", "serve"]
TOPICS = ["lists", "loops", "classes", "the with statement", "exceptions", "generators",
          "decorators", "modules", "strings", "dictionaries", "sets", "lambda", "tuples",
          "imports", "functions", "the while statement", "numbers", "files", "iterators",
          "slicing", "assignment", "comparisons", "scopes", "the for statement", "bytes",
          "the if statement", "methods", "objects", "types", "booleans", "operators",
          "expressions", "names", "packages", "attributes", "the return statement",
          "the try statement", "the import system", "formatted strings", "sequences"]


def build_models(tmp: Path) -> dict[str, Path]:
    """The tiny chat model and the mid-size one (same tokenizer and template), as folders."""
    sys.path.insert(0, str(ROOT / "plugins/textlm/tests"))
    import torch
    import transformers
    from _tiny_chat import build_tiny_chat, tiny_chat_tokenizer
    from genzoo_textlm.transformers_format import HFTokenizer, TransformersCausalLM
    tiny = build_tiny_chat(tmp / "tiny-chat")
    tok = tiny_chat_tokenizer()
    ends = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    cfg = transformers.Qwen2Config(vocab_size=len(tok), max_position_embeddings=512,
                                   tie_word_embeddings=False, bos_token_id=None,
                                   eos_token_id=ends, pad_token_id=ends[1], **MID)
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    hf.generation_config = transformers.GenerationConfig(eos_token_id=ends, pad_token_id=ends[1])
    config = json.loads(cfg.to_json_string(use_diff=False))
    TransformersCausalLM(config, hf, HFTokenizer(tok)).save_pretrained(tmp / "mid-chat")
    return {"tiny chat (Qwen2 2x32)": tiny, "mid chat (Qwen2 6x384, ~10M)": tmp / "mid-chat"}


def conversation(topic: str) -> list[dict[str, str]]:
    """A one-message chat about ``topic``."""
    return [{"role": "user", "content": f"Tell me about {topic}, please."}]


def chat(port: int, model: str, k: int, tokens: int, convs: list) -> dict:
    """One streamed chat: time to first content, total time, completion tokens (the usage
    chunk's count; the re-encoded reply's length if the server gave none)."""
    body = json.dumps({"model": model, "messages": convs[k], "max_tokens": tokens,
                       "temperature": 0, "seed": k, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"chat {k}: HTTP {resp.status}: {resp.read()[:300]!r}")
    first, usage, text = None, None, ""
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if "error" in event:
            raise RuntimeError(f"chat {k}: {event['error']}")
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                first = first or time.perf_counter() - t0
                text += piece
        usage = event.get("usage") or usage
    conn.close()
    count = int((usage or {}).get("completion_tokens") or 0) or len(_tokenizer(model)(text))
    return {"ttft": first or float("nan"), "seconds": time.perf_counter() - t0,
            "tokens": count, "text": text}


_TOKENIZERS: dict[str, object] = {}


def _tokenizer(folder: str):
    """A function counting tokens with the model's tokenizer (loaded once)."""
    if folder not in _TOKENIZERS:
        import transformers
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        _TOKENIZERS[folder] = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    return _TOKENIZERS[folder]


def phase(port: int, model: str, convs: list, tokens: int, concurrent: bool) -> dict:
    """The chats ``convs``, all at once or one after another: throughput and TTFT
    quantiles."""
    chats = len(convs)
    out: list[dict] = [{}] * chats

    def run(k: int) -> None:
        out[k] = chat(port, model, k, tokens, convs)

    t0 = time.perf_counter()
    if concurrent:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(chats)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for k in range(chats):
            run(k)
    wall = time.perf_counter() - t0
    if any(not r for r in out):
        raise RuntimeError("a chat failed (see above)")
    ttft = sorted(r["ttft"] for r in out)
    return {"rate": sum(r["tokens"] for r in out) / wall, "wall": wall,
            "ttft_p50": statistics.median(ttft), "ttft_p99": _p99(ttft), "chats": out,
            "stream_rate": sum(r["tokens"] for r in out) / sum(r["seconds"] for r in out)}


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98] if len(xs) > 1 else xs[0]


class Transformers:
    """transformers' greedy ``generate`` on the same folder, loaded once and warmed up."""

    def __init__(self, folder: Path):
        import torch
        import transformers
        self.torch = torch
        self.tok = transformers.AutoTokenizer.from_pretrained(folder)
        self.hf = transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32).eval()
        self.generate(conversation(TOPICS[0]), 8)

    def generate(self, conv: list, n: int, exact: bool = True) -> tuple[int, float]:
        """(new tokens, seconds) of one greedy generation of ``n`` tokens (``exact``: held
        to ``n`` by ``min_new_tokens``; else it may end on an end id)."""
        enc = self.tok.apply_chat_template(conv, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
        t0 = time.perf_counter()
        with self.torch.inference_mode():
            out = self.hf.generate(**enc, do_sample=False, max_new_tokens=n,
                                   min_new_tokens=n if exact else None)
        return out.shape[1] - enc["input_ids"].shape[1], time.perf_counter() - t0

    def rate(self, convs: list, chats: list[dict]) -> float:
        """Tokens/s over the chats (all their tokens over all their time), each held to as
        many new tokens as the server gave it."""
        runs = [self.generate(c, max(1, r["tokens"])) for c, r in zip(convs, chats)]
        return sum(t for t, _ in runs) / sum(s for _, s in runs)

    def full_length(self, chats: int, tokens: int) -> list:
        """``chats`` conversations whose greedy replies run the whole ``tokens`` (a random
        model may end a reply after a few tokens: that would time prefills, not decoding);
        others fill up the list if too few do."""
        long = [t for t in TOPICS if self.generate(conversation(t), tokens, False)[0] >= tokens]
        return [conversation(t) for t in (long + [t for t in TOPICS if t not in long])[:chats]]


def serve(folders: list[Path], max_batch: int) -> tuple[subprocess.Popen, int]:
    """A `genzoo serve` process allowed to serve local folders, once it answers /healthz."""
    port = _free_port()
    server = subprocess.Popen([*SERVE, "--port", str(port),
                               "--allow-folders", "--max-batch", str(max_batch),
                               "--max-tokens", "1024", "--device", "cpu"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return server, port
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"genzoo serve exited: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.2)
    raise RuntimeError("genzoo serve did not start")


def measure(chats: int = 8, tokens: int = 64, only: str = "", runs: int = 3) -> list[dict]:
    """Every figure, one dict per model (those whose description contains ``only``): ``runs``
    rounds of (concurrent phase, sequential phase, transformers on the same chats), so that
    the ratios compare neighbours in time on a machine whose load moves."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {k: v for k, v in build_models(Path(tmp)).items() if only in k}
        server, port = serve(list(models.values()), max_batch=chats)
        try:
            for what, folder in models.items():
                name = str(folder.resolve())
                peer = Transformers(folder)
                convs = peer.full_length(chats, tokens)
                phase(port, name, convs, tokens, concurrent=True)  # loads, warms up
                rss_start = _rss_mib(server.pid)
                rounds = []
                for _ in range(runs):
                    together = phase(port, name, convs, tokens, concurrent=True)
                    alone = phase(port, name, convs, tokens, concurrent=False)
                    rounds.append({"concurrent": together, "sequential": alone,
                                   "transformers": peer.rate(convs, alone["chats"])})
                rss_end = _rss_mib(server.pid)
                health = json.loads(urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz").read())
                results.append(summary(what, rounds, rss_start, rss_end, health))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    return results


def summary(what: str, rounds: list[dict], rss_start: float, rss_end: float,
            health: dict) -> dict:
    """One model's figures: medians over the rounds, TTFT quantiles over every chat."""
    def med(f) -> float:
        return statistics.median(f(r) for r in rounds)
    ttft = {ph: sorted(c["ttft"] for r in rounds for c in r[ph]["chats"])
            for ph in ("concurrent", "sequential")}
    return {
        "model": what, "rounds": len(rounds),
        "rate": {ph: med(lambda r: r[ph]["rate"]) for ph in ("concurrent", "sequential")},
        "ratio": med(lambda r: r["concurrent"]["rate"] / r["sequential"]["rate"]),
        "ttft": {ph: (statistics.median(xs), _p99(xs)) for ph, xs in ttft.items()},
        "stream": med(lambda r: r["sequential"]["stream_rate"]),
        "transformers": med(lambda r: r["transformers"]),
        "stream_ratio": med(lambda r: r["sequential"]["stream_rate"] / r["transformers"]),
        "same_replies": all([c["text"] for c in r["concurrent"]["chats"]] ==
                            [c["text"] for c in r["sequential"]["chats"]] for r in rounds),
        "tokens": [c["tokens"] for c in rounds[0]["sequential"]["chats"]],
        "rss_start": rss_start, "rss_end": rss_end, "queue": health.get("queue")}


def table(results: list[dict], chats: int, tokens: int) -> str:
    """The markdown table (one block of rows per model) with the machine."""
    lines = [f"{chats} streamed chats of up to {tokens} tokens (greedy) on `genzoo serve`, "
             f"{_cpu()}, {os.environ.get('OMP_NUM_THREADS', 'default')} OpenMP thread(s), "
             f"medians of {results[0]['rounds'] if results else 0} rounds", "",
             "| model | measure | genzoo | peer | ratio | goal |", "|---|---|---|---|---|---|"]
    for r in results:
        m, (c50, c99), (s50, s99) = r["model"], r["ttft"]["concurrent"], r["ttft"]["sequential"]
        lines += [
            f"| {m} | throughput, tokens/s: {chats} concurrent vs one after another "
            f"| {r['rate']['concurrent']:.0f} | {r['rate']['sequential']:.0f} "
            f"| {r['ratio']:.2f}x | >= 3x |",
            f"| {m} | time to first token p50 / p99, s: concurrent vs one after another "
            f"| {c50:.3f} / {c99:.3f} | {s50:.3f} / {s99:.3f} | | |",
            f"| {m} | one stream, tokens/s vs transformers generate | {r['stream']:.0f} "
            f"| {r['transformers']:.0f} | {r['stream_ratio']:.2f}x | >= 1.0x |",
            f"| {m} | server RSS after vs before, MiB | {r['rss_end']:.0f} "
            f"| {r['rss_start']:.0f} | {r['rss_end'] / r['rss_start']:.2f}x | <= 1.1x |",
            f"| {m} | concurrent replies equal the one-at-a-time ones | "
            f"{'yes' if r['same_replies'] else 'NO'} | | | yes |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chats", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--only", default="", help="only the models whose description has this "
                   "text (tiny, mid)")
    p.add_argument("--runs", type=int, default=3, help="rounds (medians are reported)")
    p.add_argument("--json", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the server inherits it
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    results = measure(args.chats, args.tokens, args.only, args.runs)
    text = table(results, args.chats, args.tokens)
    print(text)
    if args.json:  # README's table (benchmarks/readme_tables.py) is read from this file
        command = "OMP_NUM_THREADS=%s python benchmarks/bench_chat_serve.py %s" % (
            os.environ["OMP_NUM_THREADS"], " ".join(sys.argv[1:] if argv is None else argv))
        Path(args.json).write_text(json.dumps(
            {"table": text, "results": results, "command": command,
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
            indent=2, default=str) + "\n")


def _cpu() -> str:
    """The CPU's model name, as lscpu prints it (``/proc/cpuinfo`` when lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
