"""HAProxy and nginx in front of ``genzoo serve`` replicas, for tests/test_replicas.py and
benchmarks/bench_replicas.py: each runs the shipped config from deploy/ (its ports swapped for
free ones) in the foreground on 127.0.0.1, every wait bounded, stopped by ``stop()``."""
from __future__ import annotations

import csv
import io
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from _serve import free_port, read_log, request, stop_process

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def render(template: str, ports: dict[int, int]) -> str:
    """``template`` with each ``127.0.0.1:OLD`` of ``ports`` made ``127.0.0.1:NEW``; a port the
    template lacks is an error (the test would otherwise run some other setup)."""
    for old, new in ports.items():
        needle = f"127.0.0.1:{old}"
        if needle not in template:
            raise ValueError(f"the config has no {needle}")
        template = re.sub(rf"127\.0\.0\.1:{old}\b", f"127.0.0.1:{new}", template)
    return template


def wait_listening(port: int, proc: subprocess.Popen, what: str, log: Callable[[], str],
                   seconds: float = 15) -> None:
    """Until something accepts on 127.0.0.1:``port``; an error if ``proc`` exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen in {seconds:g} s: {log()}")


class Balancer:
    """A load balancer process: ``url``, ``log()``, ``stop()``, ``retried(log)``."""

    name = ""

    def __init__(self, tmp: Path, argv: list[str], port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = tmp / f"{self.name}.log"
        # append mode: nginx reopens /dev/stdout with its own offset, which must not overwrite
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     cwd=tmp)
        try:
            wait_listening(port, self.proc, self.name, self.log)
        except RuntimeError:
            self.stop()
            raise

    def log(self) -> str:
        return read_log(self.log_file, self.log_path)

    def stop(self) -> None:
        """Stop at once (SIGTERM is both's fast stop), killed if it lingers."""
        stop_process(self.proc, self.log_file, signal.SIGTERM, 10)

    def tries(self) -> list[tuple[int, float]]:
        """For each POST the balancer logged: (replicas tried, 1 when not retried; seconds)."""
        raise NotImplementedError


class HAProxy(Balancer):
    """deploy/haproxy.cfg for ``replicas`` (two ports); ``stats()`` per replica."""

    name = "haproxy"

    def __init__(self, tmp: Path, replicas: list[int]):
        port, self.stats_port = free_port(), free_port()
        config = render((DEPLOY / "haproxy.cfg").read_text(), {
            8080: port, 8404: self.stats_port, 8001: replicas[0], 8002: replicas[1]})
        (tmp / "haproxy.cfg").write_text(config)
        assert HAPROXY, "haproxy is not installed"
        super().__init__(tmp, [HAPROXY, "-db", "-f", str(tmp / "haproxy.cfg")], port)

    def stats(self) -> dict[str, dict[str, str]]:
        """The stats page's CSV rows of the replicas' backend, by server name."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv",
                                    timeout=5) as r:
            text = r.read().decode().lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row["pxname"] == "genzoo_replicas"}

    def tries(self) -> list[tuple[int, float]]:
        # httplog: %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST ... %ac/%fc/%bc/%sc/%rc %sq/%bq "%r", times in
        # ms; %rc is the retries ('+' before it: redispatched)
        found = re.findall(r" -?\d+/-?\d+/-?\d+/-?\d+/(\d+) \d{3} .* \d+/\d+/\d+/\d+/\+?(\d+) "
                           r"\d+/\d+ \"POST ", self.log())
        return [(1 + int(retries), int(ms) / 1000) for ms, retries in found]


class Nginx(Balancer):
    """deploy/nginx.conf for ``replicas`` (two ports), run with its prefix in ``tmp``."""

    name = "nginx"

    def __init__(self, tmp: Path, replicas: list[int]):
        port = free_port()
        config = render((DEPLOY / "nginx.conf").read_text(), {
            8080: port, 8001: replicas[0], 8002: replicas[1]})
        prefix = tmp / "nginx"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(config)
        assert NGINX, "nginx is not installed"
        super().__init__(tmp, [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                         port)

    def tries(self) -> list[tuple[int, float]]:
        # the access log: "POST ..." status $request_time upstream=A[, B...] (every one tried)
        found = re.findall(r"\"POST [^\"]*\" \d+ ([\d.]+) upstream=(\S+(?:, \S+)*) ",
                           self.log())
        return [(addr.count(",") + 1, float(seconds)) for seconds, addr in found]


def fire(url: str, bodies: list[dict], workers: int,
         on_reply: Callable[[int], None] | None = None) -> list[tuple[int, bytes, float]]:
    """POST each body to ``url`` from ``workers`` threads: (status, bytes, seconds) in order;
    ``on_reply(k)`` after the k-th reply arrives."""
    done = [0]

    def one(body: dict) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        status, raw, _ = request(url, body, timeout=60)
        seconds = time.perf_counter() - t0
        done[0] += 1  # under the GIL; only a progress count
        if on_reply:
            on_reply(done[0])
        return status, raw, seconds

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, bodies))


def median(values: list[float]) -> float:
    """The median (0.0 of nothing)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
