"""Request and response bodies of the OpenAI-compatible server (pydantic), in OpenAI's (and OVMS's) shapes.

Requests accept and ignore fields this server does not use (the OpenAI SDK sends some of them by
default); fields it cannot honour (``n`` > 1, ``logprobs``, ``echo``, ...) are refused with a 400 by the
routes, never silently ignored. Responses are built as plain dicts by the routes with the helpers here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


# ---- chat -----------------------------------------------------------------------------------------


class ContentPart(_Request):
    """One part of a message's content; only ``text`` parts are supported."""

    type: str
    text: str | None = None


class FunctionCall(_Request):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Request):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class FunctionSpec(_Request):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(_Request):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(_Request):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Request):
    include_usage: bool | None = None


class _Sampling(_Request):
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    min_tokens: int | None = None  # vLLM's extension: no end-of-sequence before this many tokens
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None
    user: str | None = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    top_logprobs: int | None = None
    #: vLLM's / OVMS's extension: extra chat template variables (``enable_thinking`` switches reasoning)
    chat_template_kwargs: dict[str, Any] | None = None
    #: this server's extension: the tool-call family, instead of the one detected from the template
    tool_format: str | None = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: ``prompt`` is one string (or a list holding one)."""

    prompt: str | list[str]
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None


# ---- embeddings, rerank, tokenize -----------------------------------------------------------------


class EmbeddingRequest(_Request):
    """``POST /v1/embeddings``: ``input`` is a string or a list of strings (token ids are refused)."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: int | None = None
    user: str | None = None


class RerankDocument(_Request):
    text: str


class RerankRequest(_Request):
    """``POST /v1/rerank`` (OVMS / Cohere shape)."""

    query: str
    documents: list[str | RerankDocument] = Field(min_length=1)
    model: str | None = None
    top_n: int | None = None
    return_documents: bool | None = None


class TokenizeRequest(_Request):
    """``POST /tokenize`` (vLLM's shape): how many tokens a prompt or a chat has for this model."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None


# ---- responses ------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """An OpenAI-style object id: ``chatcmpl-<hex>``, ``cmpl-<hex>``, ``call_<hex>``..."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage_dict(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "RerankRequest",
    "TokenizeRequest",
    "error_body",
    "new_id",
    "now",
    "usage_dict",
]
