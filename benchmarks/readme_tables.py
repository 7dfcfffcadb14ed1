"""README's model tables, generated from the JSON the measurements wrote — never typed.

    python benchmarks/readme_tables.py           # rewrite the generated blocks in README.md
    python benchmarks/readme_tables.py --check   # exit 1 if README differs from the JSON

Sources: benchmarks/results.json (``benchmarks/run.py``: speed and memory beside peers),
benchmarks/eval_results.json (``benchmarks/eval_table.py``: image models against the
real-data floor), benchmarks/label_results.json (``benchmarks/eval_labels.py``: class
labels, guidance and image-to-image), benchmarks/text2image_results.json
(``benchmarks/bench_text2image.py``: text-to-image beside diffusers' StableDiffusionPipeline),
benchmarks/chat_serve_results.json (``benchmarks/bench_chat_serve.py``: chats served together),
and benchmarks/card_eval_*.json (``benchmarks/card_metrics.py``: what
each card records). tests/test_readme_tables.py fails when README and the JSON disagree.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN = "<!-- generated: {name} (benchmarks/readme_tables.py) -->"
END = "<!-- end generated: {name} -->"


def _load(name: str) -> dict:
    path = HERE / name
    return json.loads(path.read_text()) if path.is_file() else {}


def _num(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def image_table() -> str:
    """One row per eval_results.json row: FD, KID (raw), precision/recall, class spread, speed."""
    data = _load("eval_results.json")
    meta, results = data.get("meta", {}), data.get("results", {})
    lines = ["| model / sampler | n | FD | KID | precision | recall | class entropy (max 2.303) "
             "| max share | s per 1,000 samples |", "|---|---|---|---|---|---|---|---|---|"]
    for row_id, r in results.items():
        spk = _num(1000 / r["samples_per_s"], ".1f") if r.get("samples_per_s") else "-"
        share = f"{100 * r['class_max_share']:.1f}%" if "class_max_share" in r else "-"
        lines.append(f"| {row_id} | {r['n']} | {_num(r.get('fd'), '.2f')} | "
                     f"{_num(r.get('kid'), '.2f')} | {_num(r.get('precision'), '.3f')} | "
                     f"{_num(r.get('recall'), '.3f')} | {_num(r.get('class_entropy'), '.3f')} | "
                     f"{share} | {spk} |")
    where = meta.get("cpu") or meta.get("machine", "?")
    lines.append("")
    lines.append(f"Measured {meta.get('date', '?')} on {where}, {meta.get('threads', '?')} "
                 f"thread(s), torch {meta.get('torch', '?')}.")
    return "\n".join(lines)


def label_table() -> str:
    """Class-conditional rows (label accuracy, FD overall and per class, cost) and the
    image-to-image rows (label kept, pixel change) of benchmarks/label_results.json."""
    data = _load("label_results.json")
    meta, results = data.get("meta", {}), data.get("results", {})
    lines = ["| model, guidance | n | label accuracy | FD | FD per class (mean) | "
             "s per 1,000 samples |", "|---|---|---|---|---|---|"]
    steered = {k: r for k, r in results.items() if "strength" in r}
    for row_id, r in results.items():
        if row_id not in steered:
            lines.append(f"| {row_id} | {r['n']} | {100 * r['label_accuracy']:.1f}% | "
                         f"{r['fd']:.2f} | {r['fd_per_class_mean']:.2f} | {r['s_per_1k']:.1f} |")
    if steered:
        lines += ["", "| image-to-image | n | label kept | mean pixel change | "
                  "s per 1,000 samples |", "|---|---|---|---|---|"]
        for row_id, r in steered.items():
            lines.append(f"| {row_id} | {r['n']} | {100 * r['label_kept']:.1f}% | "
                         f"{r['change']:.3f} | {r['s_per_1k']:.1f} |")
    lines.append("")
    lines.append(f"Measured {meta.get('date', '?')} on {meta.get('cpu', '?')}, "
                 f"{meta.get('threads', '?')} thread(s), torch {meta.get('torch', '?')}.")
    return "\n".join(lines)


def card_table() -> str:
    """What each bundled model's card records (``genzoo eval --write-card``)."""
    lines = ["| model | measured | figures | on |", "|---|---|---|---|"]
    for path in sorted(HERE.glob("card_eval_*.json")):
        r = json.loads(path.read_text())
        keys = [k for k in ("fd", "kid", "precision", "recall", "label_accuracy", "neg_elbo",
                            "iw_nll", "nats_per_char", "bits_per_char", "distinct_2") if k in r]
        figures = ", ".join(f"{k} {r[k]:.4g}" for k in keys)
        what = f"n={r['n']} against {r.get('reference') or r.get('data')}"
        lines.append(f"| {r['model']} | {what} | {figures} | {r.get('measured_on', '?')} |")
    return "\n".join(lines)


def lora_recipe_table() -> str:
    """recipes/textlm_domain.py's comparison (benchmarks/lora_domain.json)."""
    data = _load("lora_domain.json")
    lines = ["| run | held-out Python docs, nats/char | held-out Shakespeare, nats/char | "
             "trainable parameters | saved | steps | minutes |", "|---|---|---|---|---|---|---|"]
    base = data.get("base", {})
    lines.append(f"| textlm-shakespeare, not adapted | {_num(base.get('pydoc_heldout'), '.3f')} "
                 f"| {_num(base.get('shakespeare_heldout'), '.3f')} | - | - | - | - |")
    for key, label in (("full", "full finetuning"), ("lora", "LoRA rank 8")):
        r = data.get(key, {})
        if r:
            lines.append(f"| {label} | {r['pydoc_heldout']:.3f} | {r['shakespeare_heldout']:.3f} "
                         f"| {r['trainable']:,} | {r['saved_bytes'] / 1e6:.2f} MB | {r['steps']} "
                         f"| {r['train_seconds'] / 60:.1f} |")
    lines.append("")
    lines.append(f"Measured on {data.get('cpu', '?')}, {data.get('threads', '?')} thread, on a "
                 "machine shared with other jobs: the minutes do not compare the two methods.")
    return "\n".join(lines)


def performance_table() -> str:
    """benchmarks/run.py's rows (results.json) as run.py prints them, with the machine."""
    sys.path.insert(0, str(HERE))
    from run import markdown
    data = _load("results.json")
    meta = data.get("meta", {})
    where = meta.get("cpu") or meta.get("machine", "?")
    mode = "--quick" if meta.get("quick") else "full"
    return (f"{markdown(data.get('rows', []))}\n\nMeasured {meta.get('date', '?')} ({mode} run) "
            f"on {where}, {meta.get('threads', '?')} threads, torch {meta.get('torch', '?')}.")


def _split(r: dict) -> str:
    """genzoo/diffusers seconds per call in the text encoder, UNet, VAE decoder and the rest."""
    g, d = r["genzoo"]["split_s"], r["diffusers"]["split_s"]
    return ", ".join(f"{g.get(k, 0.0):.2f}/{d.get(k, 0.0):.2f}"
                     for k in ("text_encoder", "unet", "vae_decoder", "rest"))


def _speed_table(configs: dict, what: str, output, diff: str, rate) -> list[str]:
    """Rows of each pipeline's speed at each batch beside diffusers': ``output(config)``
    fills the ``what`` column, ``rate(side)`` each side's figure."""
    lines = [f"| pipeline | {what} | batch | genzoo | diffusers | genzoo/diffusers | {diff} | "
             "seconds per call, genzoo/diffusers: text encoder, UNet, VAE decoder, rest | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, c in configs.items():
        for n, r in c["batches"].items():
            ok = r["ratio"] >= 1.0 and r["max_abs_diff"] <= 1e-4
            lines.append(f"| {name} | {output(c)} | {n} | {rate(r['genzoo'])} | "
                         f"{rate(r['diffusers'])} | {r['ratio']:.2f}x | {r['max_abs_diff']:.1e} "
                         f"| {_split(r)} | {'yes' if ok else 'NO'} |")
    return lines


def _rss_table(configs: dict, parts: dict[str, str]) -> list[str]:
    """Rows of each pipeline's peak RSS beside diffusers', with its networks' sizes."""
    lines = [f"| pipeline | parameters ({', '.join(parts.values())}) | batch | genzoo peak RSS | "
             "diffusers peak RSS | genzoo/diffusers | met |", "|---|---|---|---|---|---|---|"]
    for name, c in configs.items():
        m, p = c["rss"], c["parameters"]
        params = ", ".join(f"{p[k] / 1e6:.2f}M" for k in parts)
        lines.append(f"| {name} | {params} | {m['batch']} | {m['genzoo_mib']:.1f} MiB | "
                     f"{m['diffusers_mib']:.1f} MiB | {m['ratio']:.2f}x | "
                     f"{'yes' if m['ratio'] <= 1.0 else 'NO'} |")
    return lines


def text2image_table() -> str:
    """benchmarks/bench_text2image.py's figures (text2image_results.json): speed, images
    and peak RSS beside diffusers' StableDiffusionPipeline, the lever experiments if run."""
    data = _load("text2image_results.json")
    meta, configs = data.get("meta", {}), data.get("configs", {})
    lines = _speed_table(configs, "output", lambda c: c["output"], "max abs image diff",
                         lambda v: f"{v['images_per_s']:.3g} images/s ({v['s_per_image']:.2f} "
                                   "s/image)")
    lines += ["", *_rss_table(configs, {"unet": "UNet", "text_encoder": "text encoder",
                                        "vae": "VAE"})]
    steps = sorted({c["steps"] for c in configs.values()})
    rounds = sorted({c["rounds"] for c in configs.values()})
    mode = "--quick" if meta.get("quick") else "full"
    lines += ["", f"Goal: {meta.get('goal', '?')}. DPM-Solver++ {'/'.join(map(str, steps))} "
              f"steps, guidance {meta.get('guidance', '?')}, medians of "
              f"{'/'.join(map(str, rounds))} alternating rounds after a warm-up. Measured "
              f"{meta.get('date', '?')} ({mode} run) on {meta.get('lscpu_model', '?')}, "
              f"{meta.get('cpus', '?')} cores (lever flags: "
              f"{', '.join(meta.get('cpu_flags') or []) or 'none'}), "
              f"{meta.get('threads', '?')} thread(s), torch "
              f"{meta.get('torch', '?')}, diffusers {meta.get('diffusers', '?')}: "
              f"`{meta.get('command', '?')}`."]
    prof = data.get("profile")
    if prof:
        lines += ["", "| lever, sd15-shaped batch 1 | s/image | diffusers' time / this | "
                  "max abs image diff vs diffusers |", "|---|---|---|---|"]
        for name, v in prof["variants"].items():
            if "compile_s" in v:
                name += f" (first call {v['compile_s']:.0f} s: compiling; less with inductor's cache warm)"
            lines.append(f"| {name} | {v['s_per_image']:.2f} | {v['vs_diffusers']:.2f}x | "
                         f"{v['max_abs_diff']:.1e} |")
        loop = prof.get("loop_overhead", {})
        pm = prof.get("meta", {})
        per_step = ", ".join(f"{side} {v['loop_ms_per_step']:.2f} ms"
                             for side, v in loop.items())
        vae = prof.get("vae_decode_bf16")
        if vae:
            lines += ["", f"One VAE decode of a {vae['latent']}x{vae['latent']} latent: "
                      f"{vae['fp32_s']:.2f} s in fp32, {vae['bf16_s']:.1f} s under bf16 autocast."]
        ops = prof.get("top_ops", [])[:3]
        if ops:
            lines += ["", "Top operators (torch.profiler, genzoo fp32): " + ", ".join(
                f"{o['op']} {100 * o['share']:.0f}%" for o in ops) + "."]
        lines += ["", f"Loop cost per step outside the networks: {per_step or '-'}. DPM-Solver++ "
                  f"{prof.get('steps', '?')} steps, medians of {prof.get('rounds', '?')} "
                  f"alternating rounds; measured {pm.get('date', '?')} on "
                  f"{pm.get('lscpu_model', '?')}, {pm.get('threads', '?')} thread(s): "
                  f"`{pm.get('command', '?')}`."]
    return "\n".join(lines)


def audioldm_table() -> str:
    """benchmarks/bench_audioldm.py's figures (audioldm_results.json): waveforms per second
    and peak RSS beside diffusers' AudioLDMPipeline on the same folder."""
    data = _load("audioldm_results.json")
    meta, configs = data.get("meta", {}), data.get("configs", {})
    lines = _speed_table(configs, "audio", lambda c: f"{c['audio_s']:g} s", "max abs diff",
                         lambda v: f"{v['waveforms_per_s']:.3g}/s")
    lines += ["", *_rss_table(configs, {"unet": "UNet", "text_encoder": "text encoder",
                                        "vae": "VAE", "vocoder": "vocoder"})]
    mode = "--quick" if meta.get("quick") else "full"
    lines += ["", f"Goal: {meta.get('goal', '?')}. {meta.get('sampler', '?').upper()} "
              f"{'/'.join(sorted({str(c['steps']) for c in configs.values()}))} steps, guidance "
              f"{meta.get('guidance', '?')}, medians of alternating rounds after a warm-up. "
              f"Measured {meta.get('date', '?')} ({mode} run) on {meta.get('lscpu_model', '?')}, "
              f"{meta.get('cpus', '?')} cores, {meta.get('threads', '?')} thread(s), torch "
              f"{meta.get('torch', '?')}, diffusers {meta.get('diffusers', '?')}: "
              f"`{meta.get('command', '?')}`."]
    return "\n".join(lines)


def chat_serve_table() -> str:
    """benchmarks/bench_chat_serve.py's table (chat_serve_results.json): continuous batching
    of streamed chats in ``genzoo serve``, one stream beside transformers' ``generate``."""
    data = _load("chat_serve_results.json")
    if not data:
        return "(not measured yet: run benchmarks/bench_chat_serve.py --json ...)"
    return (data["table"].strip() + f"\n\nMeasured {data.get('date', '?')}: "
            f"`{data.get('command', '?')}`.")


TABLES = {"image models": image_table, "labels": label_table, "cards": card_table,
          "performance": performance_table, "lora recipe": lora_recipe_table,
          "text2image": text2image_table, "audioldm": audioldm_table,
          "chat serve": chat_serve_table}


def render(readme: str) -> str:
    """``readme`` with each generated block replaced by its table from the JSON."""
    for name, make in TABLES.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(readme):
            continue
        readme = pattern.sub(lambda _m: f"{begin}\n{make()}\n{end}", readme)
    return readme


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    fresh = render(text)
    if "--check" in argv:
        if fresh != text:
            print("README's generated tables differ from the JSON; run "
                  "python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
