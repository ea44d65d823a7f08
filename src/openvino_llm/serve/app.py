"""The OpenAI-compatible HTTP server: FastAPI routes over one shared :class:`~openvino_llm.Engine`.

Every connection's requests go to the same engine, whose scheduler batches them (continuous
batching). Routes (each also under ``/v3``, OpenVINO Model Server's paths)::

    POST /v1/chat/completions    chat, SSE streaming, tools, structured output, usage
    POST /v1/completions         one prompt (given to the model as a user message)
    POST /v1/embeddings          with --embedding-model
    POST /v1/rerank              with --rerank-model (OVMS / Cohere shape)
    GET  /v1/models
    POST /tokenize               vLLM's shape: token count of a prompt or a chat
    GET  /health                 never needs the API key
    GET  /metrics                Prometheus text format

Errors are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``): 400 for bad input (the
core's :class:`~openvino_llm.InvalidParameterError` message), 401, 404 for an unknown model or path,
413/429 for limits. Anything a client sends gets a 4xx, never a 500 or a traceback.

    >>> from openvino_llm.engine import load_engine
    >>> from openvino_llm.serve import create_app
    >>> app = create_app(load_engine("model.gguf"))           # then: uvicorn.run(app)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from ..engine import Engine
from ..engine.engine import DEFAULT_MAX_NEW_TOKENS
from ..errors import (
    ContextLengthExceededError,
    GenerationCancelledError,
    InvalidParameterError,
    ModelNotFoundError,
    OpenVINOLLMError,
    OutputTruncatedError,
)
from ..retrieval import EmbeddingModel, RerankModel
from ..types import Chunk, GenerationParams, Message, ToolSpec
from .limits import ConcurrencyGate, GuardMiddleware, Limits, resolve_api_key
from .metrics import ServerMetrics
from .schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    TokenizeRequest,
    error_body,
    new_id,
    now,
    usage_dict,
)

log = logging.getLogger("openvino_llm.serve")
_T = TypeVar("_T")

#: ``max_tokens`` of ``/v1/completions`` when the request sets none (OpenAI's default).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


class APIError(Exception):
    """An error answer: HTTP status, OpenAI error type and code, and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            error_body(self.message, self.type, self.code, self.param), status_code=self.status, headers=self.headers
        )


def api_error(error: BaseException) -> APIError:
    """The HTTP answer for an exception raised while serving a request."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, ContextLengthExceededError):
        return APIError(400, str(error), code="context_length_exceeded", param="messages")
    if isinstance(error, InvalidParameterError):
        return APIError(400, str(error), code="invalid_parameter")
    if isinstance(error, ModelNotFoundError):
        return APIError(404, str(error), code="model_not_found", param="model")
    if isinstance(error, OutputTruncatedError):
        return APIError(400, str(error), code="output_truncated", param="max_tokens")
    if isinstance(error, GenerationCancelledError):
        return APIError(503, str(error), "server_error", "cancelled")
    if isinstance(error, OpenVINOLLMError):  # e.g. a constrained tool call cut by max_tokens: the request's limits
        return APIError(422, str(error), code="generation_failed")
    log.exception("internal error while serving a request")
    return APIError(500, "Internal server error (see the server's log).", "server_error", "internal_error")


# ---- request translation --------------------------------------------------------------------------


def _text(content: str | list[Any] | None, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise APIError(
                400,
                f"{where}: content part of type {part.type!r} is not supported; this model takes text parts only.",
                param="messages",
            )
        parts.append(part.text)
    return "".join(parts)


def to_core_messages(messages: list[ChatMessage]) -> list[Message]:
    """OpenAI chat messages -> the core's :class:`~openvino_llm.Message` dicts (tool names looked up by id)."""
    out: list[Message] = []
    names: dict[str, str] = {}
    for i, m in enumerate(messages):
        role = "system" if m.role == "developer" else m.role
        msg: Message = {"role": role, "content": _text(m.content, f"messages[{i}]")}
        if m.tool_calls:
            if role != "assistant":
                raise APIError(400, f"messages[{i}] has tool_calls but role {role!r}.", param="messages")
            calls = []
            for j, call in enumerate(m.tool_calls):
                args: Any = call.function.arguments
                if isinstance(args, str):
                    try:
                        args = json.loads(args) if args.strip() else {}
                    except json.JSONDecodeError as e:
                        raise APIError(
                            400, f"messages[{i}].tool_calls[{j}].function.arguments is not JSON: {e}", param="messages"
                        ) from None
                if not isinstance(args, dict):
                    raise APIError(
                        400,
                        f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON object.",
                        param="messages",
                    )
                call_id = call.id or new_id("call_")
                names[call_id] = call.function.name
                calls.append({"id": call_id, "name": call.function.name, "arguments": args})
            msg["tool_calls"] = calls  # type: ignore[typeddict-item]
        if role == "assistant" and m.reasoning_content:
            msg["reasoning_content"] = m.reasoning_content
        if role == "tool":
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
            name = m.name or names.get(m.tool_call_id or "")
            if name:
                msg["name"] = name
        out.append(msg)
    return out


def _max_tokens(value: int | None, limits: Limits) -> int | None:
    """The request's ``max_tokens`` checked against the cap; when it sets none, the cap if it is below the default."""
    if value is None:
        return limits.max_tokens if limits.max_tokens < DEFAULT_MAX_NEW_TOKENS else None
    if not isinstance(value, bool) and value > limits.max_tokens:
        raise APIError(
            400,
            f"max_tokens={value} is more than this server allows ({limits.max_tokens}); ask for fewer tokens.",
            code="max_tokens_too_large",
            param="max_tokens",
        )
    return value


def _refuse_unsupported(req: ChatCompletionRequest | CompletionRequest) -> None:
    if req.n not in (None, 1):
        raise APIError(400, f"n={req.n} is not supported: this server returns one choice (n=1).", param="n")
    if req.logprobs:
        raise APIError(400, "logprobs are not supported by this server.", param="logprobs")
    if isinstance(req, CompletionRequest):
        if req.echo:
            raise APIError(400, "echo is not supported by this server.", param="echo")
        if req.suffix:
            raise APIError(400, "suffix (insertion) is not supported by this server.", param="suffix")
        if req.best_of not in (None, 1):
            raise APIError(400, "best_of is not supported by this server.", param="best_of")


def _sampling(req: ChatCompletionRequest | CompletionRequest, max_tokens: int | None) -> dict[str, Any]:
    stop = req.stop
    return {
        "max_new_tokens": max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "top_k": req.top_k,
        "repetition_penalty": req.repetition_penalty,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
        "stop": (stop,) if isinstance(stop, str) else tuple(stop or ()),
        "seed": req.seed,
        "min_new_tokens": req.min_tokens,
    }


def check_schema(schema: Any, param: str) -> None:
    """Refuse a schema that is not valid JSON Schema (its meta-schema) before it reaches the grammar compiler.

    openvino-genai fails the whole decoding step on a schema its grammar compiler rejects, and with it
    every request in the batch: one client's bad schema must not cut the others' answers.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise APIError(400, f"{param} is not a valid JSON schema: {e.message}", param=param) from None


def chat_params(req: ChatCompletionRequest, limits: Limits) -> GenerationParams:
    """The :class:`~openvino_llm.GenerationParams` of a chat request (raises :class:`APIError` / 400)."""
    _refuse_unsupported(req)
    max_tokens = _max_tokens(
        req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens, limits
    )
    tools: tuple[ToolSpec, ...] = tuple(
        {
            "name": t.function.name,
            "description": t.function.description or "",
            "parameters": t.function.parameters or {"type": "object", "properties": {}},
        }
        for t in req.tools or ()
    )
    choice = req.tool_choice
    tool_choice = choice if isinstance(choice, str) or choice is None else choice.function.name
    if tool_choice is not None and tool_choice != "none" and not tools:
        raise APIError(400, f"tool_choice={tool_choice!r} needs tools.", param="tool_choice")
    schema = None
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        schema = {"type": "object"}
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise APIError(400, "response_format json_schema needs json_schema.schema.", param="response_format")
        schema = fmt.json_schema.schema_
    if schema is not None:
        check_schema(schema, "response_format")
    for t in req.tools or ():
        if t.function.parameters is not None:
            check_schema(t.function.parameters, "tools")
    kwargs = dict(req.chat_template_kwargs or {})
    thinking = kwargs.pop("enable_thinking", None)  # vLLM's / OVMS's switch: the core's reasoning flag
    strict = any(t.function.strict for t in req.tools or ()) or None
    return GenerationParams(
        **_sampling(req, max_tokens),
        tools=tools,
        tool_choice=tool_choice if tools else None,
        json_schema=schema,
        parallel_tool_calls=req.parallel_tool_calls if tools else None,
        strict=strict,
        reasoning=thinking if isinstance(thinking, bool) else None,
        chat_template_kwargs=kwargs or None,
        tool_format=req.tool_format,
    )


def completion_prompt(req: CompletionRequest) -> str:
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise APIError(
                400, "prompt must be one string (a list of several prompts is not supported).", param="prompt"
            )
        prompt = prompt[0]
    return prompt


# ---- response translation -------------------------------------------------------------------------

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "stop", "stop")


def _tool_calls_json(chunk: Any, parallel: bool | None, *, with_index: bool = False) -> list[dict[str, Any]]:
    calls = list(chunk.tool_calls)
    if parallel is False:
        calls = calls[:1]
    out = []
    for i, c in enumerate(calls):
        item: dict[str, Any] = {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
        }
        if with_index:
            item = {"index": i, **item}
        out.append(item)
    return out


def _tool_call_delta_json(delta: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"index": delta.index}
    function: dict[str, str] = {"arguments": delta.arguments}
    if delta.id or delta.name:
        item.update(id=delta.id, type="function")
        function = {"name": delta.name, "arguments": delta.arguments}
    item["function"] = function
    return item


def _reasoning(obj: Any) -> str:
    """Reasoning text of a Chunk/Generation, where the core separates it (model families that think)."""
    value = getattr(obj, "reasoning", None) or getattr(obj, "reasoning_content", None)
    return value if isinstance(value, str) else ""


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


# ---- the app --------------------------------------------------------------------------------------


class ClientDisconnected(Exception):
    """The client left before its (non-streamed) answer was ready; its generation was cancelled."""


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(work: Awaitable[_T], request: Request | None) -> _T:
    """Await ``work``, cancelling it (so the engine drops the request) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    if request is None:
        return await task
    watch = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ClientDisconnected()
    return task.result()


class _MetricsMiddleware:
    """Counts every HTTP answer by route template and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(message: ASGIMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            label = path if path in self.paths else "other"  # bounded label values, whatever clients send
            self.metrics.requests.labels(label, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(label, f"http_{status}").inc()
            self.metrics.duration.labels(label).observe(time.perf_counter() - t0)


class _Server:
    """The state the routes share: engine, optional retrieval models, limits, metrics."""

    def __init__(
        self,
        engine: Engine,
        embedding_model: EmbeddingModel | None,
        rerank_model: RerankModel | None,
        limits: Limits,
        served_model_name: str | None,
    ) -> None:
        self.engine = engine
        self.embedding_model = embedding_model
        self.rerank_model = rerank_model
        self.limits = limits
        self.model_name = served_model_name or engine.model_name
        self.metrics = ServerMetrics()
        self.gate = ConcurrencyGate(limits.max_concurrent)
        self.created = now()

    # -- helpers --

    def check_model(self, requested: str | None, kind: Literal["llm", "embedding", "rerank"]) -> str:
        if kind == "llm":
            name: str | None = self.model_name
        elif kind == "embedding":
            name = self.embedding_model.model_name if self.embedding_model is not None else None
        else:
            name = self.rerank_model.model_name if self.rerank_model is not None else None
        if name is None:
            flag = "--embedding-model" if kind == "embedding" else "--rerank-model"
            raise APIError(
                404, f"This server has no {kind} model; start it with {flag}.", code="model_not_found", param="model"
            )
        if requested and requested != name:
            raise APIError(
                404,
                f"The model {requested!r} does not exist on this server; it serves {name!r} (see GET /v1/models).",
                code="model_not_found",
                param="model",
            )
        return name

    def enter(self) -> None:
        if not self.gate.try_enter():
            raise APIError(
                429,
                f"The server is busy ({self.gate.limit} requests in progress); retry in {self.limits.retry_after_s} s.",
                "rate_limit_exceeded",
                "too_many_requests",
                headers={"Retry-After": str(self.limits.retry_after_s)},
            )
        self.metrics.active.inc()

    def leave(self) -> None:
        self.gate.leave()
        self.metrics.active.dec()

    def model_cards(self) -> list[dict[str, Any]]:
        cards = [
            {
                "id": self.model_name,
                "object": "model",
                "created": self.created,
                "owned_by": "openvino-llm",
                "max_model_len": self.engine.context_window,
            }
        ]
        for extra in (self.embedding_model, self.rerank_model):
            if extra is not None:
                cards.append(
                    {"id": extra.model_name, "object": "model", "created": self.created, "owned_by": "openvino-llm"}
                )
        return cards

    # -- generation --

    async def first_chunk(self, stream: AsyncIterator[Chunk]) -> Chunk:
        """The stream's first chunk: validation errors surface here, as a proper HTTP status."""
        self.metrics.queued.inc()
        try:
            return await anext(stream)
        finally:
            self.metrics.queued.dec()

    def observe(self, final: Chunk) -> None:
        if final.usage is not None and final.timing is not None:
            self.metrics.observe_generation(
                final.usage.input_tokens, final.usage.output_tokens, final.timing.ttft_ms, final.timing.tpot_ms
            )

    async def run_stream(
        self,
        stream: AsyncIterator[Chunk],
        render: Callable[[Chunk], list[dict[str, Any]]],
        usage_chunk: Callable[[Chunk], dict[str, Any]] | None,
    ) -> StreamingResponse:
        """An SSE response over ``stream``; the request's slot is held until the stream ends or the client leaves."""
        try:
            first = await self.first_chunk(stream)
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            self.leave()
            raise

        async def events() -> AsyncIterator[bytes]:
            chunk = first
            try:
                while True:
                    for data in render(chunk):
                        yield _sse(data)
                    if chunk.is_final:
                        self.observe(chunk)
                        if usage_chunk is not None:
                            yield _sse(usage_chunk(chunk))
                        break
                    chunk = await anext(stream)
                yield _sse("[DONE]")
            except (OpenVINOLLMError, InvalidParameterError) as e:
                err = api_error(e)
                self.metrics.errors.labels("stream", err.type).inc()
                yield _sse(error_body(err.message, err.type, err.code))
                yield _sse("[DONE]")
            finally:
                await stream.aclose()  # type: ignore[attr-defined]  # a disconnect lands here: the request is dropped
                self.leave()

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    async def chat(self, req: ChatCompletionRequest, request: Request | None = None) -> Response:
        model = self.check_model(req.model, "llm")
        params = chat_params(req, self.limits)
        messages = to_core_messages(req.messages)
        cid, created = new_id("chatcmpl-"), now()
        parallel = req.parallel_tool_calls
        self.enter()
        if not req.stream:
            try:
                gen = await _unless_disconnected(self.engine.agenerate(messages, params), request)
            finally:
                self.leave()
            self.observe(Chunk("", gen.finish_reason, gen.usage, gen.timing))
            message: dict[str, Any] = {"role": "assistant", "content": gen.text}
            calls = _tool_calls_json(gen, parallel)
            if calls:
                message["tool_calls"] = calls
                message["content"] = gen.text or None
            reasoning = _reasoning(gen)
            if reasoning:
                message["reasoning_content"] = reasoning
            body = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": _finish(gen.finish_reason), "logprobs": None}
                ],
                "usage": usage_dict(gen.usage.input_tokens, gen.usage.output_tokens),
            }
            return JSONResponse(body)

        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        sent_role = False

        def frame(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            if include_usage:
                data["usage"] = None
            return data

        streamed_calls = False

        def render(chunk: Chunk) -> list[dict[str, Any]]:
            nonlocal sent_role, streamed_calls
            out = []
            if not sent_role:
                sent_role = True
                out.append(frame({"role": "assistant", "content": ""}))
            reasoning = _reasoning(chunk)
            if reasoning:
                out.append(frame({"reasoning_content": reasoning}))
            if chunk.text:
                out.append(frame({"content": chunk.text}))
            deltas = getattr(chunk, "tool_call_deltas", None) or ()
            if deltas:  # OpenAI's shape: id, type and name first, then argument pieces, by index
                streamed_calls = True
                out.append(frame({"tool_calls": [_tool_call_delta_json(d) for d in deltas]}))
            if chunk.is_final:
                calls = [] if streamed_calls else _tool_calls_json(chunk, parallel, with_index=True)
                if calls:
                    out.append(frame({"tool_calls": calls}))
                out.append(frame({}, _finish(chunk.finish_reason)))
            return out

        def usage_chunk(final: Chunk) -> dict[str, Any]:
            assert final.usage is not None
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage_dict(final.usage.input_tokens, final.usage.output_tokens),
            }

        return await self.run_stream(
            self.engine.astream(messages, params), render, usage_chunk if include_usage else None
        )

    async def completion(self, req: CompletionRequest, request: Request | None = None) -> Response:
        model = self.check_model(req.model, "llm")
        _refuse_unsupported(req)
        wanted = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
        max_tokens = _max_tokens(min(wanted, self.limits.max_tokens) if req.max_tokens is None else wanted, self.limits)
        prompt = completion_prompt(req)
        params = GenerationParams(**_sampling(req, max_tokens))
        cid, created = new_id("cmpl-"), now()
        self.enter()
        if not req.stream:
            try:
                gen = await _unless_disconnected(self.engine.agenerate(prompt, params), request)
            finally:
                self.leave()
            self.observe(Chunk("", gen.finish_reason, gen.usage, gen.timing))
            return JSONResponse(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "text": gen.text, "finish_reason": _finish(gen.finish_reason), "logprobs": None}
                    ],
                    "usage": usage_dict(gen.usage.input_tokens, gen.usage.output_tokens),
                }
            )
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def frame(text: str, finish: str | None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            }
            if include_usage:
                data["usage"] = None
            return data

        def render(chunk: Chunk) -> list[dict[str, Any]]:
            out = []
            if chunk.text:
                out.append(frame(chunk.text, None))
            if chunk.is_final:
                out.append(frame("", _finish(chunk.finish_reason)))
            return out

        def usage_chunk(final: Chunk) -> dict[str, Any]:
            assert final.usage is not None
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage_dict(final.usage.input_tokens, final.usage.output_tokens),
            }

        return await self.run_stream(
            self.engine.astream(prompt, params), render, usage_chunk if include_usage else None
        )

    async def embeddings(self, req: EmbeddingRequest) -> Response:
        model = self.check_model(req.model, "embedding")
        assert self.embedding_model is not None
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise APIError(
                400,
                "input must be a string or a non-empty list of strings (token ids are not supported; send text).",
                param="input",
            )
        dim = self.embedding_model.dimension
        if req.dimensions is not None and req.dimensions != dim:
            raise APIError(400, f"dimensions={req.dimensions}: this model's vectors have {dim}.", param="dimensions")
        self.enter()
        try:
            vectors = await self.embedding_model.aembed_documents(list(texts))  # type: ignore[arg-type]
        finally:
            self.leave()
        data = []
        for i, vec in enumerate(vectors):
            value: Any = vec
            if req.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        return JSONResponse(
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        )

    async def rerank(self, req: RerankRequest) -> Response:
        model = self.check_model(req.model, "rerank")
        assert self.rerank_model is not None
        docs = [d if isinstance(d, str) else d.text for d in req.documents]
        if req.top_n is not None and req.top_n < 1:
            raise APIError(400, f"top_n must be >= 1, got {req.top_n}.", param="top_n")
        self.enter()
        try:
            scored = await self.rerank_model.arerank(req.query, docs, req.top_n)
        finally:
            self.leave()
        results = []
        for index, score in scored:
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if req.return_documents:
                item["document"] = {"text": docs[index]}
            results.append(item)
        return JSONResponse({"id": new_id("rerank-"), "model": model, "results": results})

    async def tokenize(self, req: TokenizeRequest) -> Response:
        self.check_model(req.model, "llm")
        if (req.prompt is None) == (req.messages is None):
            raise APIError(400, "Pass either prompt or messages.", param="prompt")
        if req.prompt is not None:
            text = req.prompt
        else:
            text = self.engine.render(to_core_messages(req.messages or []))
        tokens = await asyncio.to_thread(self.engine.token_ids, text)
        body = {"count": len(tokens), "max_model_len": self.engine.context_window, "tokens": tokens}
        if req.messages is not None:
            body["prompt"] = text  # this server's extension: the chat template applied
        return JSONResponse(body)


def create_app(
    engine: Engine,
    *,
    embedding_model: EmbeddingModel | None = None,
    rerank_model: RerankModel | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    served_model_name: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``engine`` (and optional embedding/reranker models) over OpenAI's API.

    ``api_key`` (else ``$OPENVINO_LLM_API_KEY``) makes every route but ``/health`` require
    ``Authorization: Bearer <key>``. ``served_model_name`` is the ``model`` clients send (default: the
    engine's model name).
    """
    limits = limits or Limits()
    server = _Server(engine, embedding_model, rerank_model, limits, served_model_name)
    app = FastAPI(title="openvino-llm", version="1", summary="OpenAI-compatible API over a local OpenVINO model")
    app.state.server = server

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(ClientDisconnected)
    async def _gone(_: Request, exc: ClientDisconnected) -> Response:
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it

    @app.exception_handler(OpenVINOLLMError)
    async def _core_error(_: Request, exc: OpenVINOLLMError) -> JSONResponse:
        return api_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        param = next((str(e["loc"][1]) for e in errors if len(e.get("loc", ())) > 1), None)
        return APIError(400, "Invalid request: " + "; ".join(parts), param=param, code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return APIError(exc.status_code, str(exc.detail), type_, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return api_error(exc).response()

    api = APIRouter()

    @api.post("/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
        """Chat completion (OpenAI shape); ``stream: true`` answers with server-sent events."""
        return await server.chat(req, request)

    @api.post("/completions")
    async def completions(req: CompletionRequest, request: Request) -> Response:
        """Text completion (OpenAI shape); the prompt is given to the model as one user message."""
        return await server.completion(req, request)

    @api.post("/embeddings")
    async def embeddings(req: EmbeddingRequest) -> Response:
        """Embeddings of one or more texts (float or base64)."""
        return await server.embeddings(req)

    @api.post("/rerank")
    async def rerank(req: RerankRequest) -> Response:
        """Documents ranked by relevance to the query (OVMS / Cohere shape)."""
        return await server.rerank(req)

    @api.get("/models")
    async def models() -> dict[str, Any]:
        """The models this server serves."""
        return {"object": "list", "data": server.model_cards()}

    @api.get("/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        """One model's card."""
        for card in server.model_cards():
            if card["id"] == model_id:
                return card
        raise APIError(404, f"The model {model_id!r} does not exist on this server.", code="model_not_found")

    app.include_router(api, prefix="/v1")
    app.include_router(api, prefix="/v3")

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> Response:
        """Token count of a prompt or a chat (vLLM's shape), and the model's context window."""
        return await server.tokenize(req)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness; never needs the API key."""
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    app.add_middleware(GuardMiddleware, api_key=resolve_api_key(api_key), max_body_bytes=limits.max_body_bytes)
    paths = frozenset(
        [f"{prefix}{getattr(r, 'path', '')}" for prefix in ("/v1", "/v3") for r in api.routes]
        + [str(getattr(r, "path", "")) for r in app.routes]
    )
    app.add_middleware(_MetricsMiddleware, metrics=server.metrics, paths=paths)
    return app


def run_server(
    app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> None:  # pragma: no cover - exercised through the CLI
    """Serve ``app`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


__all__ = ["APIError", "create_app", "run_server"]
