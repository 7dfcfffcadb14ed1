"""The OpenAPI 3.1 schema of ``genzoo serve`` (served at ``/openapi.json``), written out by
hand: Starlette does not derive one, and the API is small enough to state exactly."""
from __future__ import annotations

from typing import Any

_ERROR = {"description": "one-line error",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def openapi_schema() -> dict[str, Any]:
    """The schema: paths, the request body, the error shape and bearer security."""
    from genzoo import __version__
    return {
        "openapi": "3.1.0",
        "info": {"title": "genzoo serve", "version": __version__,
                 "description": "Samples from genzoo's models; sample i of a request depends "
                                "only on (seed, i), whatever it was batched with."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": _schemas()},
        "security": [{"bearer": []}],
        "paths": _paths(),
    }


def _schemas() -> dict[str, Any]:
    """The bodies: the one-line error, a sample request and its JSON response."""
    request = {
        "n": {"type": "integer", "minimum": 1,
              "description": "samples (default 16 images, 1 text)"},
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "options": {"type": "object", "description": "the model's sampling options (GET "
                    "/v1/models/{name} lists them); image options take base64 PNG/JPEG strings"},
        "format": {"enum": ["png", "npz", "json"]},
        "stream": {"type": "boolean",
                   "description": "text models, n = 1: server-sent events (piece..., then done)"}}
    response = {
        "model": {"type": "string"}, "n": {"type": "integer"}, "seed": {"type": "integer"},
        "seconds": {"type": "number"}, "meta": {"type": "object"},
        "provenance": {"type": "object"},
        "images": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
        "texts": {"type": "array", "items": {"type": "string"}}}
    return {"Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "SampleRequest": {"type": "object", "additionalProperties": False,
                              "properties": request},
            "SampleResponse": {"type": "object", "properties": response}}


def _paths() -> dict[str, Any]:
    """The routes: health, the catalog, one model's card, and drawing samples."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "a catalog name from GET /v1/models"}
    samples_ok = {
        "description": "png: the grid; npz: images and meta as genzoo sample -o x.npz; json: "
                       "a PNG per sample or the texts; stream: text/event-stream",
        "content": {"image/png": {}, "application/octet-stream": {}, "text/event-stream": {},
                    "application/json": {"schema": {
                        "$ref": "#/components/schemas/SampleResponse"}}}}
    busy = {**_ERROR, "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    return {
        "/healthz": {"get": {"summary": "liveness and counters", "security": [],
                             "responses": {"200": {"description": "ok"}}}},
        "/v1/models": {"get": {"summary": "the served catalog (as genzoo list --json)",
                               "responses": {"200": {"description": "cards"}, **_errors(401)}}},
        "/v1/models/{name}": {"get": {
            "summary": "card, options schema, what the API serves", "parameters": [name],
            "responses": {"200": {"description": "the card"}, **_errors(401, 404)}}},
        "/v1/models/{name}/samples": {"post": {
            "summary": "draw samples", "parameters": [name],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SampleRequest"}}}},
            "responses": {"200": samples_ok, **_errors(401, 404, 413, 422, 504),
                          "503": busy}}},
    }
