"""The continuous-batching scheduler (genzoo.serve.stepping), in-process: concurrent jobs of a
stepping model decode together yet get exactly what they get alone, stream their pieces,
and leave the batch at once when cancelled or out of time while the others continue; the
batch never holds more than ``max_batch`` sequences."""
from __future__ import annotations

import asyncio
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("genzoo_textlm")

from genzoo.serve.queue import Cancelled, ShuttingDown, plan_job  # noqa: E402
from genzoo.serve.stepping import Stepping, can_step  # noqa: E402

REQUESTS = [  # (n, seed, options): prompts, lengths and temperatures all differ
    (1, 0, dict(prompt="To be", max_new_tokens=24, temperature=0.0)),
    (2, 5, dict(prompt="a", max_new_tokens=9, temperature=1.0, top_k=40)),
    (1, 1, dict(prompt="The quick brown fox", max_new_tokens=30, temperature=0.8,
                top_p=0.9)),
    (1, 2, dict(prompt="", max_new_tokens=16, temperature=1.0, stop=["e"])),
]


@pytest.fixture(scope="module")
def gpt():
    """A tiny random native GPT with genzoo's byte-level tokenizer."""
    from genzoo_textlm.model import GPTModel
    torch.manual_seed(0)
    return GPTModel.from_config(dict(vocab_size=256, n_positions=128, n_embd=32, n_layer=2,
                                     n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def settle(loop, futures, timeout: float = 60.0):
    """Run ``loop`` until every future is done (results or exceptions, in order)."""
    return loop.run_until_complete(asyncio.wait_for(
        asyncio.gather(*futures, return_exceptions=True), timeout))



def _settled(stepping: Stepping) -> dict:
    """The scheduler's counters once no sequence is live (waiting at most 10 s)."""
    deadline = time.monotonic() + 10
    while stepping.snapshot()["live"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return stepping.snapshot()


def test_concurrent_jobs_equal_sequential_samples(gpt, loop):
    stepping = Stepping(max_batch=3, max_queue=8)
    try:
        jobs = [plan_job(gpt, "gpt", n, seed, dict(opts), loop, 60.0)
                for n, seed, opts in REQUESTS]
        assert all(can_step(j) for j in jobs)
        for job in jobs:
            stepping.submit(job)
        got = settle(loop, [j.future for j in jobs])
        stats = stepping.snapshot()
    finally:
        stepping.stop()
    want = [gpt.sample(n, seed=seed, **opts).texts for n, seed, opts in REQUESTS]
    assert [s.texts for s in got] == want
    assert got[0].meta["prompt"] == "To be" and got[1].meta["seed"] == 5
    assert stats["max_batch_seen"] == 3  # decoded together, never more than max_batch
    assert stats["sequences"] == 5 and stats["samples"] == 5 and stats["live"] == 0


def test_streamed_pieces_add_up_to_the_text(gpt, loop):
    stepping = Stepping(max_batch=4)
    pieces: list[str] = []
    try:
        job = plan_job(gpt, "gpt", 1, 3, dict(prompt="Hi", max_new_tokens=20), loop, 60.0,
                       stream=pieces.append)
        other = plan_job(gpt, "gpt", 1, 4, dict(prompt="Yo", max_new_tokens=25), loop, 60.0)
        stepping.submit(job)
        stepping.submit(other)
        got, _ = settle(loop, [job.future, other.future])
    finally:
        stepping.stop()
    assert len(pieces) > 3 and "".join(pieces) == got.texts[0]
    assert got.texts == gpt.sample(1, seed=3, prompt="Hi", max_new_tokens=20).texts


def test_a_cancelled_job_leaves_and_the_others_continue(gpt, loop):
    stepping = Stepping(max_batch=4)
    seen: list[str] = []

    def on_piece(piece: str) -> None:  # as the server's: a gone client raises Cancelled
        if gone.cancelled:
            raise Cancelled()
        seen.append(piece)
        if len(seen) == 3:
            stepping.cancel(gone)

    try:
        gone = plan_job(gpt, "gpt", 1, 0, dict(prompt="x", max_new_tokens=100), loop, 60.0,
                        stream=on_piece)
        stays = plan_job(gpt, "gpt", 1, 1, dict(prompt="y", max_new_tokens=40), loop, 60.0)
        stepping.submit(gone)
        stepping.submit(stays)
        (got,) = settle(loop, [stays.future])
        stats = _settled(stepping)
    finally:
        stepping.stop()
    assert got.texts == gpt.sample(1, seed=1, prompt="y", max_new_tokens=40).texts
    assert not gone.future.done() and len(seen) == 3  # no more pieces after it left
    assert stats["cancelled"] == 1 and stats["live"] == 0 and stats["queued"] == 0
    assert stats["steps"] < 60  # it left at once: the batch did not run on to its 100 tokens


def test_a_job_past_its_deadline_leaves(gpt, loop):
    stepping = Stepping(max_batch=2)
    try:
        late = plan_job(gpt, "gpt", 1, 0, dict(prompt="x", max_new_tokens=120), loop, 0.05)
        ok = plan_job(gpt, "gpt", 1, 1, dict(prompt="y", max_new_tokens=10), loop, 60.0)
        stepping.submit(late)
        stepping.submit(ok)
        (got,) = settle(loop, [ok.future])
        stats = _settled(stepping)
    finally:
        stepping.stop()
    assert got.texts == gpt.sample(1, seed=1, prompt="y", max_new_tokens=10).texts
    assert late.cancelled and stats["timed_out"] == 1 and stats["live"] == 0
    assert stats["steps"] < 60  # it left when its time ran out, not after 120 tokens


def test_close_fails_running_and_new_jobs_at_once(gpt, loop):
    stepping = Stepping(max_batch=2)
    started: list[str] = []
    job = plan_job(gpt, "gpt", 1, 0, dict(prompt="x", max_new_tokens=100_000), loop, 60.0,
                   stream=started.append)
    stepping.submit(job)
    deadline = time.monotonic() + 10
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    threads = [s.thread for s in stepping.steppers.values()]
    t0 = time.monotonic()
    stepping.stop()
    (error,) = settle(loop, [job.future])
    assert isinstance(error, ShuttingDown) and time.monotonic() - t0 < 5
    assert len(threads) == 1 and not threads[0].is_alive()
    with pytest.raises(ShuttingDown):
        stepping.submit(plan_job(gpt, "gpt", 1, 0, dict(prompt="y"), loop, 60.0))


# ---- wired into the server's queue ------------------------------------------------------
def test_the_batcher_hands_stepping_jobs_to_the_scheduler(gpt, loop):
    from genzoo.serve.queue import Batcher
    batcher = Batcher(max_batch=4)
    try:
        jobs = [plan_job(gpt, "gpt", n, seed, dict(opts), loop, 60.0)
                for n, seed, opts in REQUESTS]
        for job in jobs:
            batcher.submit(job)
        got = settle(loop, [j.future for j in jobs])
        stats = batcher.snapshot()
    finally:
        batcher.stop()
    assert [s.texts for s in got] == [gpt.sample(n, seed=seed, **opts).texts
                                      for n, seed, opts in REQUESTS]
    assert stats["batches"] == 0 and stats["stepping"]["sequences"] == 5
    assert 2 <= stats["stepping"]["max_batch_seen"] <= 4


def test_exact_mode_keeps_whole_generate_calls(gpt, loop):
    """``genzoo serve --exact`` (no merging): byte for byte ``genzoo sample``, no stepping."""
    from genzoo.serve.queue import Batcher
    batcher = Batcher(max_batch=4, merge=False)
    try:
        job = plan_job(gpt, "gpt", 2, 3, dict(prompt="a", max_new_tokens=8), loop, 60.0)
        batcher.submit(job)
        (got,) = settle(loop, [job.future])
        stats = batcher.snapshot()
    finally:
        batcher.stop()
    assert got.texts == gpt.sample(2, seed=3, prompt="a", max_new_tokens=8).texts
    assert stats["batches"] == 1 and stats["stepping"]["sequences"] == 0


def test_server_concurrent_chats_equal_one_at_a_time(tmp_path):
    """A real ``genzoo serve``: concurrent greedy chats on the tiny chat model decode together
    (the scheduler's batch holds several) and answer what each answers alone."""
    import sys
    import threading
    from pathlib import Path
    pytest.importorskip("transformers")
    from _serve import Server, post
    sys.path.insert(0, str(Path(__file__).parents[1] / "plugins/textlm/tests"))
    from _tiny_chat import build_tiny_chat
    folder = str(build_tiny_chat(tmp_path / "chat").resolve())
    bodies = [{"model": folder, "max_tokens": 40, "temperature": 0, "messages": [
        {"role": "user", "content": text}]} for text in
        ("What is a list?", "Tell me about loops", "x", "Write a poem about the sea")]
    server = Server(tmp_path, "--allow-folders", "--max-batch", "8")
    try:
        url = server.url + "/v1/chat/completions"
        alone = [post(url, b) for b in bodies]
        together: list = [None] * len(bodies)
        threads = [threading.Thread(target=lambda i=i: together.__setitem__(
            i, post(url, bodies[i]))) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = server.health()
    finally:
        server.stop()

    def replies(answers):
        assert all(status == 200 for status, _, _ in answers), answers
        return [body for _, body, _ in answers]
    texts = [[c["message"]["content"] for c in r["choices"]] for r in replies(together)]
    assert texts == [[c["message"]["content"] for c in r["choices"]] for r in replies(alone)]
    assert health["queue"]["stepping"]["max_batch_seen"] >= 2
    assert health["queue"]["stepping"]["live"] == 0
