"""OpenAI's API beside genzoo's own routes, so the clients people already use (the ``openai``
package, LangChain, curl scripts) talk to ``genzoo serve`` unchanged (docs/openai.md).

    GET  /v1/models               the served models in OpenAI's list shape
    POST /v1/chat/completions     models that take ``messages`` (a chat template)
    POST /v1/completions          text models that take a ``prompt`` string
    POST /v1/images/generations   models that draw images (b64_json PNGs)

Each request is translated into genzoo's own sampling body and goes through the same path as
``POST /v1/models/{name}/samples`` (``App._plan``: the limits, the option checks, the queue,
its deadline and cancellation), so nothing here calls a model itself. Which models a route
serves is read from what each model declares (its options schema and served formats), never
from a family name. Errors use OpenAI's shape ``{"error": {message, type, param, code}}``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from genzoo.samples import Samples
from genzoo.serve import schemas as S
from genzoo.serve.openai_errors import (OpenAIError, crash_event, error_of, openai_error,
                                        openai_errors)
from genzoo.serve.queue import Job

if TYPE_CHECKING:  # the app hands itself in (openai_routes): no import of it at run time
    from genzoo.serve.app import App

#: ``read_json(request, limit, seconds)``: the app's one way of reading a request body.
ReadJson = Callable[[Request, int, float], Awaitable[Any]]
#: ``serving(name)``: the app's model info for ``name`` ("serving": formats...).
Serving = Callable[[str], dict[str, Any]]

async def model_list(state: App, request: Request) -> Response:
    """``GET /v1/models``: OpenAI's list; each entry's ``genzoo`` key holds the card fields and
    status ``genzoo list --json`` prints for that model."""
    def listing() -> S.ModelList:
        """The served cards (reading the catalog may touch the disk: off the event loop)."""
        from genzoo.api import list_models, model_status
        served = set(state.pool.names())
        cards = [json.loads(json.dumps({**c.to_dict(), **model_status(c)}, default=str))
                 for c in list_models() if c.name in served]
        created = int(state.started)
        return S.ModelList(data=[S.ModelEntry(id=c["name"], created=created, genzoo=c)
                                 for c in cards])
    return JSONResponse((await run_in_threadpool(listing)).model_dump())


class _Routes:
    """The OpenAI handlers over one ``App`` (its pool, limits and queue)."""

    def __init__(self, state: App, read_json: ReadJson, serving: Serving):
        self.state, self.read_json, self.serving = state, read_json, serving
        self._serving: dict[str, dict[str, Any]] = {}

    # ---- what a model serves ---------------------------------------------------------------
    def _model(self, name: str, route: str) -> tuple[Any, dict[str, Any]]:
        """The loaded model and its options schema, if it serves ``route`` (from what it
        declares: ``messages`` -> chat; a ``prompt`` string and text out -> completions;
        images out -> images; asked of the modality's sample file type, never its name), else
        a 400 naming the route that would."""
        name = self.state.pool.check(name)
        model = self.state.pool.get(name)
        options = model.options()
        if name not in self._serving:
            self._serving[name] = self.serving(name)["serving"]
        sample = self._serving[name]["sample"]
        # OpenAI's images are base64 PNG files; its completions are plain text
        images = sample["content_type"] == "image/png" and sample["json"] == "file"
        text = sample["content_type"].startswith("text/plain")
        prompt = "prompt" in options and options["prompt"].type == "str"
        serves = {"chat": "messages" in options, "completions": prompt and text,
                  "images": images}
        if not serves[route]:
            other = [r for r, ok in serves.items() if ok]
            where = f"; it serves /v1/{'/'.join(other[:1])}" if other else ""
            raise OpenAIError(400, f"model {name!r} does not serve /v1/{route}{where}", "model")
        return model, options

    def _text_body(self, req: S._Sampling, options: dict[str, Any],
                   extra: dict[str, Any]) -> dict[str, Any]:
        """genzoo's sampling body for a chat or completion request."""
        if req.stream and req.n != 1:
            raise OpenAIError(400, "stream: true takes n = 1", "n")
        if req.logprobs:
            raise OpenAIError(400, "logprobs are not served by genzoo", "logprobs")
        limit = self.state.config.limits.max_new_tokens
        default = options["max_new_tokens"].default if "max_new_tokens" in options else None
        tokens = getattr(req, "max_completion_tokens", None) or req.max_tokens
        opts: dict[str, Any] = {**extra, "max_new_tokens": tokens or
                                (min(default, limit) if isinstance(default, int) else None)}
        for key in ("temperature", "top_p", "stop"):
            if getattr(req, key) is not None:
                opts[key] = getattr(req, key)
        opts = {k: v for k, v in opts.items() if v is not None}
        seed = req.seed if req.seed is not None else secrets.randbelow(2 ** 31)
        return {"n": req.n, "seed": seed, "options": opts, "format": "json",
                "stream": req.stream}

    # ---- the routes ---------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        req = S.ChatCompletionRequest.model_validate(await self._json(request))
        if req.tools or req.functions:
            raise OpenAIError(400, "tools and functions are not served by genzoo", "tools")
        if not req.messages:
            raise OpenAIError(400, "messages must hold at least one message", "messages")
        model, options = await run_in_threadpool(self._model, req.model, "chat")
        messages = [{"role": "system" if m.role == "developer" else m.role,
                     "content": m.content if isinstance(m.content, str) else
                     "".join(p.text for p in m.content or [])} for m in req.messages]
        body = self._text_body(req, options, {"messages": messages})
        return await self._text(request, req, body, chat=True, skip=0)

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``: the continuation (after the prompt, unless ``echo``)."""
        req = S.CompletionRequest.model_validate(await self._json(request))
        model, options = await run_in_threadpool(self._model, req.model, "completions")
        body = self._text_body(req, options, {"prompt": req.prompt})
        return await self._text(request, req, body, chat=False,
                                skip=0 if req.echo else len(req.prompt))

    async def images(self, request: Request) -> Response:
        """``POST /v1/images/generations``: ``n`` base64 PNGs."""
        req = S.ImageGenerationRequest.model_validate(await self._json(request))
        if req.response_format not in (None, "b64_json"):
            raise OpenAIError(400, f"response_format {req.response_format!r} is not served: "
                                   "genzoo returns images inline, ask for b64_json",
                              "response_format")
        model, options = await run_in_threadpool(self._model, req.model, "images")
        opts = {**req.options, **_size_options(model, options, req.size)}
        if req.prompt:
            if "prompt" not in options:
                raise OpenAIError(400, f"model {req.model!r} draws without a prompt: send an "
                                       "empty prompt", "prompt")
            opts["prompt"] = req.prompt
        seed = req.seed if req.seed is not None else secrets.randbelow(2 ** 31)
        body = {"n": req.n, "seed": seed, "options": opts, "format": "json"}
        job, samples = await self._run(request, req.model, body)
        from genzoo.serve.formats import json_payload
        pngs = (await run_in_threadpool(json_payload, samples, req.model, req.n, seed, 0.0))
        data = [S.ImageData(b64_json=b) for b in pngs[samples.spec().plural]]
        return JSONResponse(S.ImagesResponse(created=int(time.time()), data=data).model_dump(
            exclude_none=True))

    # ---- running through genzoo's queue ------------------------------------------------------
    async def _json(self, request: Request) -> Any:
        limits = self.state.config.limits
        return await self.read_json(request, limits.max_body, limits.timeout)

    def _submit(self, job: Job) -> None:
        """Queue ``job`` where genzoo's own sampling route queues it."""
        self.state.batcher.submit(job)

    def _cancel(self, job: Job, reason: str = "cancelled") -> None:
        """Drop ``job`` from wherever ``_submit`` queued it."""
        self.state.batcher.cancel(job, reason)

    async def _run(self, request: Request, name: str,
                   body: dict[str, Any]) -> tuple[Job, Samples]:
        """Plan ``body`` as genzoo's sampling route does, queue it, wait for its samples."""
        loop = asyncio.get_running_loop()
        job, _ = await run_in_threadpool(self.state._plan, name, body, loop, None)
        self._submit(job)
        return job, await self.state._wait(request, job)

    async def _text(self, request: Request, req: S._Sampling, body: dict[str, Any], chat: bool,
                    skip: int) -> Response:
        """A chat or completion answer; streamed as server-sent events when asked."""
        if req.stream:
            return await self._stream(request, req, body, chat, skip)
        job, samples = await self._run(request, req.model, body)
        texts = [t[skip:] for t in samples.texts or []]
        usage, reasons = _usage(samples, job)
        ident, created = _ident(chat), int(time.time())
        if chat:
            out: BaseModel = S.ChatCompletion(
                id=ident, created=created, model=req.model, usage=usage,
                choices=[S.ChatChoice(index=i, message=S.AssistantMessage(content=t),
                                      finish_reason=reasons[i]) for i, t in enumerate(texts)])
        else:
            out = S.Completion(id=ident, created=created, model=req.model, usage=usage,
                               choices=[S.CompletionChoice(index=i, text=t,
                                                           finish_reason=reasons[i])
                                        for i, t in enumerate(texts)])
        return JSONResponse(out.model_dump())

    async def _stream(self, request: Request, req: S._Sampling, body: dict[str, Any],
                      chat: bool, skip: int) -> Response:
        """Plan and queue a streaming job; its pieces become OpenAI chunks (see ``_events``)."""
        job, _, pieces = await self.state.start_stream(req.model, body,
                                                       asyncio.get_running_loop())
        usage = bool(req.stream_options and req.stream_options.include_usage)
        chunks = _Chunks(_ident(chat), req.model, chat, usage)
        return StreamingResponse(self._events(job, pieces, chunks, skip),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _events(self, job: Job, pieces: "asyncio.Queue[str]", chunks: "_Chunks",
                      skip: int) -> AsyncIterator[str]:
        """``data: {chunk}`` events as text arrives (``skip`` characters of echoed prompt
        dropped), a last chunk with the finish reason, then ``data: [DONE]``; an error or the
        deadline ends the stream with an OpenAI error event. Leaving stops the generation."""
        try:
            # aclosing: a client leaving at any yield closes ``follow`` now, which cancels
            async with contextlib.aclosing(self.state.follow(job, pieces)) as stream:
                yield chunks.first()
                async for piece in stream:
                    text, skip = _after(piece, skip)
                    if text:
                        yield chunks.piece(text)
        except TimeoutError as e:
            yield _sse(openai_error(504, str(e)))
            return
        try:
            samples = job.future.result()
        except Exception as e:  # noqa: BLE001 - reported to the client, in its shape
            yield _sse(error_of(e) or crash_event(e))
            return
        usage, reasons = _usage(samples, job)
        yield chunks.last(reasons[0], usage)
        yield "data: [DONE]\n\n"


class _Chunks:
    """The server-sent events of one streamed reply (chat chunks or completion pieces)."""

    def __init__(self, ident: str, model: str, chat: bool, usage: bool):
        self.ident, self.model, self.chat, self.usage = ident, model, chat, usage
        self.created = int(time.time())

    def _event(self, delta: S.Delta, text: str, reason: str | None,
               usage: S.Usage | None = None) -> str:
        if self.chat:
            out: BaseModel = S.ChatCompletionChunk(
                id=self.ident, created=self.created, model=self.model, usage=usage,
                choices=[S.ChunkChoice(delta=delta, finish_reason=reason)])
        else:
            out = S.Completion(id=self.ident, created=self.created, model=self.model,
                               usage=usage, choices=[S.CompletionChoice(
                                   index=0, text=text, finish_reason=reason)])
        data = out.model_dump(mode="json")
        for choice in data["choices"]:  # a delta says only what it carries, as OpenAI's do
            if "delta" in choice:
                choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        return "data: " + json.dumps(data) + "\n\n"

    def first(self) -> str:
        """The opening chunk: the assistant's role (an empty piece for completions)."""
        return self._event(S.Delta(role="assistant", content=""), "", None)

    def piece(self, text: str) -> str:
        """A piece of the reply as it is generated."""
        return self._event(S.Delta(content=text), text, None)

    def last(self, reason: str | None, usage: S.Usage) -> str:
        """The closing chunk with the finish reason (and the usage when asked for)."""
        return self._event(S.Delta(), "", reason, usage if self.usage else None)


def _after(text: str, skip: int) -> tuple[str, int]:
    """``text`` without its first ``skip`` characters, and how many remain to skip."""
    cut = min(skip, len(text))
    return text[cut:], skip - cut


def _sse(response: JSONResponse) -> str:
    return "data: " + bytes(response.body).decode() + "\n\n"


def _ident(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def _usage(samples: Samples, job: Job) -> tuple[S.Usage, list[str | None]]:
    """Token counts and finish reasons from the samples' meta (``prompt_tokens``,
    ``completion_tokens`` per sample, ``finish_reasons``), gathered from the job's batches
    when the joined samples do not carry them."""
    meta = samples.meta
    if "completion_tokens" not in meta and job.parts:
        meta = {"prompt_tokens": job.parts[0].meta.get("prompt_tokens", 0),
                "completion_tokens": [c for p in job.parts
                                      for c in p.meta.get("completion_tokens", [])],
                "finish_reasons": [r for p in job.parts
                                   for r in p.meta.get("finish_reasons", [])]}
    n = len(samples.texts or [])
    prompt = int(meta.get("prompt_tokens") or 0)
    completion = sum(int(c) for c in meta.get("completion_tokens") or [])
    reasons: list[str | None] = list(meta.get("finish_reasons") or [])
    reasons += [None] * (n - len(reasons))  # a model that does not say why it stopped
    # OpenAI counts the prompt once however many choices it gets
    return S.Usage(prompt_tokens=prompt, completion_tokens=completion,
                   total_tokens=prompt + completion), reasons


def _size_options(model: Any, options: dict[str, Any], size: str | None) -> dict[str, Any]:
    """``size`` ("WxH") as the model's height/width options, or checked against the shape it
    draws at; None or "auto" leaves the model's own size."""
    if size in (None, "auto"):
        return {}
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size or "")
    if not match:
        raise OpenAIError(400, f"size must be 'WIDTHxHEIGHT' such as '28x28', got {size!r}",
                          "size")
    width, height = int(match[1]), int(match[2])
    if "height" in options and "width" in options:
        return {"height": height, "width": width}
    shape = model.config.get("image_shape") if isinstance(model.config, dict) else None
    if shape and (int(shape[-1]), int(shape[-2])) == (width, height):
        return {}
    own = f"{shape[-1]}x{shape[-2]}" if shape else "its own size"
    raise OpenAIError(400, f"this model draws at {own} only, got size {size!r}", "size")


def openai_routes(state: App, read_json: ReadJson, serving: Serving) -> list[Route]:
    """The OpenAI-compatible routes over the app ``state``, reading bodies with the app's
    ``read_json`` (its limits, content type and depth checks) and a model's served formats
    with ``serving`` (``GET /v1/models`` itself is ``App.models``, via ``model_list``)."""
    routes = _Routes(state, read_json, serving)
    return [Route("/v1/chat/completions", openai_errors(routes.chat), methods=["POST"]),
            Route("/v1/completions", openai_errors(routes.completions), methods=["POST"]),
            Route("/v1/images/generations", openai_errors(routes.images), methods=["POST"])]


__all__ = ["openai_routes", "model_list", "openai_error", "OpenAIError"]
