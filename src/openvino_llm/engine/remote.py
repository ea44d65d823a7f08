"""A remote engine: the local :class:`~openvino_llm.Engine`'s interface over an OpenAI-compatible server.

Point it at ``openvino-llm serve`` (``http://host:8000/v1``), OpenVINO Model Server (``.../v3``) or any
server speaking OpenAI's chat API; ``generate``/``stream``/``agenerate``/``astream`` take the same
messages and :class:`~openvino_llm.GenerationParams` and give back the same
:class:`~openvino_llm.Generation` / :class:`~openvino_llm.Chunk` objects (usage, tool calls, timing
measured on the client), so code written for the local engine runs against a server unchanged.

    >>> from openvino_llm import GenerationParams
    >>> from openvino_llm.engine.remote import RemoteEngine
    >>> engine = RemoteEngine("http://127.0.0.1:8000/v1", api_key="...", timeout=60, max_retries=2)
    >>> engine.generate("What is the capital of France?", GenerationParams(temperature=0)).text

``timeout`` bounds each HTTP read (seconds), ``max_retries`` retries a request that could not connect
or got 429/502/503/504 (honouring ``Retry-After``) before any of its answer arrived. Closing a stream
(or cancelling its task) closes the connection, and the server drops the request. Needs ``httpx``
(the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from ..errors import (
    ContextLengthExceededError,
    GenerationTimeoutError,
    InvalidParameterError,
    ModelNotFoundError,
    OpenVINOLLMError,
    OutputTruncatedError,
)
from ..types import Chunk, Generation, GenerationParams, Message, Timing, ToolCall, ToolCallDelta, Usage
from .output import Collector

try:
    import httpx
except ImportError:  # pragma: no cover - the serve extra is not installed
    httpx = None  # type: ignore[assignment]

#: Read when no ``api_key`` is given (the same variable ``openvino-llm serve`` reads).
API_KEY_ENV = "OPENVINO_LLM_API_KEY"
#: ``context_window`` when the server does not report one (OVMS does not).
DEFAULT_CONTEXT_WINDOW = 2048
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_NO_FINAL = "The server's stream ended without a final event."


class RemoteEngine:
    """The :class:`~openvino_llm.Engine` interface over HTTP (OpenAI chat API, SSE streaming).

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (openvino-llm, vLLM) or ``.../v3`` (OVMS).
        model: the ``model`` to ask for; by default the server's first model (``GET /models``).
        api_key: sent as ``Authorization: Bearer``; default ``$OPENVINO_LLM_API_KEY``.
        timeout: seconds to wait for a connection or for the next piece of an answer.
        max_retries: retries of a request that failed to connect or got 429/502/503/504.
        context_window: the model's context window when the server does not report it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        context_window: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if httpx is None:
            raise InvalidParameterError('RemoteEngine needs httpx: pip install "openvino-llm[serve]".')
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidParameterError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}."
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidParameterError(f"max_retries must be an int >= 0, got {max_retries!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidParameterError(f"timeout must be a number of seconds > 0, got {timeout!r}.")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {"Accept": "application/json", **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._model = model
        self._card: dict[str, Any] | None = None
        self._context_window = context_window
        self._client = httpx.Client(timeout=self.timeout, headers=self._headers)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.default_params = GenerationParams()
        self.backend = "remote"
        self.device = "remote"

    def __repr__(self) -> str:
        return f"RemoteEngine({self.base_url!r}, model={self._model!r})"

    # ---- what the local engine exposes ---------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model asked for (by default the server's first one)."""
        if self._model is None:
            self._model = str(self._model_card()["id"])
        return self._model

    @property
    def context_window(self) -> int:
        """The model's context window as the server reports it (``max_model_len``), else the constructor's."""
        if self._context_window is None:
            card = self._model_card()
            value = card.get("max_model_len") or card.get("context_window")
            self._context_window = int(value) if isinstance(value, int) and value > 0 else DEFAULT_CONTEXT_WINDOW
        return self._context_window

    @property
    def active_requests(self) -> int:
        return 0

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` encodes to, asked of the server (``POST /tokenize``, openvino-llm and vLLM)."""
        return int(self._tokenize(text)["count"])

    def token_ids(self, text: str) -> list[int]:
        """The ids of the tokens ``text`` encodes to, asked of the server (``POST /tokenize``)."""
        return [int(i) for i in self._tokenize(text)["tokens"]]

    def render(self, messages: str | Sequence[Message], params: GenerationParams | None = None) -> str:
        """The prompt text the server gives the model for ``messages`` (openvino-llm serve's ``/tokenize``).

        ``params`` is accepted for the local engine's signature; the tool section is not rendered.
        """
        body = self._tokenize(None, messages=openai_messages(messages))
        if "prompt" not in body:
            raise OpenVINOLLMError(f"The server at {self.base_url} does not render chat templates.")
        return str(body["prompt"])

    def _tokenize(self, text: str | None, messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if messages is None and not isinstance(text, str):
            raise InvalidParameterError(f"text must be a string, got {type(text).__name__}.")
        root = self.base_url.rsplit("/", 1)[0] if self.base_url.endswith(("/v1", "/v3")) else self.base_url
        response = self._send(
            lambda: self._client.post(
                root + "/tokenize",
                json={"model": self.model_name, **({"prompt": text} if messages is None else {"messages": messages})},
            )
        )
        if response.status_code == 404:
            raise OpenVINOLLMError(f"The server at {self.base_url} cannot count tokens (no /tokenize route).")
        _raise_for_status(response, response.read())
        return dict(response.json())

    def generate(
        self,
        messages: str | Sequence[Message],
        params: GenerationParams | None = None,
        *,
        on_token: Callable[[str], Any] | None = None,
        timeout: float | None = None,
    ) -> Generation:
        """Generate a whole reply (streamed underneath, so ``on_token`` sees each piece).

        ``timeout``: seconds of wall time for the whole call; when passed the connection is closed
        (the server drops the request) and :class:`~openvino_llm.errors.GenerationTimeoutError` raised.
        """
        collector = Collector(on_token, missing_final=_NO_FINAL)
        for chunk in self.stream(messages, params, timeout=timeout):
            collector.add(chunk)
        return collector.generation()

    def stream(
        self, messages: str | Sequence[Message], params: GenerationParams | None = None, *, timeout: float | None = None
    ) -> Iterator[Chunk]:
        """Yield chunks as the server sends them; the last carries finish reason, usage, timing and tool calls."""
        body = self._body(messages, params)
        return self._stream_sync(body, _deadline(timeout), timeout)

    async def agenerate(
        self,
        messages: str | Sequence[Message],
        params: GenerationParams | None = None,
        *,
        on_token: Callable[[str], Any] | None = None,
        timeout: float | None = None,
    ) -> Generation:
        """Async twin of :meth:`generate`."""
        collector = Collector(on_token, missing_final=_NO_FINAL)
        async for chunk in self.astream(messages, params, timeout=timeout):
            collector.add(chunk)
        return collector.generation()

    async def astream(
        self, messages: str | Sequence[Message], params: GenerationParams | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`stream`; cancelling the task closes the connection (the server drops the request)."""
        body = self._body(messages, params)
        deadline = _deadline(timeout)
        client = self._aclient()
        response = await self._asend(
            lambda: client.send(
                client.build_request("POST", self.base_url + "/chat/completions", json=body), stream=True
            )
        )
        try:
            if response.status_code >= 400:
                _raise_for_status(response, await response.aread())
            parser = _SSEParser(self.model_name)
            try:
                async for line in response.aiter_lines():
                    for chunk in self._feed(parser, line, deadline, timeout):
                        yield chunk
                        if chunk.is_final:
                            return
            except httpx.TimeoutException as e:
                raise self._silent() from e
            yield parser.end()
        finally:
            await response.aclose()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # ---- internals -----------------------------------------------------------------------------

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                client = httpx.AsyncClient(timeout=self.timeout, headers=self._headers)
                self._aclients[loop] = client
            return client

    def _model_card(self) -> dict[str, Any]:
        if self._card is None:
            response = self._send(lambda: self._client.get(self.base_url + "/models"))
            _raise_for_status(response, response.read())
            cards = response.json().get("data") or []
            if not cards:
                raise ModelNotFoundError(f"The server at {self.base_url} serves no model.")
            wanted = self._model
            card = next((c for c in cards if c.get("id") == wanted), None) if wanted else cards[0]
            self._card = card or {"id": wanted}
        return self._card

    # The retry and stream logic without I/O, shared by the sync and async twins below.

    def _reconnect_delay(self, attempt: int, error: Exception) -> float:
        """Seconds to wait before connecting again; OpenVINOLLMError after the last attempt."""
        if attempt == self.max_retries:
            raise OpenVINOLLMError(f"Cannot connect to {self.base_url}: {error}") from error
        return _backoff(attempt, None)

    def _retry_delay(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before asking again for a retryable status (429/502/503/504); None: keep the answer."""
        if response.status_code in _RETRY_STATUS and attempt < self.max_retries:
            return _backoff(attempt, response.headers.get("retry-after"))
        return None

    def _no_answer(self) -> OpenVINOLLMError:
        return OpenVINOLLMError(f"{self.base_url} did not answer within {self.timeout} s.")

    def _silent(self) -> OpenVINOLLMError:
        return OpenVINOLLMError(f"{self.base_url} sent nothing for {self.timeout} s.")

    def _feed(self, parser: _SSEParser, line: str, deadline: float | None, timeout: float | None) -> list[Chunk]:
        """The chunks of one SSE line; GenerationTimeoutError once the call's ``timeout`` has passed."""
        if deadline is not None and time.monotonic() > deadline:
            raise self._timed_out(timeout)
        return parser.feed(line)

    def _timed_out(self, timeout: float | None) -> GenerationTimeoutError:
        return GenerationTimeoutError(
            f"{self.base_url} did not finish within timeout={timeout} s, so the request was cancelled. Pass a "
            "larger timeout (or None), fewer max_new_tokens, or a shorter prompt."
        )

    # The I/O twins.

    def _send(self, request: Callable[[], httpx.Response]) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response = request()
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                time.sleep(self._reconnect_delay(attempt, e))
                continue
            except httpx.TimeoutException as e:
                raise self._no_answer() from e
            delay = self._retry_delay(attempt, response)
            if delay is None:
                return response
            response.close()
            time.sleep(delay)
        raise AssertionError("unreachable")

    async def _asend(self, request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response = await request()
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                await asyncio.sleep(self._reconnect_delay(attempt, e))
                continue
            except httpx.TimeoutException as e:
                raise self._no_answer() from e
            delay = self._retry_delay(attempt, response)
            if delay is None:
                return response
            await response.aclose()
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _stream_sync(self, body: dict[str, Any], deadline: float | None, timeout: float | None) -> Iterator[Chunk]:
        response = self._send(
            lambda: self._client.send(
                self._client.build_request("POST", self.base_url + "/chat/completions", json=body), stream=True
            )
        )
        try:
            if response.status_code >= 400:
                _raise_for_status(response, response.read())
            parser = _SSEParser(self.model_name)
            try:
                for line in response.iter_lines():
                    for chunk in self._feed(parser, line, deadline, timeout):
                        yield chunk
                        if chunk.is_final:
                            return
            except httpx.TimeoutException as e:
                raise self._silent() from e
            yield parser.end()
        finally:
            response.close()  # closing early (break, generator closed) tells the server to drop the request

    def _body(self, messages: str | Sequence[Message], params: GenerationParams | None) -> dict[str, Any]:
        params = params or GenerationParams()
        if not isinstance(params, GenerationParams):
            raise InvalidParameterError(f"params must be a GenerationParams, got {type(params).__name__}.")
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for ours, theirs in (
            ("max_new_tokens", "max_tokens"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("repetition_penalty", "repetition_penalty"),
            ("presence_penalty", "presence_penalty"),
            ("frequency_penalty", "frequency_penalty"),
            ("seed", "seed"),
            ("min_new_tokens", "min_tokens"),
        ):
            value = getattr(params, ours)
            if value is not None:
                body[theirs] = value
        if params.stop:
            body["stop"] = list(params.stop)
        if params.tools:
            strict = {"strict": True} if params.strict else {}
            body["tools"] = [{"type": "function", "function": {**t, **strict}} for t in params.tools]
            if params.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = params.parallel_tool_calls
        kwargs = dict(params.chat_template_kwargs or {})
        if params.reasoning is not None:
            kwargs["enable_thinking"] = params.reasoning  # vLLM's and OVMS's switch (Qwen3's template variable)
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        if params.tool_format is not None:
            body["tool_format"] = params.tool_format  # openvino-llm serve's extension
        choice = params.tool_choice
        if choice in ("auto", "none", "required"):
            body["tool_choice"] = choice
        elif choice is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": choice}}
        if params.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": params.json_schema},
            }
        return body


def openai_messages(messages: str | Sequence[Message]) -> list[dict[str, Any]]:
    """The core's messages in OpenAI's chat format (tool calls with JSON-string arguments)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, dict)) or not messages:
        raise InvalidParameterError("messages must be a string or a non-empty list of {'role', 'content'} dicts.")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise InvalidParameterError(f"messages[{i}] must be a dict with 'role' and 'content'.")
        msg: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = [
                {
                    "id": c.get("id") or f"call_{i}_{j}",
                    "type": "function",
                    "function": {
                        "name": c["name"],
                        "arguments": c["arguments"]
                        if isinstance(c.get("arguments"), str)
                        else json.dumps(c.get("arguments") or {}),
                    },
                }
                for j, c in enumerate(m["tool_calls"])
            ]
        for key in ("tool_call_id", "name", "reasoning_content"):
            if m.get(key):
                msg[key] = m[key]  # type: ignore[literal-required]
        out.append(msg)
    return out


class _SSEParser:
    """OpenAI chat-completion SSE lines -> :class:`Chunk` objects, with client-side timing."""

    def __init__(self, model_name: str) -> None:
        self._model = model_name
        self._t0 = time.perf_counter()
        self._t_first: float | None = None
        self._pieces = 0
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._calls: dict[int, dict[str, str]] = {}
        self.done = False

    def feed(self, line: str) -> list[Chunk]:
        if not line.startswith("data:"):
            return []
        data = line[5:].strip()
        if data == "[DONE]":
            return [self.end()]
        try:
            event = json.loads(data)
        except json.JSONDecodeError as e:
            raise OpenVINOLLMError(f"The server sent a malformed event: {data[:200]!r}") from e
        if "error" in event:
            err = event["error"] if isinstance(event["error"], dict) else {"message": str(event["error"])}
            raise _error_for(400 if err.get("type") == "invalid_request_error" else 500, err)
        if event.get("model"):
            self._model = event["model"]
        if event.get("usage"):
            u = event["usage"]
            self._usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
        out = []
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
            pieces = []
            for call in delta.get("tool_calls") or ():
                index = int(call.get("index", len(self._calls)))
                slot = self._calls.setdefault(index, {"id": "", "name": "", "args": ""})
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
                pieces.append(
                    ToolCallDelta(index, call.get("id") or "", fn.get("name") or "", fn.get("arguments") or "")
                )
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
            if text or reasoning or pieces:
                if self._t_first is None:
                    self._t_first = time.perf_counter()
                self._pieces += 1
                out.append(Chunk(text=text, model_name=self._model, reasoning=reasoning, tool_call_deltas=pieces))
        return out

    def end(self) -> Chunk:
        """The final chunk (also when the stream ended without ``[DONE]``)."""
        if self.done:
            raise OpenVINOLLMError("The server's stream ended twice.")
        self.done = True
        now = time.perf_counter()
        calls = []
        for index in sorted(self._calls):
            slot = self._calls[index]
            try:
                args = json.loads(slot["args"]) if slot["args"].strip() else {}
            except json.JSONDecodeError as e:
                raise OpenVINOLLMError(
                    f"The server sent tool call arguments that are not JSON: {slot['args']!r:.200}"
                ) from e
            calls.append(ToolCall(id=slot["id"] or f"call_{index}", name=slot["name"], arguments=args))
        usage = self._usage or Usage(0, self._pieces)  # a server without stream usage: pieces ~ tokens
        first = self._t_first if self._t_first is not None else now
        ttft = (first - self._t0) * 1000
        total = (now - self._t0) * 1000
        decode = total - ttft
        n = max(usage.output_tokens - 1, 0)
        timing = Timing(
            ttft_ms=ttft,
            tpot_ms=decode / n if n else 0.0,
            throughput_tps=n / (decode / 1000) if n and decode > 0 else 0.0,
            total_ms=total,
        )
        finish = self._finish or "stop"
        if calls:
            finish = "tool_calls"
        if finish not in ("stop", "length", "tool_calls"):
            finish = "stop"
        return Chunk(
            text="",
            finish_reason=finish,
            usage=usage,
            timing=timing,
            tool_calls=calls,
            model_name=self._model,  # type: ignore[arg-type]
        )


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidParameterError(f"timeout must be a number of seconds > 0 (or None), got {timeout!r}.")
    return time.monotonic() + float(timeout)


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), 60.0)
        except ValueError:
            pass
    return min(0.5 * 2**attempt, 8.0)


def _error_for(status: int, err: dict[str, Any]) -> OpenVINOLLMError:
    message = str(err.get("message") or f"HTTP {status}")
    if err.get("code") == "context_length_exceeded":
        return ContextLengthExceededError(message)
    if err.get("code") == "output_truncated":
        return OutputTruncatedError(message)
    if status == 404:
        return ModelNotFoundError(message)
    if status in (400, 413):
        return InvalidParameterError(message)
    if status in (401, 403):
        return OpenVINOLLMError(f"The server refused the API key ({status}): {message}")
    return OpenVINOLLMError(f"The server answered {status}: {message}")


def _raise_for_status(response: httpx.Response, body: bytes) -> None:
    if response.status_code < 400:
        return
    try:
        payload = json.loads(body)
        err = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(err, dict):
            err = {"message": str(err or payload)}
    except (json.JSONDecodeError, UnicodeDecodeError):
        err = {"message": body[:300].decode("utf-8", "replace")}
    raise _error_for(response.status_code, err)


__all__ = ["API_KEY_ENV", "DEFAULT_CONTEXT_WINDOW", "RemoteEngine", "openai_messages"]
