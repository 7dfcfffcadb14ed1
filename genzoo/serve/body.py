"""Reading a request, bounded: the JSON body (type, size, time, depth) and the client's
hang-up. Every JSON route of ``genzoo serve`` reads through ``read_json``."""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect, Request

from genzoo.serve.formats import load_json


class HTTPError(Exception):
    """An HTTP error with a one-line message and optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


async def read_json(request: Request, limit: int, seconds: float = 120.0) -> Any:
    """The body as JSON: labelled ``application/json`` (else 415: a browser cannot send that
    cross-origin without asking first), at most ``limit`` bytes whatever Content-Length says
    (413), arrived within ``seconds`` (else 408: a client trickling its body cannot hold a
    connection open for ever), nested at most ``formats.MAX_JSON_DEPTH`` levels (422). A client
    that hangs up mid-body ends the request quietly (``ClientGone``). Every JSON route reads
    through here."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPError(415, "send the body as JSON with 'Content-Type: application/json'"
                          + (f" (got {kind[:60]!r})" if kind else ""))
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"the body is over {limit} bytes")
    try:
        body = await asyncio.wait_for(_body(request, limit), seconds)
    except asyncio.TimeoutError:
        raise HTTPError(408, f"the body did not arrive within {seconds:g} s") from None
    except ClientDisconnect:
        raise ClientGone() from None
    return load_json(body)


async def _body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class ClientGone(Exception):
    """The client hung up before its request was complete: nothing to answer, nothing to log
    beyond one debug line (a cheap way to flood a log otherwise)."""


async def disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body was read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
