"""FSDP2 against DDP: finetuning the 86M-parameter GPT on 2 gloo ranks, peak RSS per rank and
step time.

The model is bench_lora.py's GPT-2-small-shaped byte-level GPT (12 x 768, context 1024, 86M
parameters, the house GPT of plugins/textlm), saved once as a folder. Each side is one
``torchrun --nproc-per-node 2`` job (every rank ``OMP_NUM_THREADS=1``) that loads the folder
with ``genzoo.load`` and runs ``genzoo.finetune`` on the same random bytes, batch and seed, with
``strategy="ddp"`` or ``"fsdp"`` and no ``out`` (training only: no checkpoint, no final
gather). Each rank reports its own peak RSS (``VmHWM``: its address space began at torchrun's
``execve``), its RSS after the imports and the load (the floor both sides share: torch and the
full 86M weights every rank reads from the folder before it is sharded) and the median wall
time of the steps after the first two. The table's figures are the worse rank's.

Three sides: DDP, DDP with FSDP's allocator setting (``MALLOC_MMAP_THRESHOLD_``, see
``SIDES``) and FSDP; FSDP is compared with both.

    python benchmarks/bench_fsdp.py [--steps 5] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GPT_86M = dict(vocab_size=256, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
BATCH, CTX = 4, 128


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def _rank(strategy: str, folder: str, steps: int, out_dir: str) -> None:
    """One rank of one side (run by torchrun): load, finetune, write this rank's figures."""
    import torch

    import genzoo
    from genzoo_textlm.textdata import TextWindows
    model = genzoo.load(folder, device="cpu", dtype="fp32")
    ids = torch.randint(0, 256, (BATCH * CTX * 64,), generator=torch.Generator().manual_seed(0))
    data = TextWindows(ids, CTX, "random bytes")
    loaded = _kib("VmRSS")
    result = genzoo.finetune(model, data, steps=steps, batch_size=BATCH, lr=1e-4, log_every=1,
                             progress=False, strategy=strategy)
    world = int(os.environ["WORLD_SIZE"])
    step_s = [BATCH * world / row["samples_per_s"] for row in result.history][2:]
    figures = {"peak_mib": _kib("VmHWM") / 1024, "loaded_mib": loaded / 1024,
               "step_s": statistics.median(step_s), "loss": result.metrics["loss"]}
    Path(out_dir, f"{strategy}-{os.environ['RANK']}.json").write_text(json.dumps(figures))


#: The sides: (name, strategy, extra environment). "ddp, mmap" runs DDP with the allocator
#: setting the fsdp strategy makes itself (glibc's mmap threshold fixed at 1 MiB, see
#: genzoo.engine.fsdp.return_freed_buffers), so that the comparison is also shown without it.
SIDES = (("ddp", "ddp", {}), ("ddp, mmap", "ddp", {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}),
         ("fsdp", "fsdp", {}))


def _side(name: str, strategy: str, extra: dict, folder: Path, steps: int,
          out_dir: Path) -> list[dict]:
    """One torchrun job of 2 ranks; each rank's figures."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    run_dir = out_dir / name.replace(", ", "-")
    run_dir.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", __file__, "--rank-of", strategy, str(folder), str(steps), str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{name} side failed: {done.stderr[-3000:]}")
    return [json.loads((run_dir / f"{strategy}-{r}.json").read_text()) for r in range(2)]


def rows(quick: bool = False, steps: int = 5) -> list[dict]:
    """Peak RSS per rank and step time of FSDP against DDP (the worse rank of each)."""
    import torch
    from genzoo_textlm.model import GPTModel
    got: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "gpt86m"
        torch.manual_seed(0)
        GPTModel.from_config(GPT_86M).save_pretrained(folder)
        for name, strategy, extra in SIDES:
            got[name] = _side(name, strategy, extra, folder, 4 if quick else steps, Path(d))
    worst = {s: {k: max(r[k] for r in ranks) for k in ("peak_mib", "loaded_mib", "step_s")}
             for s, ranks in got.items()}
    label = f"86M GPT (12x768), 2 gloo ranks x 1 thread, batch {BATCH}x{CTX} bytes per rank"
    f = worst["fsdp"]
    out = []
    for peer in ("ddp", "ddp, mmap"):
        p = worst[peer]
        above_f, above_p = f["peak_mib"] - f["loaded_mib"], p["peak_mib"] - p["loaded_mib"]
        for what, g, q in (("whole process", f["peak_mib"], p["peak_mib"]),
                           (f"above imports + loaded weights ({p['loaded_mib']:.0f} MiB)",
                            above_f, above_p)):
            out.append({"benchmark": f"peak RSS per rank, {what}, {label}", "genzoo": g,
                        "peer": q, "unit": "MiB", "peer_name": peer.upper(), "ratio": g / q,
                        "goal": "<= 0.6", "ok": g / q <= 0.6})
    out.append({"benchmark": f"step time (wall, median), {label}", "genzoo": f["step_s"],
                "peer": worst["ddp"]["step_s"], "unit": "s", "peer_name": "DDP",
                "ratio": f["step_s"] / worst["ddp"]["step_s"], "goal": "report", "ok": True})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per side (>= 3)")
    ap.add_argument("--quick", action="store_true", help="4 steps per side")
    ap.add_argument("--json", help="write the rows and the machine to this file")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from run import machine_meta, markdown
    t0 = time.perf_counter()
    got = rows(args.quick, args.steps)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), **machine_meta(),
            "seconds": round(time.perf_counter() - t0), "steps": 4 if args.quick else args.steps}
    print(markdown(got))
    print(f"machine: {meta['cpu']}; {meta['seconds']} s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": got}, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank-of"]:
        _rank(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
