"""Who may call the server: ASGI middlewares in front of every route (the bearer token, and
which browser pages may call it).

A page on another origin can make its visitor's browser send requests to a server on
loopback (with no token, the server cannot tell). So a request whose ``Origin`` header names
another origin than the server's own (the ``Host`` it was reached by) is refused with 403,
unless ``genzoo serve --allow-origin ORIGIN`` lists it: then it gets CORS headers and its
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before the
token check, because browsers send preflights without credentials. Every response carries
``X-Content-Type-Options: nosniff`` so that no reply is ever sniffed into script or HTML.
Requests without ``Origin`` (curl, the ``openai`` client, same-origin GETs) pass unchanged.
"""
from __future__ import annotations

import hmac
import json
from typing import Any, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Open without a token: the page and its files (they hold no data; the page asks for the
#: token), /healthz and the schema.
_OPEN_PATHS = ("/healthz", "/openapi.json", "/static/")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_METHODS = b"GET, POST, OPTIONS"
_HEADERS = b"Authorization, Content-Type"
_EXPOSED = b"X-Genzoo-Provenance, Retry-After"


def same_origin(origin: str, host: str | None) -> bool:
    """True when ``origin`` (``scheme://host[:port]``) names the host and port the request
    was sent to (its ``Host`` header): the gallery page's own fetches."""
    if not host:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.strip().lower()


def normalize_origin(origin: str) -> str:
    """``origin`` as browsers send it: lower-case scheme and host, no path or trailing slash
    (so ``--allow-origin https://App.example/`` matches ``https://app.example``)."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return origin.strip()  # "null" or a custom scheme: compared as given
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class BearerAuth:
    """ASGI middleware: every API route needs ``Authorization: Bearer TOKEN`` (compared in
    constant time); the page, its files and /healthz stay open."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self._token = app, token.encode()
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/" or \
                scope["path"].startswith(_OPEN_PATHS):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self._token):
            body = json.dumps({"error": "missing or wrong token: send 'Authorization: Bearer "
                                        "TOKEN'"}).encode()
            return await _send(send, 401, body, [(b"content-type", b"application/json"),
                                                 (b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class OriginGuard:
    """Refuses cross-origin requests not allowed, answers allowed ones' preflights, adds CORS
    headers for them and ``nosniff`` for everyone; ``state`` is the wrapped app's."""

    def __init__(self, app: ASGIApp, allow_origins: Iterable[str] = ()):
        self.app = app
        self.allowed = {normalize_origin(o) for o in allow_origins}
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        extra = [_NOSNIFF]
        if origin is not None and not same_origin(origin, headers.get("host")):
            if normalize_origin(origin) not in self.allowed:
                return await _refuse(origin, send)
            extra += [(b"access-control-allow-origin", origin.encode("latin-1")),
                      (b"vary", b"Origin"), (b"access-control-expose-headers", _EXPOSED)]
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                return await _preflight(extra, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(origin: str, send: Send) -> None:
    """403 with a one-line JSON error (no CORS headers: the page cannot even read it)."""
    shown = origin if len(origin) <= 80 else origin[:80] + "..."
    body = json.dumps({"error": f"requests from the origin {shown!r} are refused; start the "
                                "server with --allow-origin ORIGIN to allow a page there"})
    await _send(send, 403, body.encode(), [(b"content-type", b"application/json"), _NOSNIFF])


async def _preflight(extra: list[tuple[bytes, bytes]], send: Send) -> None:
    """204 telling the browser which methods and headers the allowed origin may use."""
    await _send(send, 204, b"", [*extra, (b"access-control-allow-methods", _METHODS),
                                 (b"access-control-allow-headers", _HEADERS),
                                 (b"access-control-max-age", b"600")])


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
