"""Benchmark: `genzoo serve` under 32 concurrent clients, beside the same requests one at a
time and beside in-process ``sample`` at the batch size the server reaches.

A real server process (``genzoo serve --models diffusion-mnist --max-batch 64``) on a free
loopback port; n=1 PNG requests to diffusion-mnist (default sampler), each with its own seed.
Phase 1: 32 client threads for ``--seconds``; phase 2: one client for as long. The peer is
``model.sample`` in a fresh process at the largest batch the server ran (the limit batching
can reach), and at 64. Reported: throughput, p50/p99 latency, errors (503s counted apart),
the server's RSS before and after. Goals (issue 16): concurrent >= 3x one-at-a-time, >= 85%
of the in-process batched rate, p99 <= 2x one batch's time, no errors but 503s, RSS flat
(within 10%).

    python benchmarks/bench_serve.py [--quick] [--seconds 30] [--clients 32]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

MODEL = "diffusion-mnist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _post(url: str, seed: int) -> tuple[int, float]:
    """(status, seconds) of one n=1 PNG request."""
    body = json.dumps({"n": 1, "seed": seed, "format": "png"}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    except OSError:
        status = 0
    return status, time.perf_counter() - t0


def drive(url: str, clients: int, seconds: float) -> dict:
    """``clients`` threads posting back to back for ``seconds``: throughput and latencies."""
    stop = time.perf_counter() + seconds
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        seed = k * 1_000_000
        while time.perf_counter() < stop:
            got = _post(url, seed)
            seed += 1
            with lock:
                results.append(got)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ok = sorted(s for code, s in results if code == 200)
    q = statistics.quantiles(ok, n=100) if len(ok) > 1 else [float("nan")] * 99
    return {"rate": len(ok) / elapsed, "ok": len(ok), "p50": statistics.median(ok) if ok else
            float("nan"), "p99": q[98], "busy": sum(code == 503 for code, _ in results),
            "errors": sum(code not in (200, 503) for code, _ in results), "elapsed": elapsed}


_IN_PROCESS = """
import sys, time, genzoo
m = genzoo.load(sys.argv[1], device="cpu")
b = int(sys.argv[2]); m.sample(b, seed=1, batch_size=b)
t = time.perf_counter(); m.sample(2 * b, seed=2, batch_size=b)
print(2 * b / (time.perf_counter() - t))
"""


def in_process_rate(batch: int) -> float:
    """samples/s of ``model.sample`` at ``batch`` in a fresh process (after a warm-up)."""
    out = subprocess.run([sys.executable, "-c", _IN_PROCESS, MODEL, str(batch)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(seconds: float, clients: int) -> dict:
    """Run the server, both phases and the in-process peer; every figure in one dict."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "genzoo", "serve", "--port", str(port),
                               "--models", MODEL, "--max-batch", "64", "--max-queue", "256"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/models/{MODEL}/samples"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        _post(url, 0)  # loads the model
        drive(url, clients, min(5.0, seconds / 3))  # warm the batch sizes' kernels
        rss_start = _rss_mib(server.pid)
        concurrent = drive(url, clients, seconds)
        health = json.loads(urllib.request.urlopen(base + "/healthz").read())
        sequential = drive(url, 1, seconds)
        rss_end = _rss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    batch = int(health["queue"]["max_batch_seen"])
    peer = in_process_rate(batch)
    return {"concurrent": concurrent, "sequential": sequential, "batch": batch,
            "in_process": peer, "in_process_64": in_process_rate(64) if batch != 64 else peer,
            "rss_start": rss_start, "rss_end": rss_end, "clients": clients,
            "batch_seconds": batch / peer, "phase_seconds": seconds}


def rows(quick: bool = False) -> list[dict]:
    """benchmarks/run.py's rows (``quick``: 15 s phases, about 2 minutes in all)."""
    r = measure(15.0 if quick else 40.0, 32)
    c, s = r["concurrent"], r["sequential"]
    name = f"serve {MODEL}, n=1 requests, {r['clients']} clients"
    return [
        {"benchmark": f"{name} vs one at a time", "genzoo": c["rate"], "peer": s["rate"],
         "peer_name": "sequential requests", "unit": "samples/s",
         "ratio": c["rate"] / s["rate"], "goal": ">= 3.0", "ok": c["rate"] >= 3 * s["rate"]},
        {"benchmark": f"{name} vs in-process sample at batch {r['batch']}",
         "genzoo": c["rate"], "peer": r["in_process"], "peer_name": f"model.sample batch "
         f"{r['batch']} (at 64: {r['in_process_64']:.1f}/s)", "unit": "samples/s",
         "ratio": c["rate"] / r["in_process"], "goal": ">= 0.85",
         "ok": c["rate"] >= 0.85 * r["in_process"]},
        {"benchmark": f"{name}: p99 latency (p50 {c['p50']:.2f} s)", "genzoo": c["p99"],
         "peer": r["batch_seconds"], "peer_name": f"one batch of {r['batch']}", "unit": "s",
         "ratio": c["p99"] / r["batch_seconds"], "goal": "<= 2.0",
         "ok": c["p99"] <= 2 * r["batch_seconds"]},
        {"benchmark": f"{name}: errors (503s: {c['busy']})", "genzoo": float(c["errors"]),
         "peer": None, "peer_name": "", "unit": "errors", "ratio": None, "goal": "0",
         "ok": c["errors"] == 0 and s["errors"] == 0},
        {"benchmark": "serve: server RSS after the run (start "
                      f"{r['rss_start']:.0f} MiB)", "genzoo": r["rss_end"],
         "peer": r["rss_start"], "peer_name": "at start", "unit": "MiB",
         "ratio": r["rss_end"] / r["rss_start"], "goal": "<= 1.1",
         "ok": r["rss_end"] <= 1.1 * r["rss_start"]},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="15 s phases")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--out", help="also append the figures, with the machine, to this JSON file")
    args = ap.parse_args()
    load_before = os.getloadavg()
    r = measure(args.seconds or (15.0 if args.quick else 40.0), args.clients)
    r["machine"] = machine(load_before)
    print(json.dumps(r, indent=2))
    if args.out:
        runs = json.loads(open(args.out).read()) if os.path.isfile(args.out) else []
        with open(args.out, "w") as f:
            f.write(json.dumps(runs + [r], indent=2) + "\n")


def machine(load_before: tuple[float, ...]) -> dict:
    """Where and when: the CPU model (as lscpu names it), cores, date and the load average
    before and after (other jobs on the machine slow every phase, not alike)."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
