"""ChatOpenVINO(base_url=...) runs on a server through RemoteEngine: same answers as the local engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests._shared import MULTIPLY
from tests.serve.conftest import API_KEY, LiveServer

from openvino_llm import GenerationParams
from openvino_llm.engine import Engine
from openvino_llm.serve import create_app

langchain_openvino = pytest.importorskip("langchain_openvino")


@pytest.fixture(scope="module")
def keyed_server(tiny_engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(tiny_engine, api_key=API_KEY)) as server:
        yield server


async def test_chat_openvino_with_base_url(keyed_server: LiveServer, tiny_engine: Engine) -> None:
    llm = langchain_openvino.ChatOpenVINO(
        base_url=keyed_server.url + "/v1", api_key=API_KEY, temperature=0, max_tokens=12, max_retries=1
    )
    assert llm.model_name == tiny_engine.model_name
    expected = tiny_engine.generate("hello there", GenerationParams(temperature=0, max_new_tokens=12))
    msg = llm.invoke("hello there")
    assert msg.content == expected.text
    assert msg.usage_metadata["output_tokens"] == expected.usage.output_tokens
    assert "".join(c.content for c in llm.stream("hello there")) == expected.text
    assert (await llm.ainvoke("hello there")).content == expected.text
    call = llm.bind_tools([MULTIPLY], tool_choice="multiply").invoke("What is 6 times 7?", max_tokens=200)
    local = tiny_engine.generate(
        "What is 6 times 7?",
        GenerationParams(temperature=0, max_new_tokens=200, tools=(MULTIPLY,), tool_choice="multiply"),
    )
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [(c.name, c.arguments) for c in local.tool_calls]
    with pytest.raises(Exception, match="API key"):
        langchain_openvino.ChatOpenVINO(base_url=keyed_server.url + "/v1", api_key="wrong", model="m").invoke("hi")


def test_llama_index_openvino_with_base_url(keyed_server: LiveServer, tiny_engine: Engine) -> None:
    llama_index_openvino = pytest.importorskip("llama_index_openvino")
    from llama_index.core.llms import ChatMessage

    llm = llama_index_openvino.OpenVINO(
        base_url=keyed_server.url + "/v1", api_key=API_KEY, temperature=0, max_new_tokens=12
    )
    assert llm.metadata.model_name == tiny_engine.model_name
    expected = tiny_engine.generate("hello there", GenerationParams(temperature=0, max_new_tokens=12))
    reply = llm.chat([ChatMessage(role="user", content="hello there")])
    assert reply.message.content == expected.text
    streamed = list(llm.stream_chat([ChatMessage(role="user", content="hello there")]))
    assert streamed[-1].message.content == expected.text
