"""Benchmark: two ``genzoo serve`` replicas behind deploy/'s HAProxy and nginx on loopback.

1. Overhead: ``--rounds`` small requests (diffusion-mnist, n=1, DDIM 4 steps, PNG) one at a
   time, straight to a replica and through each balancer in turn: median and p90 latency,
   and the median added by the balancer; the same for 5x as many GET /healthz (no model
   work: the proxy hop alone).
2. Failover, per balancer: ``--requests`` such requests from 8 clients, one replica SIGKILLed
   once a few have come back (while it holds work): errors (goal 0), how many were retried
   (the balancer's log), the median latency of retried against not retried requests, and how
   long after the kill HAProxy's health checks marked the replica DOWN.

The replicas run ``--exact`` with ``OMP_NUM_THREADS=1``. Uses the tests' helpers
(tests/_serve.py, tests/_balancers.py: the shipped configs, ports swapped).

    OMP_NUM_THREADS=1 python benchmarks/bench_replicas.py [--rounds 40] [--requests 48]
        [--out benchmarks/replicas_results.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _balancers import HAPROXY, NGINX, HAProxy, Nginx, fire, median  # noqa: E402
from _serve import Server, request  # noqa: E402

DIGITS = "/v1/models/diffusion-mnist/samples"
ARGS = ("--exact", "--models", "diffusion-mnist")
KINDS = {"haproxy": HAProxy, "nginx": Nginx}


def digit(seed: int) -> dict:
    return {"n": 1, "seed": seed, "options": {"steps": 4}, "format": "png"}


def warm(tmp: Path) -> Server:
    """A replica with its model loaded."""
    srv = Server(tmp, *ARGS)
    assert request(srv.url + DIGITS, digit(0))[0] == 200
    return srv


def p90(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def overhead(urls: dict[str, str], rounds: int, sample: bool = True) -> dict:
    """Sequential latency per route (interleaved, so drifting load hits each alike) of a small
    sample request, or (``sample=False``) of GET /healthz: the proxy's own cost, little else."""
    times: dict[str, list[float]] = {name: [] for name in urls}
    for i in range(rounds):
        for name, url in urls.items():
            t0 = time.perf_counter()
            if sample:
                status, _, _ = request(url + DIGITS, digit(1000 + i))
            else:
                status, _, _ = request(url + "/healthz")
            assert status == 200, (name, status)
            times[name].append(time.perf_counter() - t0)
    out = {name: {"median_s": round(median(t), 4), "p90_s": round(p90(t), 4)}
           for name, t in times.items()}
    for name in urls:
        out[name]["added_ms"] = round(1000 * (median(times[name]) - median(times["direct"])), 2)
    return out


def until(predicate: Callable[[], bool], what: str, seconds: float = 15) -> float:
    """Seconds until ``predicate()`` holds (polled every 20 ms); an error past ``seconds``."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < seconds, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - t0


def failover(tmp: Path, kind: str, survivor: Server, requests: int) -> dict:
    """A fresh victim and ``survivor`` behind ``kind``; the victim SIGKILLed mid-load."""
    victim = warm(tmp)
    balancer = KINDS[kind](tmp, [victim.port, survivor.port])
    haproxy = isinstance(balancer, HAProxy)
    status = (lambda name: balancer.stats()[name]["status"]) if haproxy else None
    try:
        if status:
            until(lambda: status("replica1") == status("replica2") == "UP", "replicas UP")
        going = threading.Event()
        down_s: list[float | None] = [None]

        def kill() -> None:
            going.wait(60)
            until(lambda: victim.health()["queue"]["queued"] >= 1, "the victim busy")
            victim.proc.send_signal(signal.SIGKILL)
            if status:  # measured while the load goes on
                down_s[0] = round(until(lambda: status("replica1").startswith("DOWN"),
                                        "replica1 DOWN"), 2)

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        t0 = time.perf_counter()
        replies = fire(balancer.url + DIGITS, [digit(s) for s in range(requests)], 8,
                       lambda k: going.set() if k >= 6 else None)
        wall = time.perf_counter() - t0
        killer.join(timeout=30)
        with contextlib.suppress(AssertionError):  # log lines are written as requests end
            until(lambda: len(balancer.tries()) >= requests, "the log", 5)
        tries = balancer.tries()
        retried = [s for t, s in tries if t > 1]
        plain = [s for t, s in tries if t == 1]
        return {"requests": requests, "errors": sum(r[0] != 200 for r in replies),
                "retried": len(retried), "median_s": round(median(plain), 4),
                "median_retried_s": round(median(retried), 4),
                "retry_added_s": round(median(retried) - median(plain), 4),
                "marked_down_after_s": down_s[0], "samples_per_s": round(requests / wall, 2)}
    finally:
        balancer.stop()
        victim.stop()


def machine() -> dict:
    """The CPU model (as lscpu names it), cores, date and the load average (bench_serve's)."""
    from bench_serve import machine as serve_machine
    return serve_machine(os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--out", help="also write the figures, with the machine, to this JSON file")
    a = ap.parse_args()
    kinds = [k for k, binary in (("haproxy", HAPROXY), ("nginx", NGINX)) if binary]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        survivor, other = warm(tmp), warm(tmp)
        balancers = []
        for k in kinds:
            (tmp / k).mkdir()
            balancers.append(KINDS[k](tmp / k, [other.port, survivor.port]))
        try:
            urls = {"direct": survivor.url, **{b.name: b.url for b in balancers}}
            r: dict[str, Any] = {"overhead_sample": overhead(urls, a.rounds),
                                 "overhead_healthz": overhead(urls, 5 * a.rounds, False)}
        finally:
            for b in balancers:
                b.stop()
            other.stop()
        try:
            for k in kinds:
                (tmp / f"fail-{k}").mkdir()
                r[f"failover_{k}"] = failover(tmp / f"fail-{k}", k, survivor, a.requests)
        finally:
            survivor.stop()
    r["machine"] = machine()
    r["command"] = "OMP_NUM_THREADS=1 python benchmarks/bench_replicas.py " + " ".join(
        sys.argv[1:])
    print(json.dumps(r, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
