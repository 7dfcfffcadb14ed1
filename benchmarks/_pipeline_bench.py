"""The harness that bench_text2image.py and bench_audioldm.py share: genzoo beside a diffusers
pipeline loaded from the same folder.

Both time the two sides in alternating rounds (medians), split each call by network with
forward hooks, measure each side's peak RSS in fresh processes, and write the same kind of
results JSON (meta, configs, rows); only the pipeline, its sampler and its unit differ.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
SIDES = ("genzoo", "diffusers")


def tests_path() -> None:
    """Put plugins/diffusion/tests on sys.path: the tiny pipelines' builders live there."""
    tests = str(HERE.parent / "plugins" / "diffusion" / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def parameters(folder: Path, parts: tuple[str, ...]) -> dict[str, int]:
    """Parameter count per network of a saved pipeline (from the safetensors headers)."""
    out = {}
    for part in parts:
        total = 0
        for f in (folder / part).glob("*.safetensors"):
            with open(f, "rb") as fh:
                header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
            total += sum(math.prod(v["shape"]) for k, v in header.items()
                         if k != "__metadata__")
        out[part] = total
    return out


class Split:
    """Seconds spent in each named network's forward (``name=module``; None is skipped),
    summed over the calls between ``take``s."""

    def __init__(self, **modules) -> None:
        self.seconds: dict[str, float] = {}
        self._t0: dict[str, float] = {}
        for name, module in modules.items():
            if module is None:
                continue
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _pre(self, name: str) -> Callable:
        def hook(*_):
            self._t0[name] = time.perf_counter()
        return hook

    def _post(self, name: str) -> Callable:
        def hook(*_):
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - self._t0[name]
        return hook

    def take(self, total: float) -> dict[str, float]:
        """The seconds per network since the last take, plus ``rest`` (``total`` less them)."""
        out = {**self.seconds, "rest": total - sum(self.seconds.values())}
        self.seconds = {}
        return out


def timed(fn: Callable, split: Split) -> tuple[float, dict[str, float], object]:
    """(seconds, split by network, result) of one call of ``fn``."""
    split.take(0.0)
    t0 = time.perf_counter()
    made = fn()
    seconds = time.perf_counter() - t0
    return seconds, split.take(seconds), made


def side_by_side(runs: dict[str, Callable], splits: dict[str, Split], n: int, rounds: int,
                 steps: int) -> tuple[dict, dict, dict, float]:
    """Both sides at batch ``n``: a warm-up call each (oneDNN primitives and allocator pools
    are made per shape), then ``rounds`` rounds alternating genzoo, diffusers, then diffusers,
    genzoo, ... so that load from other jobs on the machine hits both alike.
    ``runs[side](n, steps)`` draws a batch. Returns (seconds per side, splits per side,
    the last round's outputs per side, the largest difference between the two)."""
    for side in SIDES:
        runs[side](n, min(2, steps))
    secs: dict[str, list[float]] = {side: [] for side in SIDES}
    parts: dict[str, list[dict]] = {side: [] for side in SIDES}
    diff, made = 0.0, {}
    for r in range(rounds):
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            s, split, made[side] = timed(lambda: runs[side](n, steps), splits[side])
            secs[side].append(s)
            parts[side].append(split)
            print(f"  batch {n} round {r + 1}: {side} {s:.2f} s", file=sys.stderr, flush=True)
        assert made["genzoo"].shape == made["diffusers"].shape, \
            (made["genzoo"].shape, made["diffusers"].shape)
        diff = max(diff, float((made["genzoo"] - made["diffusers"]).abs().max()))
    return secs, parts, made, diff


def speed_row(n: int, secs: dict, parts: dict, diff: float, unit: str, extra: dict) -> dict:
    """One batch's results: ``{unit}s_per_s`` and ``s_per_{unit}`` per side from the median
    call, the median split, and genzoo's ratio over diffusers; ``extra`` after the seconds."""
    row = {"max_abs_diff": diff, "seconds": secs, **extra}
    for side in SIDES:
        med = statistics.median(secs[side])
        row[side] = {f"{unit}s_per_s": n / med, f"s_per_{unit}": med / n,
                     "split_s": {k: statistics.median(p[k] for p in parts[side])
                                 for k in parts[side][0]}}
    row["ratio"] = row["genzoo"][f"{unit}s_per_s"] / row["diffusers"][f"{unit}s_per_s"]
    return row


def rss_pair(script: Path, args: list[str], runs: int) -> dict[str, list[float]]:
    """Peak RSS (MiB) of ``script genzoo|diffusers ARGS`` in fresh processes, ``runs`` each,
    alternating (the high-water mark moves by a few % from run to run)."""
    sys.path.insert(0, str(HERE))
    from peak_rss import peak_rss_mib
    out: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(runs):
        for side in SIDES:
            out[side].append(peak_rss_mib([str(script), side, *args]))
    return out


def rows_of(configs: dict, task: str, describe: Callable[[dict], tuple[str, str]],
            unit: str, peer: str, max_diff: float) -> list[dict]:
    """The results as benchmarks/run.py's rows: one per config and batch, one per config's
    peak RSS. ``describe(config)`` gives its output's size and its sampler's words."""
    rows = []
    for name, c in configs.items():
        size, sampler = describe(c)
        for n, r in c["batches"].items():
            rows.append({"benchmark": f"{task} {name} {size}, batch {n} ({sampler})",
                         "genzoo": r["genzoo"][f"{unit}s_per_s"],
                         "peer": r["diffusers"][f"{unit}s_per_s"],
                         "peer_name": f"diffusers {peer} (fp32)",
                         "unit": f"{unit}s/s", "ratio": r["ratio"], "goal": ">= 1.0 (aim 1.3)",
                         "ok": r["ratio"] >= 1.0 and r["max_abs_diff"] <= max_diff,
                         "max_abs_diff": r["max_abs_diff"], "config": name, "batch": int(n)})
        m = c["rss"]
        rows.append({"benchmark": f"peak RSS, {task} {name}, batch {m['batch']} "
                                  "(fresh process)",
                     "genzoo": m["genzoo_mib"], "peer": m["diffusers_mib"],
                     "peer_name": f"diffusers {peer}", "unit": "MiB",
                     "ratio": m["ratio"], "goal": "<= 1.0", "ok": m["ratio"] <= 1.0,
                     "config": name, "batch": m["batch"]})
    return rows


def lscpu_model() -> str:
    """lscpu's "Model name" ("?" where lscpu is missing or says none)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return next((l.split(":", 1)[1].strip() for l in text.splitlines()
                 if l.startswith("Model name")), "?")


def meta(script: str, argv: list[str], **fields) -> dict:
    """The results' "meta": when, on what machine, which libraries, the command that made
    them (``script`` with ``argv``), then ``fields`` (prompt, sampler, goal...)."""
    import diffusers
    import transformers
    sys.path.insert(0, str(HERE))
    from run import machine_meta
    threads = os.environ["OMP_NUM_THREADS"]
    return {"date": time.strftime("%Y-%m-%d %H:%M"), **machine_meta(),
            "lscpu_model": lscpu_model(), "omp_num_threads": threads,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "command": " ".join([f"OMP_NUM_THREADS={threads}", "python", script,
                                 *map(shlex.quote, argv)]), **fields}


def report(data: dict, out: Path, max_diff: float, noun: str) -> int:
    """Write ``data`` to ``out``, print its rows' table and the machine; 1 (and a line each)
    where genzoo's and diffusers' ``noun`` differ by more than ``max_diff``."""
    sys.path.insert(0, str(HERE))
    from run import markdown
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(markdown(data["rows"]))
    m = data["meta"]
    print(f"\n{m['lscpu_model']}, {m['threads']} threads, {m['seconds']:.0f} s")
    bad = [r for r in data["rows"] if r.get("max_abs_diff", 0.0) > max_diff]
    for r in bad:
        print(f"{noun} differ by {r['max_abs_diff']:.2e} > {max_diff:g}: {r['benchmark']}")
    return 1 if bad else 0
