"""The server's guards: API key, request body size, ``max_tokens`` cap and concurrent-request limit.

The key and the body size are checked by one ASGI middleware before any route runs (so a wrong key
or an oversized body never reaches the JSON parser); the concurrency limit is a counter the
generation routes take a slot from (429 with ``Retry-After`` when none is free).
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidParameterError
from .schemas import error_body

#: Environment variable read when no ``api_key`` is given.
API_KEY_ENV = "OPENVINO_LLM_API_KEY"

#: Paths served without a key.
OPEN_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server.

    - ``max_body_bytes``: larger request bodies get 413.
    - ``max_tokens``: a request asking for more new tokens gets 400; a request asking for none gets
      the model's default (at most 1024 tokens), or this cap if it is lower.
    - ``max_concurrent``: requests generating (or embedding/reranking) at once; more get 429 with
      ``Retry-After: retry_after_s``.
    """

    max_body_bytes: int = 4 * 1024 * 1024
    max_tokens: int = 4096
    max_concurrent: int = 64
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_tokens", "max_concurrent", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"Limits.{name} must be an int >= 1, got {value!r}.")


def resolve_api_key(api_key: str | None) -> str | None:
    """The key the server requires: ``api_key``, else ``$OPENVINO_LLM_API_KEY``, else none (open)."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return key or None


class ConcurrencyGate:
    """A non-blocking counter of requests in progress (one asyncio loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


class GuardMiddleware:
    """Checks ``Authorization: Bearer <key>`` (constant-time) and the body size of every HTTP request."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self._key = api_key.encode() if api_key else None
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._key is not None and scope.get("path", "") not in OPEN_PATHS and not self._authorized(scope):
            await _send_error(
                send,
                401,
                error_body(
                    "Missing or wrong API key: send 'Authorization: Bearer <key>' with the server's --api-key.",
                    "authentication_error",
                    "invalid_api_key",
                ),
                {"www-authenticate": "Bearer"},
            )
            return
        length = _header(scope, b"content-length")
        too_big = too_large_error(self._max)
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _send_error(
                    send, 400, error_body("Invalid Content-Length header.", "invalid_request_error", "bad_request")
                )
                return
            if declared > self._max:
                await _send_error(send, 413, too_big)
                return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # read the whole body (at most max bytes) before the app sees it, then hand it over in one piece
        body = await read_body(receive, self._max)
        if body is None:
            return
        if len(body) > self._max:
            await _send_error(send, 413, too_big)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # then the real channel: a client disconnect still reaches the app

        await self.app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self._key is not None
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._key)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, max_bytes: int) -> bytearray | None:
    """The whole request body, or None when the client disconnected first.

    Reading stops at the first message that takes the body beyond ``max_bytes`` (the caller answers
    413 when ``len(body) > max_bytes``), so an oversized body is never held in full.
    """
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > max_bytes or not message.get("more_body", False):
            return body


def too_large_error(max_bytes: int) -> dict[str, Any]:
    """The OpenAI-style error body of a 413 for a request body above ``max_bytes``."""
    return error_body(
        f"The request body is larger than this server's limit of {max_bytes} bytes.",
        "invalid_request_error",
        "request_too_large",
    )


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[Message]:
    """The two ASGI messages of a whole JSON response (``headers`` added to its content type and length)."""
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": payload, "more_body": False},
    ]


async def _send_error(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    for message in json_response(status, body, headers):
        await send(message)


__all__ = [
    "API_KEY_ENV",
    "ConcurrencyGate",
    "GuardMiddleware",
    "Limits",
    "json_response",
    "read_body",
    "resolve_api_key",
    "too_large_error",
]
