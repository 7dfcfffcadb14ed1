"""What a request becomes once checked: a ``Job``, and the errors that end jobs. Shared by
the batching worker (``queue``) and the step-by-step scheduler (``stepping``)."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from genzoo.errors import GenzooError
from genzoo.samples import Samples


class QueueFull(GenzooError):
    """The queue holds as many jobs as it may; the client should retry after ``retry_after``."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(Exception):
    """Raised inside ``generate`` to stop a batch whose every client went away or ran out of
    time (by a streaming callback, or by ``Batcher`` interrupting its worker thread)."""


class ShuttingDown(GenzooError):
    """The server is stopping: queued and running work is dropped (the server answers 503)."""

    retry_after = 5


@dataclass
class Job:
    """One request's work: ``n`` samples of ``model_name`` with seed and checked options."""

    model_name: str
    model: Any
    n: int
    seed: int
    opts: dict[str, Any]
    meta: dict[str, Any]
    batch_size: int
    per_sample: dict[str, Any]
    key: str | None  # requests with equal keys may share a generate call; None: never
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    deadline: float
    done: int = 0
    parts: list[Samples] = field(default_factory=list)
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the waiting request, from any thread."""
        def settle() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the server's loop is closed: nobody is left to answer
            pass


def plan_job(model: Any, model_name: str, n: int, seed: int, options: dict[str, Any],
             loop: asyncio.AbstractEventLoop, timeout: float,
             stream: Callable[[str], None] | None = None) -> Job:
    """A checked ``Job``: ``GenerativeModel.plan_sampling``'s option handling, batch size and
    provenance, exactly as ``genzoo sample`` gets them (a bad value is a one-line
    ``OptionError``)."""
    plan = model.plan_sampling(n, seed, **options, **({"stream": stream} if stream else {}))
    mergeable = not plan.per_sample and stream is None
    key = json.dumps([model_name, plan.shown], sort_keys=True, default=str) if mergeable \
        else None
    return Job(model_name, model, n, seed, plan.opts, plan.meta, plan.batch_size,
               plan.per_sample, key, loop.create_future(), loop, time.monotonic() + timeout)
