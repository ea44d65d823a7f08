"""langchain-openai's ChatOpenAI and OpenAIEmbeddings against the live server (SmolLM2-135M, a real model)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import BaseModel
from tests.serve.conftest import LiveServer

from openvino_llm import GenerationParams
from openvino_llm.retrieval import EmbeddingModel

langchain_openai = pytest.importorskip("langchain_openai")
from langchain_core.tools import tool  # noqa: E402

pytestmark = pytest.mark.slow


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def llm(smol_server: LiveServer) -> langchain_openai.ChatOpenAI:
    return langchain_openai.ChatOpenAI(
        base_url=smol_server.url + "/v1",
        api_key="unused",
        model=smol_server.state.model_name,
        temperature=0,
        max_tokens=64,
        max_retries=0,
        timeout=120,
    )


def test_invoke_equals_the_engine(llm: langchain_openai.ChatOpenAI, smol_server: LiveServer) -> None:
    msg = llm.invoke("What is the capital of France?")
    expected = smol_server.state.engine.generate(
        "What is the capital of France?", GenerationParams(temperature=0, max_new_tokens=64)
    )
    assert msg.content == expected.text
    assert "Paris" in msg.content
    assert msg.usage_metadata["input_tokens"] == expected.usage.input_tokens
    assert msg.usage_metadata["output_tokens"] == expected.usage.output_tokens
    assert msg.response_metadata["finish_reason"] == expected.finish_reason


async def test_stream_and_astream(llm: langchain_openai.ChatOpenAI) -> None:
    reference = llm.invoke("Say hello").content
    chunks = list(llm.stream("Say hello"))
    assert len(chunks) > 2 and "".join(c.content for c in chunks) == reference
    parts = [c async for c in llm.astream("Say hello")]
    assert "".join(c.content for c in parts) == reference
    streaming = llm.model_copy(update={"stream_usage": True})
    total = None
    for c in streaming.stream("Say hello"):
        total = c if total is None else total + c
    assert total is not None and total.usage_metadata["output_tokens"] > 0


def test_tool_calls(llm: langchain_openai.ChatOpenAI) -> None:
    msg = llm.bind_tools([multiply], tool_choice="multiply").invoke("What is 6 times 7?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "multiply"
    assert msg.tool_calls[0]["args"] == {"a": 6, "b": 7}
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    chunks = list(llm.bind_tools([multiply], tool_choice="any").stream("What is 6 times 7?"))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert [c["name"] for c in total.tool_calls] == ["multiply"]
    assert total.tool_calls[0]["args"] == {"a": 6, "b": 7}


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(llm: langchain_openai.ChatOpenAI, method: str) -> None:
    # (method="json_mode" sends json_object without a schema: decoding is held to JSON, but a 135M model
    # then loops on keys of its own until max_tokens)
    result = llm.with_structured_output(Person, method=method).invoke("Alice is 30 years old.")
    assert isinstance(result, Person) and result.name == "Alice" and result.age == 30


def test_embeddings(tiny_server: LiveServer, embedder: EmbeddingModel) -> None:
    emb = langchain_openai.OpenAIEmbeddings(
        base_url=tiny_server.url + "/v1",
        api_key="unused",
        model=embedder.model_name,
        check_embedding_ctx_length=False,  # else it sends tiktoken token ids (and needs tiktoken's files)
    )
    texts = ["Paris is the capital of France.", "Bananas are yellow."]
    np.testing.assert_allclose(emb.embed_documents(texts), embedder.embed_documents(texts), atol=1e-6, rtol=0)
    np.testing.assert_allclose(emb.embed_query(texts[0]), embedder.embed_query(texts[0]), atol=1e-6, rtol=0)
