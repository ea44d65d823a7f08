"""Errors in OpenAI's shape, the API key, the limits, and a client leaving mid-stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.serve.conftest import API_KEY, LiveServer

from openvino_llm import GenerationParams
from openvino_llm.engine import Engine
from openvino_llm.serve import Limits, create_app

openai = pytest.importorskip("openai")

USER = [{"role": "user", "content": "hello there"}]


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
    return body["error"]


def _chat(server: LiveServer, **body: object) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json={"messages": USER, **body}, timeout=60)


def test_bad_input_is_a_400_with_the_core_message(tiny_server: LiveServer) -> None:
    err = _error(_chat(tiny_server, temperature=-1), 400)
    assert "temperature=-1" in err["message"] and "out of range" in err["message"]  # InvalidParameterError's text
    assert err["type"] == "invalid_request_error"
    assert "n=3" in _error(_chat(tiny_server, n=3), 400)["message"]
    assert "logprobs" in _error(_chat(tiny_server, logprobs=True), 400)["message"]
    assert _error(_chat(tiny_server, messages=[]), 400)["param"] == "messages"
    assert _error(_chat(tiny_server, messages=[{"role": "wizard", "content": "x"}]), 400)["param"] == "messages"
    assert "tool_choice" in _error(_chat(tiny_server, tool_choice="required"), 400)["message"]
    bad_args = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}],
        }
    ]
    assert "not JSON" in _error(_chat(tiny_server, messages=USER + bad_args), 400)["message"]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert "image_url" in _error(_chat(tiny_server, messages=image), 400)["message"]
    r = httpx.post(tiny_server.url + "/v1/chat/completions", content=b"{not json", timeout=10)
    _error(r, 400)
    r = httpx.post(tiny_server.url + "/v1/embeddings", json={"input": [1, 2, 3]}, timeout=10)
    assert "token ids" in _error(r, 400)["message"]


def test_prompt_longer_than_the_context_is_a_400(tiny_server: LiveServer, tiny_engine: Engine) -> None:
    long = "hello " * (tiny_engine.context_window + 10)
    err = _error(_chat(tiny_server, messages=[{"role": "user", "content": long}]), 400)
    assert err["code"] == "context_length_exceeded"
    assert f"context window is {tiny_engine.context_window} tokens" in err["message"]
    with pytest.raises(openai.BadRequestError, match="context window"):
        openai.OpenAI(base_url=tiny_server.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model=tiny_engine.model_name, messages=[{"role": "user", "content": long}], stream=True
        )


def test_unknown_model_path_and_method(tiny_server: LiveServer) -> None:
    err = _error(_chat(tiny_server, model="gpt-5"), 404)
    assert err["code"] == "model_not_found" and "gpt-5" in err["message"]
    client = openai.OpenAI(base_url=tiny_server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    _error(httpx.get(tiny_server.url + "/v1/nothing-here"), 404)
    _error(httpx.get(tiny_server.url + "/v1/chat/completions"), 405)


def test_max_tokens_cap(tiny_engine: Engine) -> None:
    with LiveServer(create_app(tiny_engine, api_key="", limits=Limits(max_tokens=8))) as server:
        err = _error(_chat(server, max_tokens=9), 400)
        assert err["code"] == "max_tokens_too_large" and "(8)" in err["message"]
        reply = _chat(server, temperature=0).json()  # none asked: the cap, being below the default
        assert reply["usage"]["completion_tokens"] == 8 and reply["choices"][0]["finish_reason"] == "length"


def test_api_key(tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENVINO_LLM_API_KEY", API_KEY)
    with LiveServer(create_app(tiny_engine)) as server:  # the key from the environment
        assert httpx.get(server.url + "/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            for path in ("/v1/models", "/metrics", "/openapi.json"):
                err = _error(httpx.get(server.url + path, headers=headers), 401)
                assert err["code"] == "invalid_api_key"
        r = httpx.post(server.url + "/v1/chat/completions", json={"messages": USER}, headers={"Authorization": "x"})
        _error(r, 401)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
        assert good.models.list().data[0].id == tiny_engine.model_name
        reply = good.chat.completions.create(model=tiny_engine.model_name, messages=USER, max_tokens=3)
        assert reply.usage.completion_tokens == 3


def test_body_size_limit(tiny_engine: Engine) -> None:
    with LiveServer(create_app(tiny_engine, api_key="", limits=Limits(max_body_bytes=2000))) as server:
        big = [{"role": "user", "content": "x" * 3000}]
        assert _error(_chat(server, messages=big), 413)["code"] == "request_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield json.dumps({"messages": big}).encode()

        r = httpx.post(server.url + "/v1/chat/completions", content=chunked(), timeout=10)
        _error(r, 413)
        assert _chat(server, max_tokens=2).status_code == 200


def _wait_until(condition, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_concurrency_limit_429_and_disconnect_frees_the_slot(tiny_engine: Engine) -> None:
    with LiveServer(create_app(tiny_engine, api_key="", limits=Limits(max_concurrent=1, retry_after_s=2))) as server:
        body = {"messages": USER, "max_tokens": 2000, "stream": True, "temperature": 0}
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", server.url + "/v1/chat/completions", json=body) as r,
        ):
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")  # the stream is running
            busy = _chat(server, max_tokens=2)
            err = _error(busy, 429)
            assert busy.headers["Retry-After"] == "2" and err["type"] == "rate_limit_exceeded"
            assert tiny_engine.active_requests == 1
        # the client left mid-stream: the request is dropped from the batch and its slot freed
        assert _wait_until(lambda: tiny_engine.active_requests == 0 and server.state.gate.active == 0)
        assert _chat(server, max_tokens=2).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert 'status="429"' in metrics and "openvino_llm_requests_active 0.0" in metrics


def test_disconnect_during_a_long_generation_cancels_it(tiny_engine: Engine) -> None:
    """Without the disconnect the request would run 2000 tokens; it ends within a few steps instead."""
    with LiveServer(create_app(tiny_engine, api_key="")) as server:
        seen = threading.Event()

        def client() -> None:
            body = {"messages": USER, "max_tokens": 2000, "stream": True, "temperature": 0}
            with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
                for i, _ in enumerate(r.iter_lines()):
                    if i == 5:
                        seen.set()
                        return

        t = threading.Thread(target=client)
        t.start()
        assert seen.wait(30)
        t.join(10)
        t0 = time.monotonic()
        assert _wait_until(lambda: tiny_engine.active_requests == 0, timeout=10)
        assert time.monotonic() - t0 < 5
        # and the engine still answers exactly as before
        expected = tiny_engine.generate("hello there", GenerationParams(temperature=0, max_new_tokens=6)).text
        assert _chat(server, max_tokens=6, temperature=0).json()["choices"][0]["message"]["content"] == expected


def test_cli_serve_parser() -> None:
    from openvino_llm.cli import build_parser

    args = build_parser().parse_args(["serve", "m.gguf", "--port", "0", "--api-key", "k", "--max-concurrent", "3"])
    assert (args.model, args.host, args.port, args.api_key, args.max_concurrent) == ("m.gguf", "127.0.0.1", 0, "k", 3)
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"  # loopback unless told otherwise


def test_cli_serve_runs_a_server(tiny_model: Path, tmp_path: Path) -> None:
    """The real command in a subprocess: loopback, the key from the flag, a chat answered."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "openvino_llm.cli", "serve", str(tiny_model), "--device", "CPU", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--api-key", API_KEY, "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        assert _wait_until(lambda: _health(url), timeout=120), proc.stdout.read() if proc.poll() is not None else ""
        assert httpx.get(url + "/v1/models").status_code == 401
        r = httpx.post(
            url + "/v1/chat/completions",
            json={"messages": USER, "max_tokens": 3},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _health(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_bad_schema_is_refused_and_does_not_cut_other_answers(tiny_server: LiveServer, tiny_engine: Engine) -> None:
    """openvino-genai fails the whole batch step on a schema its grammar compiler rejects: refused up front."""
    expected = tiny_engine.generate("hello there", GenerationParams(temperature=0, max_new_tokens=300)).text
    body = {"messages": USER, "max_tokens": 300, "temperature": 0, "stream": True}
    with httpx.stream("POST", tiny_server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        first = next(lines)
        bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
        err = _error(_chat(tiny_server, response_format=bad, max_tokens=5), 400)
        assert err["param"] == "response_format" and "nonsense" in err["message"]
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": 3}}}
        assert _error(_chat(tiny_server, tools=[tool], max_tokens=5), 400)["param"] == "tools"
        events = [first, *lines]
    text = "".join(
        json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
        for e in events
        if e.startswith("data: {") and json.loads(e[6:])["choices"]
    )
    assert text == expected


def test_a_client_leaving_a_non_streamed_request_cancels_it(tiny_engine: Engine) -> None:
    with LiveServer(create_app(tiny_engine, api_key="")) as server:
        body = {"messages": USER, "max_tokens": 2000, "temperature": 0}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=0.5))
        # the whole generation takes about 6 s here: it was dropped, not finished
        assert _wait_until(lambda: tiny_engine.active_requests == 0 and server.state.gate.active == 0, timeout=2)
        assert _chat(server, max_tokens=2).status_code == 200  # and the server goes on
