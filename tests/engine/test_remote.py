"""RemoteEngine against a live ``openvino-llm serve`` app, and replayed from vcrpy cassettes.

The cassette tests replay ``tests/engine/cassettes/remote_engine.yaml`` (no server, no model) and check
the parsed results against ``remote_engine.expected.json``. To re-record both (a live server on the
tiny test model is started, and what it answers is checked against the engine directly)::

    OPENVINO_LLM_RECORD_CASSETTES=1 .venv/bin/python -m pytest tests/engine/test_remote.py -k cassette
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests._shared import EXACT, MULTIPLY

from openvino_llm import (
    ContextLengthExceededError,
    GenerationParams,
    InvalidParameterError,
    ModelNotFoundError,
    OpenVINOLLMError,
)
from openvino_llm.engine import Engine, load_engine
from openvino_llm.engine.remote import RemoteEngine
from openvino_llm.errors import GenerationTimeoutError

pytest.importorskip("fastapi", reason="the live tests need the serve extra")
from tests.serve.conftest import API_KEY, LiveServer

from openvino_llm.serve import Limits, create_app

CASSETTES = Path(__file__).parent / "cassettes"
RECORD = os.environ.get("OPENVINO_LLM_RECORD_CASSETTES") == "1"
PROMPT = "hello there, how are you"
GREEDY = GenerationParams(temperature=0, max_new_tokens=12)
TOOL = GenerationParams(temperature=0, max_new_tokens=200, tools=(MULTIPLY,), tool_choice="multiply")


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Engine:
    return load_engine(tiny_model, device="CPU", ov_config=EXACT)


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(engine, api_key="")) as live:
        yield live


@pytest.fixture(scope="module")
def remote(server: LiveServer) -> RemoteEngine:
    return RemoteEngine(server.url + "/v1", timeout=60, max_retries=0)


def test_interface_and_results_equal_the_local_engine(remote: RemoteEngine, engine: Engine) -> None:
    assert remote.model_name == engine.model_name
    assert remote.context_window == engine.context_window
    assert remote.count_tokens(PROMPT) == engine.count_tokens(PROMPT)
    assert remote.token_ids(PROMPT) == engine.token_ids(PROMPT)
    expected = engine.generate(PROMPT, GREEDY)
    seen: list[str] = []
    gen = remote.generate(PROMPT, GREEDY, on_token=seen.append)
    assert (gen.text, gen.finish_reason, gen.usage) == (expected.text, expected.finish_reason, expected.usage)
    assert "".join(seen) == gen.text and len(seen) > 1
    assert gen.timing.ttft_ms > 0 and gen.timing.total_ms >= gen.timing.ttft_ms
    chunks = list(remote.stream([{"role": "user", "content": PROMPT}], GREEDY))
    assert "".join(c.text for c in chunks) == expected.text
    assert [c.is_final for c in chunks].count(True) == 1 and chunks[-1].is_final
    assert chunks[-1].usage == expected.usage


async def test_async_twins(remote: RemoteEngine, engine: Engine) -> None:
    expected = engine.generate(PROMPT, GREEDY)
    gen = await remote.agenerate(PROMPT, GREEDY)
    assert gen.text == expected.text and gen.usage == expected.usage
    parts = [c async for c in remote.astream(PROMPT, GREEDY)]
    assert "".join(c.text for c in parts) == expected.text and parts[-1].finish_reason == "length"


def test_tool_calls_history_and_structured_output(remote: RemoteEngine, engine: Engine) -> None:
    gen = remote.generate("What is 6 times 7?", TOOL)
    local = engine.generate("What is 6 times 7?", TOOL)
    assert gen.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in gen.tool_calls] == [(c.name, c.arguments) for c in local.tool_calls]
    history = [
        {"role": "user", "content": "What is 6 times 7?"},
        {"role": "assistant", "content": "", "tool_calls": [gen.tool_calls[0].as_dict()]},
        {"role": "tool", "content": "42", "tool_call_id": gen.tool_calls[0].id, "name": "multiply"},
    ]
    params = GenerationParams(temperature=0, max_new_tokens=8, tools=(MULTIPLY,))
    assert remote.generate(history, params).text == engine.generate(history, params).text
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    structured = GenerationParams(temperature=0, max_new_tokens=40, json_schema=schema)
    assert remote.generate(PROMPT, structured).text == engine.generate(PROMPT, structured).text


def test_tool_call_deltas_stream_and_add_up(remote: RemoteEngine) -> None:
    chunks = list(remote.stream("What is 6 times 7?", TOOL))
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert deltas[0].name == "multiply" and deltas[0].id and len(deltas) > 2
    (call,) = chunks[-1].tool_calls
    assert json.loads("".join(d.arguments for d in deltas)) == call.arguments
    assert call.id == deltas[0].id and chunks[-1].finish_reason == "tool_calls"


def test_timeout_bounds_the_wall_time_and_cancels(remote: RemoteEngine, engine: Engine) -> None:
    t0 = time.monotonic()
    with pytest.raises(GenerationTimeoutError, match=r"timeout=0\.5"):
        remote.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=2000), timeout=0.5)
    assert time.monotonic() - t0 < 3
    deadline = time.monotonic() + 10
    while engine.active_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.active_requests == 0
    with pytest.raises(InvalidParameterError, match="timeout"):
        remote.stream(PROMPT, timeout=-1)


def test_errors_are_the_core_errors(server: LiveServer, remote: RemoteEngine, engine: Engine) -> None:
    with pytest.raises(ContextLengthExceededError, match="context window"):
        remote.generate("hello " * (engine.context_window + 10), GREEDY)
    with pytest.raises(InvalidParameterError, match="tool_choice"):
        remote.generate(PROMPT, GenerationParams(tool_choice="required"))
    with pytest.raises(ModelNotFoundError, match="gpt-5"):
        RemoteEngine(server.url + "/v1", model="gpt-5").generate(PROMPT, GREEDY)
    with pytest.raises(OpenVINOLLMError, match="Cannot connect"):
        RemoteEngine("http://127.0.0.1:9/v1", model="m", max_retries=1, timeout=2).generate(PROMPT)
    with pytest.raises(InvalidParameterError, match="base_url"):
        RemoteEngine("localhost:8000")
    with pytest.raises(InvalidParameterError, match="max_retries"):
        RemoteEngine("http://x/v1", max_retries=-1)


def test_api_key_and_closing_a_stream_cancels(engine: Engine) -> None:
    with LiveServer(create_app(engine, api_key=API_KEY)) as live:
        with pytest.raises(OpenVINOLLMError, match="API key"):
            RemoteEngine(live.url + "/v1", api_key="wrong", model="m").generate(PROMPT, GREEDY)
        remote = RemoteEngine(live.url + "/v1", api_key=API_KEY)
        stream = remote.stream(PROMPT, GenerationParams(temperature=0, max_new_tokens=2000))
        next(stream)
        assert engine.active_requests == 1
        stream.close()
        deadline = time.monotonic() + 10
        while engine.active_requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.active_requests == 0


def test_retries_a_429_after_retry_after(engine: Engine) -> None:
    limits = Limits(max_concurrent=1, retry_after_s=1)
    with LiveServer(create_app(engine, api_key="", limits=limits)) as live:
        holder = RemoteEngine(live.url + "/v1").stream(PROMPT, GenerationParams(max_new_tokens=2000))
        next(holder)  # the only slot is taken
        with pytest.raises(OpenVINOLLMError, match="429"):
            RemoteEngine(live.url + "/v1", max_retries=0).generate(PROMPT, GREEDY)

        def release_after_the_next_429() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if 'status="429"} 2.0' in httpx.get(live.url + "/metrics").text:
                    break
                time.sleep(0.05)
            holder.close()

        t = threading.Thread(target=release_after_the_next_429)
        t.start()
        gen = RemoteEngine(live.url + "/v1", max_retries=3).generate(PROMPT, GREEDY)
        t.join()
        assert gen.text == engine.generate(PROMPT, GREEDY).text


# ---- cassettes ------------------------------------------------------------------------------------


@pytest.fixture
def cassette_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if not RECORD:
        yield "http://127.0.0.1:9/v1"  # nothing listens there: every answer comes from the cassette
        return
    server = request.getfixturevalue("server")
    yield server.url + "/v1"


def _results(remote: RemoteEngine) -> dict[str, Any]:
    gen = remote.generate(PROMPT, GREEDY)
    chunks = list(remote.stream(PROMPT, GREEDY))
    tool = remote.generate("What is 6 times 7?", TOOL)
    try:
        remote.generate("hello " * 3000, GREEDY)
        error = ""
    except ContextLengthExceededError as e:
        error = str(e)
    return {
        "model": remote.model_name,
        "context_window": remote.context_window,
        "count": remote.count_tokens(PROMPT),
        "text": gen.text,
        "finish_reason": gen.finish_reason,
        "usage": [gen.usage.input_tokens, gen.usage.output_tokens],
        "stream": [c.text for c in chunks],
        "stream_final": [chunks[-1].finish_reason, chunks[-1].usage.output_tokens],
        "tool_calls": [[c.name, c.arguments] for c in tool.tool_calls],
        "context_error": error,
    }


def test_cassette_replay(cassette_url: str, request: pytest.FixtureRequest) -> None:
    vcr = pytest.importorskip("vcr")
    expected_path = CASSETTES / "remote_engine.expected.json"
    my_vcr = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="all" if RECORD else "none",
        match_on=("method", "path", "body"),  # not the port: the recording server's was random
        filter_headers=["authorization"],
    )
    with my_vcr.use_cassette("remote_engine.yaml"):
        results = _results(RemoteEngine(cassette_url, timeout=60, max_retries=0))
    if RECORD:
        local: Engine = request.getfixturevalue("engine")
        want = local.generate(PROMPT, GREEDY)
        assert (results["text"], results["usage"]) == (want.text, [want.usage.input_tokens, want.usage.output_tokens])
        expected_path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    expected = json.loads(expected_path.read_text())
    assert results == expected
    assert "".join(results["stream"]) == results["text"] and len(results["stream"]) > 1
    assert results["tool_calls"][0][0] == "multiply" and set(results["tool_calls"][0][1]) == {"a", "b"}
    assert "context window" in results["context_error"]


async def test_cassette_replay_async(cassette_url: str) -> None:
    vcr = pytest.importorskip("vcr")
    my_vcr = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="all" if RECORD else "none",
        match_on=("method", "path", "body"),
    )
    expected = json.loads((CASSETTES / "remote_engine.expected.json").read_text())
    with my_vcr.use_cassette("remote_engine_async.yaml"):
        remote = RemoteEngine(cassette_url, model=expected["model"], timeout=60, max_retries=0)
        gen = await remote.agenerate(PROMPT, GREEDY)
        parts = [c.text async for c in remote.astream(PROMPT, GREEDY)]
    assert gen.text == expected["text"] and "".join(parts) == expected["text"]
    assert [gen.usage.input_tokens, gen.usage.output_tokens] == expected["usage"]
