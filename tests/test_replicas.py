"""Serving past one machine: two ``genzoo serve`` replicas behind the shipped HAProxy and nginx
configs (deploy/) on loopback. One replica is killed (SIGKILL) or stopped (SIGTERM) in the
middle of a load: every request still gets 200 and the bytes a direct request with the same
seed gets, the balancer stops sending to the dead replica, and the retries are counted.
deploy/kubernetes.yaml is parsed and its probes run against a real server.

Skipped only where the balancer binary is not installed (.ci/run installs both)."""
from __future__ import annotations

import contextlib
import functools
import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from _balancers import DEPLOY, HAPROXY, NGINX, Balancer, HAProxy, Nginx, fire, median
from _serve import Server, request

MODELS = "diffusion-mnist,textlm-shakespeare"
DIGITS = "/v1/models/diffusion-mnist/samples"
TEXT = "/v1/models/textlm-shakespeare/samples"
N, WORKERS, AFTER = 24, 8, 6
KINDS = {"haproxy": (HAProxy, HAPROXY), "nginx": (Nginx, NGINX)}
#: each balancer, skipped (before any replica starts) where its binary is not installed
BALANCERS = [pytest.param(kind, marks=pytest.mark.skipif(
    not binary, reason=f"{kind} is not installed (apt-get install {kind}; .ci/run does)"))
    for kind, (_, binary) in sorted(KINDS.items())]
#: --exact: a response's bytes do not depend on what else the replica batched it with
REPLICA_ARGS = ("--exact", "--models", MODELS)


def digit(seed: int) -> dict:
    """A small deterministic image request (DDIM, 4 steps: ~0.1 s on one core)."""
    return {"n": 1, "seed": seed, "options": {"steps": 4}, "format": "png"}


def wait_until(predicate, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def survivor(tmp_path_factory) -> Iterator[Server]:
    """The replica that stays up, shared by the scenarios (a process costs ~5 s to warm)."""
    srv = Server(tmp_path_factory.mktemp("survivor"), *REPLICA_ARGS)
    try:
        assert request(srv.url + DIGITS, digit(0))[0] == 200  # loads the model now
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def expected(survivor) -> Callable[[int], bytes]:
    """A seed's bytes as a direct request to a replica gets them (cached)."""
    @functools.lru_cache(maxsize=None)
    def of(seed: int) -> bytes:
        status, raw, _ = request(survivor.url + DIGITS, digit(seed))
        assert status == 200, raw
        return raw
    return of


@contextlib.contextmanager
def cluster(tmp: Path, kind: str, survivor: Server) -> Iterator[tuple[Server, Balancer]]:
    """A fresh warm replica (the victim) and ``survivor`` behind the ``kind`` balancer, the
    victim first in its config; the victim and the balancer are stopped at the end."""
    cls, _ = KINDS[kind]
    victim = Server(tmp, *REPLICA_ARGS)
    balancer = None
    try:
        assert request(victim.url + DIGITS, digit(0))[0] == 200  # not loading under the load
        balancer = cls(tmp, [victim.port, survivor.port])
        if isinstance(balancer, HAProxy):  # both replicas passed a health check
            wait_until(lambda: all(row["status"] == "UP" for name, row in
                                   balancer.stats().items() if name.startswith("replica")),
                       "both replicas UP")
        yield victim, balancer
    finally:
        if balancer:
            balancer.stop()
        victim.stop()


def events(raw: bytes) -> list[tuple[str, dict]]:
    """A server-sent event stream as (event, data) pairs."""
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def check_stream(balancer: Balancer, replica: Server) -> None:
    """A streamed text request passes the balancer as events and ends with the text a direct
    request with the same seed gets."""
    body = {"n": 1, "seed": 7, "options": {"max_new_tokens": 24}}
    status, raw, headers = request(balancer.url + TEXT, {**body, "stream": True})
    kind = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert status == 200 and kind.startswith("text/event-stream"), raw
    got = events(raw)
    assert [e for e, _ in got].count("piece") > 1 and got[-1][0] == "done", got
    direct = json.loads(request(replica.url + TEXT, body)[1])
    assert got[-1][1]["texts"] == direct["texts"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
@pytest.mark.parametrize("kind", BALANCERS)
def test_a_replica_lost_mid_load_loses_no_request(tmp_path, survivor, expected, kind, sig):
    with cluster(tmp_path, kind, survivor) as (victim, balancer):
        check_stream(balancer, survivor)
        half_done = threading.Event()
        killer_error: list[BaseException] = []

        def kill_when_busy() -> None:
            # the victim must hold work (queued behind its running job) when it goes
            try:
                assert half_done.wait(30), "the load never got going"
                wait_until(lambda: victim.health()["queue"]["queued"] >= 1, "victim busy")
                victim.proc.send_signal(sig)
            except BaseException as e:  # reported by the test below
                killer_error.append(e)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        replies = fire(balancer.url + DIGITS, [digit(s) for s in range(N)], WORKERS,
                       lambda k: half_done.set() if k >= 4 else None)
        killer.join(timeout=40)
        assert not killer_error, killer_error
        victim.proc.wait(timeout=15)
        assert [r[0] for r in replies] == [200] * N, [r[:2] for r in replies if r[0] != 200]
        for seed, (_, raw, _) in enumerate(replies):  # retried or not: the seed's own bytes
            assert raw == expected(seed), seed

        # the dead replica is taken out: HAProxy's health checks say DOWN, and every later
        # request lands on the survivor (nginx: after its one failure, for fail_timeout)
        if isinstance(balancer, HAProxy):
            wait_until(lambda: balancer.stats()["replica1"]["status"].startswith("DOWN"),
                       "replica1 marked DOWN")
        jobs = survivor.health()["queue"]["jobs"]
        after = fire(balancer.url + DIGITS, [digit(100 + s) for s in range(AFTER)], 2)
        assert [r[0] for r in after] == [200] * AFTER
        assert survivor.health()["queue"]["jobs"] - jobs == AFTER

        # a request's log line is written as it ends, maybe just after its client has read it
        wait_until(lambda: len(balancer.tries()) >= 1 + N + AFTER, "the balancer's log", 5)
        tries = balancer.tries()
        assert len(tries) == 1 + N + AFTER, balancer.log()[-3000:]
        retried = [s for t, s in tries if t > 1]
        assert retried, f"nothing was retried: the victim held no request? {balancer.log()}"
        plain = [s for t, s in tries[1:N + 1] if t == 1]
        print(f"\n{kind} {sig.name}: {len(retried)} of {N} requests retried; median "
              f"{median(plain):.3f} s not retried, {median(retried):.3f} s retried (+"
              f"{median(retried) - median(plain):.3f} s)")



@pytest.mark.skipif(not HAPROXY, reason="haproxy is not installed (apt-get install haproxy; "
                    ".ci/run does)")
def test_haproxy_takes_a_hung_replica_out_and_back(tmp_path, survivor):
    """A replica that stops answering but keeps its port (SIGSTOP) fails its /healthz checks:
    DOWN within seconds, requests go to the other one; UP again once it answers."""
    victim = Server(tmp_path, *REPLICA_ARGS)
    balancer = None
    try:
        balancer = HAProxy(tmp_path, [victim.port, survivor.port])
        state = lambda: balancer.stats()["replica1"]["status"]  # noqa: E731
        wait_until(lambda: state() == "UP", "replica1 UP")
        victim.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        wait_until(lambda: state().startswith("DOWN"), "replica1 DOWN", 10)
        down_s = time.monotonic() - t0
        jobs = survivor.health()["queue"]["jobs"]
        replies = fire(balancer.url + DIGITS, [digit(200 + s) for s in range(AFTER)], 2)
        assert [r[0] for r in replies] == [200] * AFTER
        assert survivor.health()["queue"]["jobs"] - jobs == AFTER
        victim.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: state() == "UP", "replica1 UP again", 10)
        print(f"\nhaproxy: a hung replica DOWN after {down_s:.1f} s")
    finally:
        victim.proc.send_signal(signal.SIGCONT)
        if balancer:
            balancer.stop()
        victim.stop()

def manifest() -> dict[str, dict]:
    """deploy/kubernetes.yaml's documents by kind."""
    yaml = pytest.importorskip("yaml")
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}


def graceful_shutdown_s() -> int:
    """uvicorn's graceful shutdown cap as genzoo serve sets it (after SIGTERM)."""
    source = (Path(__file__).resolve().parent.parent / "genzoo/serve/app.py").read_text()
    found = re.search(r"timeout_graceful_shutdown=(\d+)", source)
    assert found, "genzoo serve no longer sets timeout_graceful_shutdown"
    return int(found.group(1))


def test_the_kubernetes_manifest_fits_genzoo_serve():
    docs = manifest()
    deployment, service = docs["Deployment"], docs["Service"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() \
        <= labels.items()
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    assert container["command"] == ["genzoo"] and args[0] == "serve"
    port = int(args[args.index("--port") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports[get["port"]] == port, probe
    # the grace period covers the preStop sleep and genzoo's own shutdown after SIGTERM
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] >= sleep + graceful_shutdown_s()
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["GENZOO_SERVE_TOKEN"]["valueFrom"]


def test_the_kubernetes_container_command_answers_its_probes(tmp_path):
    """The container's args, run for real on loopback with the token from the environment:
    the probes' path answers 200 without a token; a sample request without it is refused."""
    (container,) = manifest()["Deployment"]["spec"]["template"]["spec"]["containers"]
    args, rest = list(container["args"][1:]), []
    while args:  # --host and --port are the test's: loopback, a free port
        arg = args.pop(0)
        if arg in ("--host", "--port"):
            args.pop(0)
        else:
            rest.append(arg)
    srv = Server(tmp_path, "--host", "127.0.0.1", *rest, env={"GENZOO_SERVE_TOKEN": "s3cret"})
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            status, raw, _ = request(srv.url + container[probe]["httpGet"]["path"])
            assert status == 200 and json.loads(raw)["auth"] is True, raw
        assert request(srv.url + DIGITS, digit(0))[0] == 401  # the token is in force
        assert request(srv.url + "/v1/models")[0] == 401
    finally:
        srv.stop()
