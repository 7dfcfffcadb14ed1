"""``genzoo serve``: the HTTP API and the gallery page (a Starlette app on uvicorn).

Routes (docs/serve.md has the reference; ``/openapi.json`` the schema):

    GET  /                              the gallery page (genzoo/static)
    GET  /healthz                       liveness, queue and model counters
    GET  /v1/models                     the served catalog, as ``genzoo list --json``
    GET  /v1/models/{name}              model info: card, options schema, what the API serves
    POST /v1/models/{name}/samples      {"n", "seed", "options", "format", "stream"}

Errors are JSON ``{"error": "one line"}``: 404 unknown model, 422 bad request, 413 body too
large, 415 a POST body not labelled application/json, 403 a cross-origin request not allowed
(``--allow-origin``), 401 missing token, 503 queue full or shutting down (with Retry-After),
504 over the time limit; never a traceback. Every response carries ``X-Content-Type-Options:
nosniff``. Needs the ``serve`` extra (starlette, uvicorn).
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from genzoo.errors import GenzooError, OptionError, UnknownModelError
from genzoo.samples import Samples
from genzoo.serve.formats import (JSON, Limits, SampleRequest, check_caps, decode_images,
                                  default_format, file_bytes, holds_one, json_payload,
                                  parse_request, sample_view, served_formats)
from genzoo.serve.body import ClientGone, read_json
from genzoo.serve.body import HTTPError as _Error
from genzoo.serve.body import disconnected as _disconnected
from genzoo.serve.guard import BearerAuth, OriginGuard
from genzoo.serve.pool import ModelPool, rss_mib
from genzoo.serve.queue import Batcher, Cancelled, Job, QueueFull, ShuttingDown, plan_job

log = logging.getLogger("genzoo.serve.app")
STATIC = Path(__file__).parent / "static"
_STATIC_FILES = {"gallery.html": "text/html", "gallery.js": "text/javascript",
                 "gallery.css": "text/css"}


@dataclass
class ServeConfig:
    """Everything ``genzoo serve`` is started with."""

    host: str = "127.0.0.1"
    port: int = 8000
    models: str | None = None
    max_batch: int = 64
    max_queue: int = 64
    token: str | None = None
    allow_folders: bool = False
    memory_budget_mib: int = 2048
    merge: bool = True
    device: str = "auto"
    dtype: str = "auto"
    limits: Limits = field(default_factory=Limits)
    #: Origins (``scheme://host[:port]``) whose pages may call the API; others get 403.
    allow_origins: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(config: ServeConfig) -> None:
    """Refuse unsafe or impossible settings in one line (before anything is bound)."""
    if not is_loopback(config.host) and not config.token:
        raise OptionError(f"binding {config.host} (not loopback) exposes the server to the "
                          "network: give --token TOKEN (clients send 'Authorization: Bearer "
                          "TOKEN'), or bind 127.0.0.1")
    for name in ("max_batch", "max_queue", "memory_budget_mib"):
        if getattr(config, name) < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be at least 1")


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": "one line"}`` with ``status``."""
    line = " ".join(str(message).split())[:500]
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def _status_of(e: GenzooError) -> int:
    if isinstance(e, UnknownModelError):
        return 404
    return 503 if isinstance(e, (QueueFull, ShuttingDown)) else 422


class App:
    """The server's state (models, queue, limits) and its request handlers."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.pool = ModelPool(config.models, config.allow_folders,
                              config.memory_budget_mib << 20, config.device, config.dtype)
        self.batcher = Batcher(config.max_batch, config.max_queue, config.merge)
        self.started = time.time()

    def close_work(self) -> None:
        """Fail the work in hand at once (503 to every waiting client) and refuse more,
        without waiting: the first step of a shutdown. Every runner of jobs is closed here."""
        self.batcher.close()

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "auth": bool(self.config.token),
                             "uptime_s": round(time.time() - self.started, 1),
                             "queue": self.batcher.snapshot(), "models": self.pool.stats(),
                             "rss_mib": rss_mib()})

    async def models(self, request: Request) -> Response:
        """OpenAI's model list; each entry's "genzoo" key holds genzoo's card fields (H3)."""
        from genzoo.serve.openai_api import model_list
        return await model_list(self, request)

    async def model(self, request: Request) -> Response:
        name = self.pool.check(request.path_params["name"])
        info = await run_in_threadpool(model_info_of, name)
        # OpenAI's model object fields too, so that clients' models.retrieve(name) works
        info.update(id=name, object="model", created=int(self.started), owned_by="genzoo")
        return JSONResponse(json.loads(json.dumps(info, default=str)))

    async def samples(self, request: Request) -> Response:
        name = self.pool.check(request.path_params["name"])
        body = await read_json(request, self.config.limits.max_body,
                               self.config.limits.timeout)
        loop = asyncio.get_running_loop()
        if isinstance(body, dict) and body.get("stream"):
            return await self._stream(request, name, body, loop)
        job, req = await run_in_threadpool(self._plan, name, body, loop, None)
        self.batcher.submit(job)
        t0 = time.perf_counter()
        samples = await self._wait(request, job)
        return await run_in_threadpool(_encode, samples, req, name, time.perf_counter() - t0)

    def _plan(self, name: str, body: Any, loop: asyncio.AbstractEventLoop,
              stream: Callable[[str], None] | None) -> tuple[Job, SampleRequest]:
        """Load the model (once), check the request and its options: a queued job."""
        model = self.pool.get(name)
        limits = self.config.limits
        req = parse_request(body, model.sample_modality(), limits)
        shape = model.config.get("image_shape")
        options = decode_images(model.options(), req.options, tuple(shape) if shape else None,
                                limits.max_image_pixels)
        job = plan_job(model, name, req.n, req.seed, options, loop, limits.timeout, stream)
        check_caps(job.opts, limits)  # the values the model's schema parsed, defaults included
        return job, req

    async def _wait(self, request: Request, job: Job) -> Samples:
        """The job's samples; the job is dropped if the client goes away or time runs out."""
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED,
                                         timeout=max(0.0, job.deadline - time.monotonic()))
        except BaseException:  # this handler was cancelled (shutdown): nobody waits any more
            self.batcher.cancel(job)
            raise
        finally:
            gone.cancel()
        if job.future in done:
            result: Samples = job.future.result()
            return result
        self.batcher.cancel(job, "cancelled" if gone in done else "timed_out")
        if gone in done:
            raise _Error(499, "client closed the request")
        raise _Error(504, f"the request took longer than {self.config.limits.timeout:g} s; "
                          "ask for fewer samples or fewer steps")

    async def _stream(self, request: Request, name: str, body: Any,
                      loop: asyncio.AbstractEventLoop) -> Response:
        """Server-sent events: ``piece`` events as text is generated, then ``done`` (the JSON
        response) or ``error``. Closing the connection stops the generation."""
        job, req, pieces = await self.start_stream(name, body, loop)
        t0 = time.perf_counter()
        return StreamingResponse(self._events(job, req, name, pieces, t0),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def start_stream(self, name: str, body: Any, loop: asyncio.AbstractEventLoop
                           ) -> tuple[Job, SampleRequest, "asyncio.Queue[str]"]:
        """Plan and queue a streaming job: its text pieces arrive on the returned queue, and
        generation stops between pieces once the job is cancelled (genzoo's and OpenAI's
        streaming routes share this)."""
        pieces: asyncio.Queue[str] = asyncio.Queue()
        holder: dict[str, Job] = {}

        def on_piece(piece: str) -> None:
            if holder["job"].cancelled:
                raise Cancelled()  # stops generate between tokens
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        job, req = await run_in_threadpool(self._plan, name, body, loop, on_piece)
        holder["job"] = job
        self.batcher.submit(job)
        return job, req, pieces

    async def follow(self, job: Job, pieces: "asyncio.Queue[str]") -> AsyncIterator[str]:
        """A streaming job's text pieces as they arrive, until its future is done (then read
        ``job.future``). Past the deadline the job is cancelled and ``TimeoutError`` raised;
        a client that leaves (the consumer closes this generator) cancels it too."""
        try:
            while True:
                get = asyncio.ensure_future(pieces.get())
                done, _ = await asyncio.wait({get, job.future},
                                             return_when=asyncio.FIRST_COMPLETED,
                                             timeout=max(0.0, job.deadline - time.monotonic()))
                if get in done:
                    yield get.result()
                    continue
                get.cancel()
                if not job.future.done():
                    self.batcher.cancel(job, "timed_out")
                    raise TimeoutError(f"the request took longer than "
                                       f"{self.config.limits.timeout:g} s")
                while not pieces.empty():
                    yield pieces.get_nowait()
                return
        finally:
            if not job.future.done():
                self.batcher.cancel(job)  # the client went away mid-stream

    async def _events(self, job: Job, req: SampleRequest, name: str,
                      pieces: "asyncio.Queue[str]", t0: float) -> AsyncIterator[str]:
        try:
            # aclosing: a client leaving at a yield closes ``follow`` now, which cancels
            async with contextlib.aclosing(self.follow(job, pieces)) as stream:
                async for piece in stream:
                    yield _event("piece", {"text": piece})
        except TimeoutError as e:
            yield _event("error", {"error": str(e)})
            return
        try:
            samples = job.future.result()
        except GenzooError as e:
            yield _event("error", {"error": str(e)})
            return
        yield _event("done", json_payload(samples, name, req.n, req.seed,
                                          time.perf_counter() - t0))


def model_info_of(name: str) -> dict[str, Any]:
    """``GET /v1/models/{name}``: the info dict of ``genzoo.model_info`` (the catalog card's
    fields, status, options schema, capabilities) plus ``serving``: modality, response
    formats (and the default one, ``n``'s default), streaming, conditions, and ``sample``:
    how the gallery shows one (see ``sample_view``). (Not a "card": that word is the
    catalog entry's.)"""
    from genzoo.plugins import manager as plugins
    from genzoo.api import model_info
    from genzoo.samples import modality
    info = model_info(name)
    cls = plugins.load_arch_class(info["arch"])
    spec = modality(cls.modality)
    schema = cls.sample_options
    from genzoo.options import build_schema
    options = build_schema(schema, cls.sample_defaults)
    fmt = default_format(spec)
    info["serving"] = {
        "modality": spec.name, "formats": served_formats(spec), "default_format": fmt,
        "default_n": 1 if holds_one(spec, fmt) else spec.default_n,
        "stream": spec.streams and any(o.type == "callable" and o.name == "stream"
                                       for o in options.values()),
        "conditions": [o.name for o in options.values() if o.condition],
        "sample": sample_view(spec)}
    return info


def _encode(samples: Samples, req: SampleRequest, name: str, seconds: float) -> Response:
    """The response in the requested format, with the provenance in a header as well."""
    provenance = json.dumps(samples.provenance())
    headers = {"X-Genzoo-Provenance": provenance.encode("ascii", "backslashreplace").decode()}
    if req.format == JSON:
        return JSONResponse(json_payload(samples, name, req.n, req.seed, seconds))
    data, media_type = file_bytes(samples, req.format)
    return Response(data, media_type=media_type, headers=headers)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "gallery.html", media_type="text/html")


async def static(request: Request) -> Response:
    name = request.path_params["file"]
    if name not in _STATIC_FILES:  # a fixed list: no path from a request reaches the disk
        raise _Error(404, f"no static file {name!r}")
    return FileResponse(STATIC / name, media_type=_STATIC_FILES[name])


def create_app(config: ServeConfig) -> OriginGuard:
    """The ASGI app for ``config`` (its batching worker starts now, stops at shutdown)."""
    from genzoo.serve.openai_api import openai_routes
    from genzoo.serve.openapi import openapi_schema
    check_config(config)
    state = App(config)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_schema())

    routes = [Route("/", page), Route("/static/{file}", static),
              Route("/healthz", state.healthz), Route("/openapi.json", openapi),
              Route("/v1/models", state.models),
              Route("/v1/models/{name:path}/samples", state.samples, methods=["POST"]),
              Route("/v1/models/{name:path}", state.model)]
    routes += openai_routes(state, read_json, model_info_of)  # OpenAI's API (H3)

    async def on_genzoo_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, GenzooError)  # the handler is registered for GenzooError only
        retry = getattr(e, "retry_after", None) if isinstance(e, (QueueFull, ShuttingDown)) \
            else None
        headers = {"Retry-After": str(retry)} if retry else None
        return error_response(_status_of(e), str(e), headers)

    async def on_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, _Error)
        return error_response(e.status, str(e), e.headers)

    async def on_http(request: Request, e: Exception) -> Response:
        assert isinstance(e, HTTPException)
        return error_response(e.status_code, e.detail or "error")

    async def on_gone(request: Request, e: Exception) -> Response:
        log.debug("client left before its request was complete: %s", request.url.path)
        return error_response(499, "client closed the request")

    async def on_crash(request: Request, e: Exception) -> Response:
        if isinstance(e, RecursionError):  # a JSON reader without a depth bound: bad input
            return error_response(422, "the body nests too deeply")
        log.error("internal error on %s", request.url.path, exc_info=e)
        return error_response(500, "internal server error (the server log has the details)")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(state.batcher.stop)

    app = Starlette(routes=routes, exception_handlers={
        GenzooError: on_genzoo_error, _Error: on_error, HTTPException: on_http,
        ClientGone: on_gone, ClientDisconnect: on_gone, Exception: on_crash}, lifespan=lifespan)
    app.state.genzoo = state
    # the guard sits outside the token check: a browser's preflight carries no token
    return OriginGuard(BearerAuth(app, config.token) if config.token else app,
                       config.allow_origins)


def serve(config: ServeConfig) -> None:
    """Run the server until interrupted (``genzoo serve``)."""
    import uvicorn
    app = create_app(config)
    names = app.state.genzoo.pool.names()
    print(f"genzoo serve: http://{config.host}:{config.port}/ ({len(names)} models; "
          f"{'bearer token required' if config.token else 'no token'}; "
          f"max batch {config.max_batch}, queue {config.max_queue})", flush=True)
    state = app.state.genzoo

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # SIGTERM/SIGINT: fail the work in hand now, so every open request is answered
            # (503) and the graceful shutdown finishes at once instead of timing out on a
            # long generation. In a thread: a signal handler must not wait for a lock.
            threading.Thread(target=state.close_work, daemon=True).start()
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                          timeout_graceful_shutdown=5)).run()
