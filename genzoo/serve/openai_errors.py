"""OpenAI's error shape for the OpenAI-compatible routes: ``{"error": {"message", "type",
"param", "code"}}`` with the right 4xx status, whatever a handler raised (genzoo's one-line
errors, a refused request body, the queue being full, the time limit), never a traceback."""
from __future__ import annotations

import functools
import json
import logging
from typing import Awaitable, Callable

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from genzoo.errors import GenzooError, UnknownModelError
from genzoo.serve import schemas as S
from genzoo.serve.queue import QueueFull

log = logging.getLogger("genzoo.serve.openai")
Handler = Callable[[Request], Awaitable[Response]]

#: OpenAI's error type for each status genzoo answers with.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          403: "permission_error", 413: "invalid_request_error", 415: "invalid_request_error",
          408: "timeout", 422: "invalid_request_error", 429: "rate_limit_error",
          499: "invalid_request_error", 503: "server_error", 504: "timeout"}
_CODES = {404: "model_not_found", 413: "request_too_large", 503: "overloaded", 504: "timeout"}


class OpenAIError(Exception):
    """A request error answered in OpenAI's shape with ``status``, naming ``param``."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


def openai_error(status: int, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": {"message", "type", "param", "code"}}`` with ``status`` (one line)."""
    line = " ".join(str(message).split())[:500]
    detail = S.ErrorDetail(message=line, type=_TYPES.get(status, "server_error"), param=param,
                           code=_CODES.get(status))
    body = S.ErrorResponse(error=detail)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_of(e: BaseException) -> JSONResponse | None:
    """The OpenAI-shaped answer to a request error a handler raised; None for anything else
    (a client that hung up, a bug), which the app's own handlers deal with."""
    if isinstance(e, OpenAIError):
        return openai_error(e.status, str(e), e.param)
    if isinstance(e, ValidationError):
        return _invalid(e)
    if isinstance(e, QueueFull):
        return openai_error(503, str(e), headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, UnknownModelError):
        return openai_error(404, str(e), "model")
    if isinstance(e, GenzooError):  # a bad option or value, said in one line
        return openai_error(400, str(e))
    status = getattr(e, "status", None)
    if isinstance(status, int) and 400 <= status < 600:  # the app's HTTP errors (413, 504...)
        return openai_error(status, str(e), headers=getattr(e, "headers", None) or None)
    if isinstance(e, HTTPException):
        return openai_error(e.status_code, e.detail or "error")
    return None


def crash_event(e: BaseException) -> JSONResponse:
    """A stream's last event for a failure ``error_of`` does not know: logged, a 500 body."""
    log.error("internal error in an OpenAI stream", exc_info=e)
    return openai_error(500, "internal server error (the server log has the details)")


#: What a field takes, for the one-line message of a refused value.
_HINTS = {"stop": "a string or a list of strings", "max_tokens": "a whole number of tokens",
          "max_completion_tokens": "a whole number of tokens", "n": "a whole number",
          "seed": "a whole number >= 0", "temperature": "a number from 0 to 2",
          "top_p": "a number in (0, 1]", "stream": "true or false",
          "messages": 'a list of {"role": str, "content": str} objects',
          "options": "an object of the model's sampling options"}


def _invalid(e: ValidationError) -> JSONResponse:
    """A refused request body: the first wrong field, what it takes and what it got."""
    first = e.errors()[0]
    if not first["loc"]:
        return openai_error(400, "the body must be a JSON object such as "
                                 '{"model": "NAME", ...}')
    param = str(first["loc"][0])
    if first["type"] == "missing" and len(first["loc"]) == 1:
        return openai_error(400, f"{param} is required", param)
    given = first.get("input")
    shown = json.dumps(given, default=str) if given is not None else "null"
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    what = _HINTS.get(param, first["msg"].lower())
    return openai_error(400, f"{param} must be {what}, got {shown}"
                        if param in _HINTS else f"{param}: {what}", param)


def openai_errors(handler: Handler) -> Handler:
    """Answer the request errors ``handler`` raises in OpenAI's error shape; anything else
    (a client gone mid-body, a bug) goes on to the app's handlers (quiet, or a logged 500)."""
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:
            answer = error_of(e)
            if answer is None:
                raise
            return answer
    return wrapped
