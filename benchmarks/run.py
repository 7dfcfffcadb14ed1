"""Run every benchmark beside its peer and print one table of medians and ratios.

Each ``bench_*.py`` module here exposes ``rows(quick) -> list[dict]`` (benchmark, genzoo,
peer, peer_name, unit, ratio, goal, ok). This script runs them one after another (never two
at once: the machine has 2 cores), prints a markdown table and writes benchmarks/results.json.

    python benchmarks/run.py            # full (about 15 minutes on the 2-core CPU)
    python benchmarks/run.py --quick    # under 5 minutes
    python benchmarks/run.py --only list,engine
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["list", "load", "engine", "sampling", "textgen", "serve", "lora"]


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("samples/s", "tokens/s"):
        return f"{v:.1f} {unit}"
    if unit == "s" or unit == "s/step":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.1f} {unit}"


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    out = ["| benchmark | genzoo | peer | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if isinstance(r.get("ratio"), (int, float)) else "-"
        peer = f"{_fmt(r.get('peer'), r['unit'])} ({r['peer_name']})" if r.get("peer_name") else "-"
        out.append(f"| {r['benchmark']} | {_fmt(r['genzoo'], r['unit'])} | {peer} | {ratio} | "
                   f"{r['goal']} | {'yes' if r['ok'] else 'NO'} |")
    return "\n".join(out)


#: The CPU flags that decide which levers can pay (oneDNN's bf16/fp16/int8 paths, AVX levels).
LEVER_FLAGS = ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16",
               "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "amx_int8")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The ``LEVER_FLAGS`` this CPU has, read from /proc/cpuinfo (or the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return []
    line = next((l for l in cpuinfo.splitlines() if l.startswith(("flags", "Features"))), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in LEVER_FLAGS if f in have]


def machine_meta() -> dict:
    """Where the figures come from: the CPU model and core count (as README tables print
    it), its lever flags, torch's CPU capability and thread count; the GPU's name if any."""
    import torch
    from genzoo.devices import describe_machine
    meta = {"cpu": describe_machine("cpu"), "cpu_flags": cpu_flags(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        meta["gpu"] = describe_machine("cuda")
    return meta


def machine_line(meta: dict) -> str:
    """One line naming the machine the table's figures were measured on."""
    flags = ", ".join(meta.get("cpu_flags") or []) or "none"
    gpu = f"; GPU {meta['gpu']}" if meta.get("gpu") else ""
    return (f"Measured on {meta.get('cpu', '?')} (lever flags: {flags}; torch CPU capability "
            f"{meta.get('cpu_capability', '?')}), {meta.get('threads', '?')} threads, torch "
            f"{meta.get('torch', '?')}{gpu}.")


def lever_decisions() -> list[dict]:
    """What genzoo.levers measured on this CPU, torch and thread count (during this run or
    before it): one dict per decision with its key and the seconds per run of each
    alternative."""
    from genzoo import levers
    try:
        entries = json.loads(levers.cache_path().read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    import torch
    here = [levers.cpu_model(), torch.__version__, torch.get_num_threads()]
    return [{"key": e["key"], "seconds": e["seconds"], "measured": e.get("measured")}
            for k, e in entries.items() if json.loads(k)[:3] == here and isinstance(e, dict)]


def lever_lines(decisions: list[dict]) -> list[str]:
    """The decisions as lines: which alternative won and by how much."""
    lines = []
    for d in decisions:
        (a, ta), (b, tb) = sorted(d["seconds"].items(), key=lambda kv: kv[1])
        lines.append(f"- lever {d['key']}: {a} {ta * 1000:.1f} ms, {b} {tb * 1000:.1f} ms "
                     f"per run ({a} {tb / ta:.2f}x faster)")
    return lines


def wall_seconds(cmd: list[str]) -> float:
    """Wall seconds of ``cmd`` run as a fresh process; a failure aborts the benchmark with the
    end of its stderr. (Peak memory comes from peak_rss.py: wait4's would include ours.)"""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed (exit {proc.returncode}): "
                         f"{proc.stderr.decode()[-2000:]}")
    return seconds


def standalone(rows_of, doc: str) -> None:
    """The ``__main__`` of a ``bench_*.py`` module: its rows as JSON lines (``--quick`` too)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    for row in rows_of(ap.parse_args().quick):
        print(json.dumps(row))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (under 5 minutes)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--update", action="store_true",
                    help="keep --out's rows of the benchmarks not run (with --only)")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    wanted = args.only.split(",") if args.only else ORDER
    rows, errors = [], {}
    for name in wanted:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench_{name}")
            got = module.rows(args.quick)
        except Exception as e:  # one failing benchmark must not hide the others' figures
            errors[name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            continue
        rows += [{**r, "suite": name} for r in got]
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), **machine_meta(), "quick": args.quick,
            "levers": lever_decisions()}
    if args.update and Path(args.out).is_file():  # re-run some suites, keep the others' rows
        old = json.loads(Path(args.out).read_text())
        kept = [r for r in old.get("rows", []) if r.get("suite") not in wanted]
        order = {name: i for i, name in enumerate(ORDER)}
        rows = sorted(kept + rows, key=lambda r: order.get(r.get("suite", ""), len(ORDER)))
        meta["updated_suites"] = wanted
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows, "errors": errors},
                                         indent=2) + "\n")
    print(markdown(rows))
    print("\n".join(["", machine_line(meta), *lever_lines(meta["levers"])]))
    for name, err in errors.items():
        print(f"\n{name} failed: {err}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
