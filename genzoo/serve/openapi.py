"""The OpenAPI 3.1 schema of ``genzoo serve`` (served at ``/openapi.json``). The bodies are
generated from the pydantic models in ``genzoo.serve.schemas`` (the same models the OpenAI
routes validate with), so the document cannot drift from the code; only the list of routes,
their summaries and status codes are stated here."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from genzoo.serve import schemas as S

_REF = "#/components/schemas/{model}"
#: Request bodies are documented as they are validated, responses as they are written.
_REQUESTS = (S.ChatCompletionRequest, S.CompletionRequest, S.ImageGenerationRequest,
             S.SampleRequest)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(model: type[BaseModel], *codes: int) -> dict[str, Any]:
    """Error responses with ``model``'s body; 503 also says when to retry."""
    out: dict[str, Any] = {str(code): _json(model, "one-line error") for code in codes}
    if "503" in out:
        out["503"] = {**out["503"], "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    return out


def component_schemas() -> dict[str, Any]:
    """Every body of ``schemas.ALL_SCHEMAS`` and the models they nest, by model name."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "validation" if m in _REQUESTS else "serialization") for m in S.ALL_SCHEMAS]
    _, top = models_json_schema(pairs, ref_template=_REF)
    return dict(top.get("$defs", {}))


def openapi_schema() -> dict[str, Any]:
    """The schema: paths, the bodies, the two error shapes and bearer security."""
    from genzoo import __version__
    return {
        "openapi": "3.1.0",
        "info": {"title": "genzoo serve", "version": __version__,
                 "description": "Samples from genzoo's models through genzoo's routes and "
                                "OpenAI's; sample i of a request depends only on (seed, i), "
                                "whatever it was batched with."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": component_schemas()},
        "security": [{"bearer": []}],
        "paths": {**_genzoo_paths(), **_openai_paths()},
    }


def _genzoo_paths() -> dict[str, Any]:
    """genzoo's own routes: health, one model's card, drawing samples."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "a model id from GET /v1/models"}
    samples_ok = _json(S.SampleResponse, "json: each sample's JSON value under the "
                       "modality's plural; a file format (serving.formats): the bytes genzoo "
                       "sample -o x.FORMAT writes, or one sample's file, in the modality's "
                       "content type; stream: text/event-stream")
    # the file formats' content types depend on the modality (image/png, audio/wav ...)
    samples_ok["content"].update({"*/*": {}, "text/event-stream": {}})
    return {
        "/healthz": {"get": {"summary": "liveness and counters", "security": [],
                             "responses": {"200": {"description": "ok"}}}},
        "/v1/models/{name}": {"get": {
            "summary": "card, options schema, what the API serves", "parameters": [name],
            "responses": {"200": {"description": "the card"},
                          **_errors(S.OneLineError, 401, 404)}}},
        "/v1/models/{name}/samples": {"post": {
            "summary": "draw samples", "parameters": [name],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref(S.SampleRequest)}}},
            "responses": {"200": samples_ok,
                          **_errors(S.OneLineError, 401, 404, 413, 422, 503, 504)}}},
    }


def _openai_paths() -> dict[str, Any]:
    """OpenAI's routes (docs/openai.md): models, chat, completions, images."""
    def post(summary: str, request: type[BaseModel], response: type[BaseModel],
             stream: bool) -> dict[str, Any]:
        """A POST route taking ``request`` and answering ``response`` (or a stream)."""
        ok = _json(response, "the answer" + ("; with stream: text/event-stream of chunks "
                                             "ending 'data: [DONE]'" if stream else ""))
        if stream:
            ok["content"]["text/event-stream"] = {}
        return {"post": {"summary": summary, "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref(request)}}},
            "responses": {"200": ok, **_errors(S.ErrorResponse, 400, 401, 404, 413, 503, 504)}}}

    return {
        "/v1/models": {"get": {
            "summary": "the served models in OpenAI's list shape (genzoo's card fields under "
                       "each entry's 'genzoo' key)",
            "responses": {"200": _json(S.ModelList, "the models"),
                          **_errors(S.OneLineError, 401)}}},
        "/v1/chat/completions": post("a reply to a conversation (models with a chat template)",
                                     S.ChatCompletionRequest, S.ChatCompletion, True),
        "/v1/completions": post("a continuation of a prompt (text models)",
                                S.CompletionRequest, S.Completion, True),
        "/v1/images/generations": post("images as base64 PNGs (image models)",
                                       S.ImageGenerationRequest, S.ImagesResponse, False),
    }
