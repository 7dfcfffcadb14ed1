"""How fast is `genzoo list`? Wall time against `python -c "import torch"`, and peak memory.

`genzoo list` must never import torch, so it should cost a fraction of a torch import (goal:
ratio <= 0.25). Each command runs N times as a fresh process, alternating so that machine noise
hits both alike; medians are reported, with the peak RSS of `genzoo list` (its own
VmHWM, see peak_rss.py).

    python benchmarks/bench_list.py [-n 11] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys


def measure(n: int) -> dict:
    """Medians of ``n`` alternating fresh-process runs of each command, and the peak RSS."""
    exe = shutil.which("genzoo")
    genzoo = [exe, "list"] if exe else [sys.executable, "-m", "genzoo", "list"]
    torch = [sys.executable, "-c", "import torch"]
    from peak_rss import peak_rss_mib
    from run import wall_seconds
    wall_seconds(genzoo), wall_seconds(torch)  # warm the page cache; not counted
    times: dict[str, list[float]] = {"genzoo list": [], "import torch": []}
    for _ in range(n):
        times["genzoo list"].append(wall_seconds(genzoo))
        times["import torch"].append(wall_seconds(torch))
    rss = max(peak_rss_mib(["-m", "genzoo", "list"]) for _ in range(3))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"runs": n, "genzoo_list_s": round(med["genzoo list"], 3),
            "import_torch_s": round(med["import torch"], 3),
            "ratio": round(med["genzoo list"] / med["import torch"], 3),
            "genzoo_list_peak_rss_mb": round(rss, 1)}


def rows(quick: bool = False) -> list[dict]:
    """benchmarks/run.py's rows: wall time against import torch, and peak RSS."""
    r = measure(5 if quick else 11)
    return [{"benchmark": "genzoo list (fresh process)", "genzoo": r["genzoo_list_s"],
             "peer": r["import_torch_s"], "peer_name": "python -c 'import torch'", "unit": "s",
             "ratio": r["ratio"], "goal": "<= 0.25", "ok": r["ratio"] <= 0.25},
            {"benchmark": "genzoo list peak RSS", "genzoo": r["genzoo_list_peak_rss_mb"],
             "peer": None, "peer_name": "", "unit": "MiB", "ratio": None, "goal": "report",
             "ok": True}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=11, help="runs of each command (default 11)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    result = measure(args.n)
    if args.json:
        print(json.dumps(result))
        return
    print(f"median of {args.n} runs (fresh processes)")
    print(f"  genzoo list      {result['genzoo_list_s']:.3f} s   peak RSS "
          f"{result['genzoo_list_peak_rss_mb']:.1f} MiB")
    print(f"  import torch     {result['import_torch_s']:.3f} s")
    verdict = "ok" if result["ratio"] <= 0.25 else "over the 0.25 goal"
    print(f"  ratio            {result['ratio']:.3f}  ({verdict})")


if __name__ == "__main__":
    main()
