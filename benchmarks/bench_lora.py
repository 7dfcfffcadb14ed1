"""LoRA finetuning beside full finetuning of the same 86M-parameter GPT-shaped model.

The model is the GPT-2-small-shaped byte-level GPT of bench_load.py (12 x 768, context 1024,
86M parameters), saved once as a folder. Each side is a fresh process (peak RSS is the
process's own VmHWM, see peak_rss.py) that loads the folder with genzoo.load and runs the one
engine on the same text, batch and seed: ``full`` trains every weight (AdamW state for all
86M), ``lora`` a rank-8 peft adapter on every attention and MLP projection (the family's
default targets). Step time is the median of the steps after the first two, in CPU seconds
of the process (``time.process_time``: what a step costs, steady on a shared machine) and
in wall seconds. Peak RSS is given whole and above what each side has imported before it
trains (``lora_imports.py``: torch alone is about 510 MiB; peft brings transformers, about
270 MiB more). The adapter's size is its adapter_model.safetensors beside the base's
model.safetensors.

    python benchmarks/bench_lora.py [--quick]
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GPT_86M = dict(vocab_size=256, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
BATCH, CTX, RANK = 4, 128, 8


def _side(kind: str, folder: str, steps: int, result_path: str) -> None:
    """One side, in its own process: load, finetune ``steps`` steps, write its figures."""
    import time

    import genzoo
    from genzoo.engine.train import Trainer
    from genzoo_textlm.textdata import TextWindows
    import torch
    cpu: list[float] = []
    step = Trainer.train_step

    def timed(self, i):  # CPU seconds of each step: steadier than wall time on a shared machine
        t0 = time.process_time()
        out = step(self, i)
        cpu.append(time.process_time() - t0)
        return out
    Trainer.train_step = timed
    model = genzoo.load(folder, device="cpu", dtype="fp32")
    ids = torch.randint(0, 256, (BATCH * CTX * 64,), generator=torch.Generator().manual_seed(0))
    data = TextWindows(ids, CTX, "random bytes")
    extra = {"lora": {"rank": RANK}} if kind == "lora" else {}
    result = genzoo.finetune(model, data, steps=steps, batch_size=BATCH, lr=1e-4, log_every=1,
                             progress=False, **extra)
    step_s = [BATCH / row["samples_per_s"] for row in result.history][2:]
    figures = {"step_s": statistics.median(step_s), "step_cpu_s": statistics.median(cpu[2:]),
               "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if kind == "lora":
        from genzoo.engine.lora import save_adapter
        with tempfile.TemporaryDirectory() as d:
            save_adapter(model, Path(d) / "adapter")
            figures["adapter_bytes"] = (Path(d) / "adapter" / "adapter_model.safetensors").stat().st_size
    Path(result_path).write_text(json.dumps(figures))


def rows(quick: bool = False) -> list[dict]:
    """Peak RSS, step time and adapter size of LoRA against full finetuning."""
    import torch
    from genzoo_textlm.model import GPTModel
    sys.path.insert(0, str(HERE))
    from peak_rss import peak_rss_mib
    steps, rounds = (6, 1) if quick else (8, 2)
    got: dict[str, list[dict]] = {"full": [], "lora": []}
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "gpt86m"
        torch.manual_seed(0)
        GPTModel.from_config(GPT_86M).save_pretrained(folder)
        base_bytes = (folder / "model.safetensors").stat().st_size
        for _ in range(rounds):  # alternate the sides so drifting load hits both alike
            for kind in ("full", "lora"):
                out = Path(d) / f"{kind}.json"
                rss = peak_rss_mib([__file__, "--side", kind, str(folder), str(steps), str(out)])
                got[kind].append({**json.loads(out.read_text()), "rss": rss})
        imports = {kind: peak_rss_mib([str(HERE / "lora_imports.py"), kind])
                   for kind in ("full", "lora")}
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("rss", "step_s", "step_cpu_s")}
           for k, v in got.items()}
    adapter = got["lora"][0]["adapter_bytes"]
    label = f"86M GPT (12x768), batch {BATCH}x{CTX} bytes, LoRA rank {RANK} vs full finetuning"
    rss_ratio = med["lora"]["rss"] / med["full"]["rss"]
    train = {k: med[k]["rss"] - imports[k] for k in med}
    train_ratio = train["lora"] / train["full"]
    step_ratio = med["lora"]["step_cpu_s"] / med["full"]["step_cpu_s"]
    wall_ratio = med["lora"]["step_s"] / med["full"]["step_s"]
    return [
        {"benchmark": f"peak RSS, whole process, {label}", "genzoo": med["lora"]["rss"],
         "peer": med["full"]["rss"], "unit": "MiB", "peer_name": "full finetuning",
         "ratio": rss_ratio, "goal": "<= 0.6", "ok": rss_ratio <= 0.6},
        {"benchmark": f"peak RSS above the imports (torch {imports['full']:.0f} MiB, "
                      f"+ peft {imports['lora'] - imports['full']:.0f} MiB), {label}",
         "genzoo": train["lora"], "peer": train["full"], "unit": "MiB",
         "peer_name": "full finetuning", "ratio": train_ratio, "goal": "<= 0.6",
         "ok": train_ratio <= 0.6},
        {"benchmark": f"step time (CPU seconds), {label}", "genzoo": med["lora"]["step_cpu_s"],
         "peer": med["full"]["step_cpu_s"], "unit": "s", "peer_name": "full finetuning",
         "ratio": step_ratio, "goal": "<= 0.8", "ok": step_ratio <= 0.8},
        {"benchmark": f"step time (wall, shared machine), {label}",
         "genzoo": med["lora"]["step_s"], "peer": med["full"]["step_s"], "unit": "s",
         "peer_name": "full finetuning", "ratio": wall_ratio, "goal": "<= 0.8",
         "ok": wall_ratio <= 0.8},
        {"benchmark": f"adapter size, rank {RANK} ({got['lora'][0]['trainable']:,} params)",
         "genzoo": adapter / 2**20, "peer": base_bytes / 2**20, "unit": "MiB",
         "peer_name": "the base's model.safetensors", "ratio": adapter / base_bytes,
         "goal": "<= 0.02", "ok": adapter / base_bytes <= 0.02},
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--side"]:
        _side(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        from run import standalone
        standalone(rows, __doc__)
