"""The server through the official ``openai`` SDK and plain httpx, on real inference.

The tiny random Llama runs at exact precision, so what the server answers must equal what the
engine gives directly for the same request (greedy); SmolLM2 is used where meaning matters.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from tests._shared import MULTIPLY

from openvino_llm import GenerationParams
from openvino_llm.engine import Engine
from openvino_llm.retrieval import EmbeddingModel, RerankModel

openai = pytest.importorskip("openai")

PROMPT = "hello there, how are you"


@pytest.fixture(scope="module")
def client(tiny_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_chat_equals_the_engine(client: openai.OpenAI, tiny_engine: Engine) -> None:
    expected = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=20))
    reply = client.chat.completions.create(
        model=tiny_engine.model_name, messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=20
    )
    assert reply.object == "chat.completion"
    assert reply.model == tiny_engine.model_name
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason == "length"
    assert reply.usage.prompt_tokens == expected.usage.input_tokens
    assert reply.usage.completion_tokens == 20
    assert reply.usage.total_tokens == expected.usage.total_tokens


def test_stream_equals_the_engine_and_ends_with_usage(client: openai.OpenAI, tiny_engine: Engine) -> None:
    expected = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=24))
    chunks = list(
        client.chat.completions.create(
            model=tiny_engine.model_name,
            messages=[{"role": "user", "content": PROMPT}],
            temperature=0,
            max_completion_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # streamed, not one piece
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 24
    assert chunks[-1].usage.prompt_tokens == expected.usage.input_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stop_and_seed(client: openai.OpenAI, tiny_engine: Engine) -> None:
    base = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=30)).text
    stop = base[10:13]
    expected = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=30, stop=(stop,)))
    reply = client.chat.completions.create(
        model=tiny_engine.model_name,
        messages=[{"role": "user", "content": PROMPT}],
        temperature=0,
        max_tokens=30,
        stop=[stop],
    )
    assert reply.choices[0].message.content == expected.text
    assert stop not in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"

    def sampled(seed: int) -> str:
        return client.chat.completions.create(
            model=tiny_engine.model_name, messages=[{"role": "user", "content": PROMPT}], temperature=1.0,
            top_p=0.9, seed=seed, max_tokens=16,
        ).choices[0].message.content  # fmt: skip

    assert (
        sampled(7)
        == sampled(7)
        == tiny_engine.generate(PROMPT, GenerationParams(temperature=1.0, top_p=0.9, seed=7, max_new_tokens=16)).text
    )


def test_min_tokens_reaches_the_engine(client: openai.OpenAI, tiny_engine: Engine) -> None:
    """vLLM's ``min_tokens`` extension maps to the core's ``min_new_tokens`` (checked against max_tokens)."""
    messages = [{"role": "user", "content": PROMPT}]
    reply = client.chat.completions.create(
        model=tiny_engine.model_name, messages=messages, max_tokens=12, extra_body={"min_tokens": 12}
    )
    assert reply.usage.completion_tokens == 12
    with pytest.raises(openai.BadRequestError, match="min_new_tokens=13 is above max_new_tokens=12"):
        client.chat.completions.create(
            model=tiny_engine.model_name, messages=messages, max_tokens=12, extra_body={"min_tokens": 13}
        )


def test_forced_tool_call(client: openai.OpenAI, tiny_engine: Engine) -> None:
    tool = {"type": "function", "function": MULTIPLY}
    reply = client.chat.completions.create(
        model=tiny_engine.model_name,
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "multiply"}},
        max_tokens=200,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "multiply" and call.id
    args = json.loads(call.function.arguments)
    assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())

    streamed = list(
        client.chat.completions.create(
            model=tiny_engine.model_name,
            messages=[{"role": "user", "content": "What is 6 times 7?"}],
            tools=[tool],
            tool_choice="required",
            max_tokens=200,
            temperature=0,
            stream=True,
        )
    )
    deltas = [tc for c in streamed for tc in (c.choices[0].delta.tool_calls or [])]
    assert {d.index for d in deltas} == {0}
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "multiply"
    assert all(d.id is None and d.function.name is None for d in deltas[1:])  # then argument pieces only
    assert len(deltas) > 2  # the arguments streamed in pieces
    assert json.loads("".join(d.function.arguments for d in deltas)) == args  # greedy: the same call
    assert streamed[-1].choices[0].finish_reason == "tool_calls"


def test_tool_results_round_trip(client: openai.OpenAI, tiny_engine: Engine) -> None:
    """An assistant tool call and its result in the history reach the engine as the core's messages."""
    history = [
        {"role": "user", "content": "What is 6 times 7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "multiply", "arguments": '{"a": 6, "b": 7}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    call = {"id": "call_1", "name": "multiply", "arguments": {"a": 6, "b": 7}}
    core = [
        history[0],
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1", "name": "multiply"},
    ]
    params = GenerationParams(temperature=0, max_new_tokens=12, tools=(MULTIPLY,))
    expected = tiny_engine.generate(core, params)
    reply = client.chat.completions.create(
        model=tiny_engine.model_name,
        messages=history,
        tools=[{"type": "function", "function": MULTIPLY}],
        temperature=0,
        max_tokens=12,
    )
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.prompt_tokens == expected.usage.input_tokens


def test_completions(client: openai.OpenAI, tiny_engine: Engine) -> None:
    expected = tiny_engine.generate("Once upon a time", GenerationParams(temperature=0, max_new_tokens=16))
    reply = client.completions.create(model=tiny_engine.model_name, prompt="Once upon a time", temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text == expected.text  # OpenAI's default max_tokens: 16
    assert reply.usage.completion_tokens == 16
    streamed = list(
        client.completions.create(
            model=tiny_engine.model_name, prompt=["Once upon a time"], temperature=0, max_tokens=16, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == expected.text
    assert streamed[-1].choices[0].finish_reason == "length"


def test_embeddings_float_and_base64(client: openai.OpenAI, embedder: EmbeddingModel) -> None:
    texts = ["Paris is the capital of France.", "Bananas are yellow."]
    expected = np.asarray(embedder.embed_documents(texts))
    as_float = client.embeddings.create(model=embedder.model_name, input=texts, encoding_format="float")
    default = client.embeddings.create(model=embedder.model_name, input=texts)  # the SDK asks for base64
    single = client.embeddings.create(model=embedder.model_name, input=texts[1])
    assert [d.index for d in as_float.data] == [0, 1]
    np.testing.assert_allclose(np.asarray([d.embedding for d in as_float.data]), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray([d.embedding for d in default.data]), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(single.data[0].embedding), expected[1], rtol=0, atol=1e-6)


def test_rerank_ovms_shape(tiny_server, reranker: RerankModel) -> None:
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "The Eiffel tower is in Paris."]
    expected = reranker.rerank("capital of France", docs)
    for prefix in ("/v1", "/v3"):
        body = {"model": reranker.model_name, "query": "capital of France", "documents": docs, "top_n": 2}
        r = httpx.post(tiny_server.url + prefix + "/rerank", json={**body, "return_documents": True}, timeout=60)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [(x["index"], pytest.approx(x["relevance_score"], abs=1e-6)) for x in results] == expected[:2]
        assert [x["document"]["text"] for x in results] == [docs[i] for i, _ in expected[:2]]
    r = httpx.post(tiny_server.url + "/v1/rerank", json={"query": "q", "documents": [{"text": "a"}, {"text": "b"}]})
    assert r.status_code == 200 and sorted(x["index"] for x in r.json()["results"]) == [0, 1]
    assert "document" not in r.json()["results"][0]


def test_models_health_tokenize_and_v3_paths(tiny_server, tiny_engine: Engine, embedder: EmbeddingModel) -> None:
    models = httpx.get(tiny_server.url + "/v1/models").json()
    ids = [m["id"] for m in models["data"]]
    assert ids[0] == tiny_engine.model_name and embedder.model_name in ids
    assert models["data"][0]["max_model_len"] == tiny_engine.context_window
    assert httpx.get(tiny_server.url + "/v3/models").json() == models
    assert httpx.get(tiny_server.url + "/health").json() == {"status": "ok"}
    r = httpx.post(tiny_server.url + "/tokenize", json={"prompt": PROMPT})
    ids = tiny_engine.token_ids(PROMPT)
    assert r.json() == {"count": len(ids), "max_model_len": tiny_engine.context_window, "tokens": ids}
    r = httpx.post(
        tiny_server.url + "/v3/chat/completions",
        json={"model": tiny_engine.model_name, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 5},
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5


def test_metrics_count_requests_tokens_and_latency(tiny_server, tiny_engine: Engine) -> None:
    def value(text: str, name: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = httpx.get(tiny_server.url + "/metrics").text
    httpx.post(
        tiny_server.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 7, "temperature": 0},
        timeout=60,
    )
    httpx.post(tiny_server.url + "/v1/chat/completions", json={"messages": []})  # a 400
    after = httpx.get(tiny_server.url + "/metrics").text
    assert (
        value(after, "openvino_llm_generation_tokens_total") - value(before, "openvino_llm_generation_tokens_total")
        == 7
    )
    assert value(after, "openvino_llm_prompt_tokens_total") > value(before, "openvino_llm_prompt_tokens_total")
    assert value(after, "openvino_llm_time_to_first_token_seconds_count") == (
        value(before, "openvino_llm_time_to_first_token_seconds_count") + 1
    )
    assert value(after, "openvino_llm_time_per_output_token_seconds_count") > 0
    assert 'openvino_llm_requests_total{route="/v1/chat/completions",status="200"}' in after
    assert 'openvino_llm_errors_total{route="/v1/chat/completions",type="http_400"}' in after
    assert "openvino_llm_requests_active 0.0" in after
    assert "openvino_llm_requests_queued 0.0" in after
