"""Sampling and evaluation on 2 ranks against 1 process (issue 24).

(a) the main job, ``genzoo sample diffusion-mnist -n 256 --batch-size 64`` (4 batches), as one
    process with one thread against ``torchrun --nproc-per-node 2`` with one thread per rank:
    samples/s (n over the sampling part's seconds, ``sample_seconds`` of the command's JSON:
    sampling, exchanging and writing, after the imports and the model load), the whole
    command's wall time, and whether the two .npz files are identical
    (sha256). Runs alternate (1, 2, 2, 1, 1, 2 ...) so that machine noise hits both alike;
    medians of ``--repeats`` (3) are reported; the goal is >= 1.8x samples/s on 2 cores.
(b) evaluation, ``genzoo eval diffusion-mnist -n 1000 --json``, the same way (once each):
    every figure but the timings must be equal; the wall-time ratio is reported (it includes
    each process's torch import and model load) beside the sampling part's samples/s.

Each part fits a few minutes on a 2-core machine; ``--part sample|eval`` runs one of them and
``--json PATH`` keeps the other part's results already in PATH. ``--quick``: n=128 and n=100,
one repeat, a smoke test of the harness. The sampling options of (b) (``--eval-steps``,
``--no-label-accuracy``) let the evaluation fit the time there is; the JSON records them.

    python benchmarks/bench_distributed.py [--quick] [--part sample|eval|all] [--json PATH]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "diffusion-mnist"
#: Figures that are timings or where they were measured: allowed to differ between runs.
TIMINGS = {"samples_per_s", "sample_seconds"}


def _env() -> dict[str, str]:
    """One thread per process (per rank under torchrun), as the issue measures."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(world: int, args: list[str]) -> list[str]:
    """``genzoo ARGS`` as one process, or under torchrun with ``world`` ranks."""
    if world == 1:
        return [sys.executable, "-m", "genzoo", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(world), "-m", "genzoo", *args]


def _run(world: int, args: list[str], timeout: float = 900) -> tuple[dict[str, Any], float]:
    """Run ``genzoo ARGS --json`` on ``world`` ranks: its JSON (plus ``cpu_s``, the CPU
    seconds of every process it started, torchrun's agent included) and the wall seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(_command(world, [*args, "--json"]), capture_output=True, text=True,
                          env=_env(), timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(_command(world, args))} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(done.stdout), "cpu_s": cpu}, wall


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bench_sample(n: int, batch: int, repeats: int, world: int = 2) -> dict[str, Any]:
    """(a): samples/s and wall seconds of 1 process and of ``world`` ranks, alternating."""
    runs: dict[int, list[tuple[float, float, float]]] = {1: [], world: []}
    digests: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for w in ((1, world) if rep % 2 == 0 else (world, 1)):
                out = Path(tmp) / f"w{w}-{rep}.npz"
                summary, wall = _run(w, ["sample", MODEL, "-n", str(n), "--batch-size",
                                         str(batch), "-o", str(out)])
                runs[w].append((n / summary["sample_seconds"], wall, summary["cpu_s"]))
                digests.add(_sha256(out))
                print(f"  sample n={n} world={w}: {n / summary['sample_seconds']:.2f} "
                      f"samples/s, {wall:.1f} s wall", file=sys.stderr)
    one = statistics.median(r[0] for r in runs[1])
    many = statistics.median(r[0] for r in runs[world])
    return {"command": f"genzoo sample {MODEL} -n {n} --batch-size {batch}", "n": n,
            "batch_size": batch, "world": world, "repeats": repeats,
            "one_samples_per_s": one, "ranks_samples_per_s": many, "ratio": many / one,
            "one_wall_s": statistics.median(r[1] for r in runs[1]),
            "ranks_wall_s": statistics.median(r[1] for r in runs[world]),
            # CPU seconds of the whole command: equal ones mean sharding costs no extra work,
            # and the speed-up is bounded only by the cores others leave free
            "one_cpu_s": statistics.median(r[2] for r in runs[1]),
            "ranks_cpu_s": statistics.median(r[2] for r in runs[world]),
            "identical_output": len(digests) == 1, "goal": ">= 1.8", "ok": many / one >= 1.8}


def bench_eval(n: int, steps: int | None, labels: bool, world: int = 2) -> dict[str, Any]:
    """(b): one evaluation as 1 process and on ``world`` ranks: figures equal, time ratio."""
    args = ["eval", MODEL, "-n", str(n)] + (["--steps", str(steps)] if steps else []) + \
        ([] if labels else ["--no-label-accuracy"])
    one, one_wall = _run(1, args)
    many, many_wall = _run(world, args)
    figures = sorted(k for k in one if k not in TIMINGS | {"cpu_s"})
    differ = [k for k in figures if one.get(k) != many.get(k)]
    print(f"  eval n={n}: {one_wall:.1f} s wall alone, {many_wall:.1f} s on {world} ranks",
          file=sys.stderr)
    return {"command": f"genzoo {' '.join(args)} --json", "n": n, "world": world,
            "one_wall_s": one_wall, "ranks_wall_s": many_wall, "ratio": one_wall / many_wall,
            "one_cpu_s": one["cpu_s"], "ranks_cpu_s": many["cpu_s"],
            "one_samples_per_s": one["samples_per_s"],
            "ranks_samples_per_s": many["samples_per_s"],
            "figures_equal": not differ, "differing": differ,
            "figures": {k: one[k] for k in ("fd", "kid", "precision", "recall",
                                            "label_accuracy") if k in one}}


def machine() -> str:
    """The CPU as ``lscpu`` names it, with the core count."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        name = ""
    return f"{name or 'unknown CPU'}, {os.cpu_count()} cores"


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table."""
    lines = ["| job | 1 process | 2 ranks | ratio | equal |", "|---|---|---|---|---|"]
    s = results.get("sample")
    if s:
        lines.append(f"| `{s['command']}` | {s['one_samples_per_s']:.2f} samples/s | "
                     f"{s['ranks_samples_per_s']:.2f} samples/s | {s['ratio']:.2f}x (goal "
                     f"{s['goal']}) | {'yes' if s['identical_output'] else 'NO'} |")
    e = results.get("eval")
    if e:
        lines.append(f"| `{e['command']}` | {e['one_wall_s']:.1f} s | {e['ranks_wall_s']:.1f} s "
                     f"| {e['ratio']:.2f}x | {'yes' if e['figures_equal'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the parts asked for, print the table, write ``--json``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n=128 / n=100, one repeat")
    p.add_argument("--part", choices=("sample", "eval", "all"), default="all")
    p.add_argument("--repeats", type=int, default=None, help="sampling runs each (default 3)")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="--steps for the evaluation (default: the model's)")
    p.add_argument("--no-label-accuracy", action="store_true",
                   help="skip the evaluation's labelled second draw")
    p.add_argument("--json", type=Path, default=None, help="write (merge) results here")
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    if args.json and args.json.is_file():
        results = json.loads(args.json.read_text())
    load_before = os.getloadavg()[0]  # others' work skews a 2-core measurement: record it
    if args.part in ("sample", "all"):
        results["sample"] = bench_sample(128 if args.quick else 256, 64,
                                         args.repeats or (1 if args.quick else 3))
    if args.part in ("eval", "all"):
        results["eval"] = bench_eval(100 if args.quick else 1000, args.eval_steps,
                                     not args.no_label_accuracy)
    for part in ("sample", "eval"):
        if args.part in (part, "all"):
            results[part]["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    results.update(machine=machine(), threads_per_process=1,
                   measured=time.strftime("%Y-%m-%d"))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
