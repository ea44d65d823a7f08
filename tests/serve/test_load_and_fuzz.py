"""Bounded load (32 concurrent SSE clients, some leaving) and fuzzed request bodies (never a 5xx)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.serve.conftest import LiveServer

from openvino_llm import GenerationParams
from openvino_llm.engine import Engine
from openvino_llm.serve import Limits, create_app

PROMPTS = ["hello there", "tell me a story", "what is 2 plus 2", "the weather today is"]
MAX_TOKENS = 32


async def _client(http: httpx.AsyncClient, url: str, i: int, leave_after: int | None) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parts: list[str] = []
    finish = usage = None
    done = False
    async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if event["choices"]:
                delta = event["choices"][0]["delta"]
                parts.append(delta.get("content") or "")
                finish = event["choices"][0]["finish_reason"] or finish
            else:
                usage = event["usage"]
            if leave_after is not None and len(parts) >= leave_after:
                return {"left": True}
    return {"left": False, "text": "".join(parts), "finish": finish, "usage": usage, "done": done}


def test_32_concurrent_streams_some_leaving_every_answer_intact(tiny_engine: Engine) -> None:
    expected = {p: tiny_engine.generate(p, GenerationParams(temperature=0, max_new_tokens=MAX_TOKENS)) for p in PROMPTS}
    with LiveServer(create_app(tiny_engine, api_key="")) as server:

        async def main() -> list[dict[str, Any]]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=120, limits=limits) as http:
                return await asyncio.gather(
                    *(_client(http, server.url, i, 3 if i % 4 == 3 else None) for i in range(32))
                )

        results = asyncio.run(main())
        finished = [(i, r) for i, r in enumerate(results) if not r["left"]]
        assert len(finished) == 24 and sum(r["left"] for r in results) == 8
        for i, r in finished:
            want = expected[PROMPTS[i % len(PROMPTS)]]
            assert r["done"] and r["text"] == want.text, i
            assert r["finish"] == want.finish_reason
            assert r["usage"]["completion_tokens"] == want.usage.output_tokens
            assert r["usage"]["prompt_tokens"] == want.usage.input_tokens
        assert tiny_engine.active_requests == 0 or _settles(tiny_engine)
        assert server.state.gate.active == 0
        metrics = httpx.get(server.url + "/metrics").text
        assert 'openvino_llm_requests_total{route="/v1/chat/completions",status="200"} 32.0' in metrics


def _settles(engine: Engine) -> bool:
    import time

    deadline = time.monotonic() + 10
    while engine.active_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    return engine.active_requests == 0


# ---- fuzzing --------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
_TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}},
}
_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
_valid_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user"]), "content": st.text(max_size=30)}
)
#: a valid request (mostly: each field in its domain), then sometimes a field or two replaced by junk
_valid_body = st.fixed_dictionaries(
    {"model": st.just("tiny"), "messages": st.lists(_valid_message, min_size=1, max_size=3)},
    optional={
        "max_tokens": st.integers(1, 10),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0.05, 1),
        "top_k": st.integers(0, 50),
        "seed": st.integers(0, 2**31),
        "stop": st.lists(st.text(min_size=1, max_size=3), max_size=3),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "tools": st.just([_TOOL]),
        "tool_choice": st.sampled_from(["auto", "none", {"type": "function", "function": {"name": "f"}}]),
        "parallel_tool_calls": st.booleans(),
        "response_format": st.sampled_from(
            [
                {"type": "text"},
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": _SCHEMA}},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
            ]
        ),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
    },
)
_junk = st.dictionaries(
    st.sampled_from(
        ["model", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "tools", "tool_choice",
         "response_format", "n", "logprobs", "stream_options", "max_completion_tokens"]
    ),
    _json | st.integers(-5, 2**70) | st.text(max_size=5),
    max_size=2,
)  # fmt: skip
_chat_body = st.builds(lambda body, junk, use: {**body, **junk} if use else body, _valid_body, _junk, st.booleans())


@pytest.fixture(scope="module")
def fuzz_server(tiny_engine: Engine):  # type: ignore[no-untyped-def]
    app = create_app(tiny_engine, api_key="", served_model_name="tiny", limits=Limits(max_tokens=10))
    headers = {"content-type": "application/json"}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60, headers=headers) as http:
        yield http


def _assert_no_5xx(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    assert "Traceback" not in r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.rstrip().endswith("data: [DONE]")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_chat_body)
def test_fuzzed_chat_bodies_never_get_a_5xx(fuzz_server: httpx.Client, body: dict[str, Any]) -> None:
    _assert_no_5xx(fuzz_server.post("/v1/chat/completions", content=json.dumps(body)))  # NaN/inf pass too


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/v1/completions", "/v1/embeddings", "/v1/rerank", "/tokenize", "/v3/completions"]),
    body=st.dictionaries(
        st.sampled_from(["prompt", "input", "query", "documents", "model", "max_tokens", "top_n", "messages", "echo"]),
        _json | st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=3),
        max_size=5,
    ),
)
def test_fuzzed_other_bodies_never_get_a_5xx(fuzz_server: httpx.Client, path: str, body: dict[str, Any]) -> None:
    _assert_no_5xx(fuzz_server.post(path, content=json.dumps(body)))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_fuzzed_raw_bytes_never_get_a_5xx(fuzz_server: httpx.Client, raw: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _assert_no_5xx(fuzz_server.post("/v1/chat/completions", content=raw, headers=headers))
