"""The bodies ``genzoo serve`` reads and writes, declared once as pydantic models: the
OpenAI-compatible routes validate requests with them and build responses from them, and
``/openapi.json`` is generated from them (``genzoo.serve.openapi``).

Requests are strict (a float or a string where a whole number belongs is refused, never
rounded or parsed) and ignore fields they do not know: OpenAI's clients send fields genzoo has
no use for (``user``, ``logprobs: false``...), and refusing those would break the clients.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

#: Requests: strict types, unknown fields ignored (see the module docstring).
_REQUEST = ConfigDict(strict=True, extra="ignore")


class _Request(BaseModel):
    model_config = _REQUEST


# ---- OpenAI: errors ----------------------------------------------------------------------
class ErrorDetail(BaseModel):
    """What went wrong, in OpenAI's words: a one-line message, its type and code."""

    message: str
    type: str = "invalid_request_error"
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


# ---- OpenAI: models ----------------------------------------------------------------------
class ModelEntry(BaseModel):
    """One served model as OpenAI lists it; ``genzoo`` holds genzoo's own card fields and
    status (what ``genzoo list --json`` prints for it)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "genzoo"
    genzoo: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    """``GET /v1/models``: the served models in OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[ModelEntry]


# ---- OpenAI: text ------------------------------------------------------------------------
class TextPart(_Request):
    """A text part of a message's content (OpenAI's list form of ``content``)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    """One turn of a conversation; ``content`` is a string or a list of text parts."""

    role: str
    content: Union[str, list[TextPart], None]
    name: Optional[str] = None


class StreamOptions(_Request):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage counts."""

    include_usage: bool = False


class _Sampling(_Request):
    """The sampling fields chat and completions share (OpenAI's names and ranges)."""

    model: str
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    max_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    logprobs: Optional[bool] = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``. ``max_completion_tokens`` is the newer name of
    ``max_tokens``; ``tools`` and ``functions`` are not supported (refused when non-empty)."""

    messages: list[ChatMessage]
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    tools: Optional[list[Any]] = None
    functions: Optional[list[Any]] = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: a plain prompt; ``echo`` puts the prompt before the text."""

    prompt: str
    echo: bool = False


class Usage(BaseModel):
    """Token counts of a reply: the rendered prompt's and the generated ones."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The reply of a chat completion."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """One reply; ``finish_reason`` is "stop" (an end token or stop string) or "length"."""

    index: int
    message: AssistantMessage
    finish_reason: Optional[str]
    logprobs: None = None


class ChatCompletion(BaseModel):
    """The answer of ``POST /v1/chat/completions`` without ``stream``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: Optional[str] = None


class Delta(BaseModel):
    """A piece of a streamed reply: the role first, then pieces of content."""

    role: Optional[Literal["assistant"]] = None
    content: Optional[str] = None


class ChunkChoice(BaseModel):
    """One choice of a streamed chunk."""

    index: int = 0
    delta: Delta
    finish_reason: Optional[str] = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion (the stream ends ``[DONE]``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Optional[Usage] = None


class CompletionChoice(BaseModel):
    """One text of a completion."""

    index: int
    text: str
    finish_reason: Optional[str]
    logprobs: None = None


class Completion(BaseModel):
    """The answer of ``POST /v1/completions`` (also each streamed event, text in pieces)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Optional[Usage] = None


# ---- OpenAI: images ----------------------------------------------------------------------
class ImageGenerationRequest(_Request):
    """``POST /v1/images/generations``. ``prompt`` goes to a model's ``prompt`` option (a
    model without one takes only an empty prompt); ``size`` is "WxH" (the model's own shape
    unless it takes height and width options); ``seed`` and ``options`` (the model's other
    sampling options) are genzoo's extensions."""

    model: str
    prompt: str = ""
    n: int = Field(1, ge=1)
    size: Optional[str] = None
    response_format: Optional[str] = None
    seed: Optional[int] = Field(None, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    user: Optional[str] = None
    quality: Optional[str] = None
    style: Optional[str] = None


class ImageData(BaseModel):
    """One image: a base64-encoded PNG (with genzoo's provenance in its text chunks)."""

    b64_json: str
    revised_prompt: Optional[str] = None


class ImagesResponse(BaseModel):
    """The answer of ``POST /v1/images/generations``."""

    created: int
    data: list[ImageData]


# ---- genzoo's own routes -----------------------------------------------------------------
class OneLineError(BaseModel):
    """genzoo's own routes answer errors as ``{"error": "one line"}``."""

    error: str


class SampleRequest(BaseModel):
    """``POST /v1/models/{name}/samples`` (checked by ``genzoo.serve.formats``)."""

    model_config = ConfigDict(extra="forbid")

    n: Optional[int] = Field(None, ge=1, description="samples (default: the modality's, e.g. "
                             "16 images, 1 text; 1 for a one-sample format such as wav)")
    seed: int = Field(0, ge=0)
    options: dict[str, Any] = Field(
        default_factory=dict, description="the model's sampling options (GET "
        "/v1/models/{name} lists them); image options take base64 PNG/JPEG strings")
    format: Optional[str] = Field(None, description=(
        "one of the model's formats (GET /v1/models/{name}: serving.formats): json for every "
        "modality; each file suffix its modality writes (images: png grid, npz; audio: wav "
        "of one sample, npz; texts: txt, jsonl); default serving.default_format"))
    stream: bool = Field(False, description="models whose samples stream (text), n = 1: "
                                            "server-sent events (piece..., then done)")


class SampleResponse(BaseModel):
    """The JSON answer of a sampling request (``"format": "json"``): besides these fields,
    one list named for the modality's samples (``images``, ``audios``, ``texts`` ...; GET
    /v1/models/{name}: serving.sample.key) holding each sample's JSON value: a base64 file
    (PNG, WAV) or the value itself (a text)."""

    model_config = ConfigDict(extra="allow")

    model: str
    n: int
    seed: int
    seconds: float
    meta: dict[str, Any]
    provenance: dict[str, Any]


#: Every body, by the name ``/openapi.json`` files it under.
ALL_SCHEMAS: tuple[type[BaseModel], ...] = (
    ErrorResponse, ModelList, ChatCompletionRequest, ChatCompletion, ChatCompletionChunk,
    CompletionRequest, Completion, ImageGenerationRequest, ImagesResponse, OneLineError,
    SampleRequest, SampleResponse)
