"""Reasoning and streamed tool calls reach LangChain and LlamaIndex in their own types (real inference)."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from operator import add
from pathlib import Path

import pytest
from tests._shared import EXACT, MULTIPLY
from tests.chat._families import DEEPSEEK_R1

pytest.importorskip("langchain_openvino")
from langchain_core.messages import AIMessage, HumanMessage

from langchain_openvino import ChatOpenVINO
from langchain_openvino._utils import to_core_messages

QUESTION = "What is 6 times 7?"


@pytest.fixture(scope="module")
def smol_chat(smollm2_gguf: Path) -> ChatOpenVINO:
    return ChatOpenVINO(model=smollm2_gguf, max_tokens=160, temperature=0, ov_config=EXACT)


def test_langchain_streams_tool_call_chunks_that_add_up(smol_chat: ChatOpenVINO):
    bound = smol_chat.bind_tools([MULTIPLY], tool_choice="multiply", parallel_tool_calls=False, strict=True)
    chunks = list(bound.stream(QUESTION))
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) > 1  # the call streamed: name first, then argument pieces
    assert with_calls[0].tool_call_chunks[0]["name"] == "multiply" and with_calls[0].tool_call_chunks[0]["id"]
    assert all(tc["name"] is None for c in with_calls[1:] for tc in c.tool_call_chunks)
    full = reduce(add, chunks)
    [call] = full.tool_calls
    assert call["name"] == "multiply" and set(call["args"]) == {"a", "b"}
    assert full.response_metadata["finish_reason"] == "tool_calls"
    invoked = bound.invoke(QUESTION)  # the same call, whole (exact precision, greedy)
    assert [(c["name"], c["args"]) for c in invoked.tool_calls] == [(call["name"], call["args"])]


@pytest.fixture(scope="module")
def r1_chat(templated_dir: Callable[[str], Path]) -> ChatOpenVINO:
    return ChatOpenVINO(model=templated_dir(DEEPSEEK_R1), device="CPU", max_tokens=12, temperature=0, ov_config=EXACT)


def test_langchain_reasoning_content(r1_chat: ChatOpenVINO):
    message = r1_chat.invoke("Hi")
    reasoning = message.additional_kwargs["reasoning_content"]
    assert reasoning.strip() and message.content == ""
    assert [b["type"] for b in message.content_blocks] == ["reasoning"]
    chunks = list(r1_chat.stream("Hi"))
    assert sum(1 for c in chunks if c.additional_kwargs.get("reasoning_content")) > 1  # streamed as produced
    assert reduce(add, chunks).additional_kwargs["reasoning_content"] == reasoning
    v1 = r1_chat.model_copy(update={"output_version": "v1"}).invoke("Hi")
    assert v1.content == [{"type": "reasoning", "reasoning": reasoning}]


def test_langchain_reasoning_goes_back_to_the_core():
    history = [HumanMessage("Hi"), AIMessage("Hello!", additional_kwargs={"reasoning_content": "Greet back."})]
    expected = {"role": "assistant", "content": "Hello!", "reasoning_content": "Greet back."}
    assert to_core_messages(history)[1] == expected


def test_llamaindex_streams_partial_tool_calls(smollm2_gguf: Path):
    pytest.importorskip("llama_index_openvino")
    from llama_index.core.base.llms.types import ToolCallBlock
    from llama_index.core.tools import FunctionTool

    from llama_index_openvino import OpenVINO

    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    llm = OpenVINO(model=smollm2_gguf, device="CPU", max_new_tokens=160, temperature=0, ov_config=EXACT)
    tool = FunctionTool.from_defaults(multiply)
    responses = list(llm.stream_chat_with_tools([tool], user_msg=QUESTION, tool_required=True))
    partial = [r for r in responses[:-1] if any(isinstance(b, ToolCallBlock) for b in r.message.blocks)]
    assert partial, "the call shows up before the stream ends"
    assert all(b.tool_name == "multiply" for r in partial for b in r.message.blocks if isinstance(b, ToolCallBlock))
    [final] = llm.get_tool_calls_from_response(responses[-1])
    assert final.tool_name == "multiply" and set(final.tool_kwargs) == {"a", "b"}
    assert partial[0].message.blocks[-1].tool_call_id == final.tool_id  # one id from the first piece to the end


def test_llamaindex_thinking_block(templated_dir: Callable[[str], Path]):
    pytest.importorskip("llama_index_openvino")
    from llama_index.core.base.llms.types import ChatMessage, ThinkingBlock

    from llama_index_openvino import OpenVINO

    llm = OpenVINO(model=templated_dir(DEEPSEEK_R1), device="CPU", max_new_tokens=12, temperature=0, ov_config=EXACT)
    message = llm.chat([ChatMessage(role="user", content="Hi")]).message
    thinking = message.blocks[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.content and not message.content
    responses = list(llm.stream_chat([ChatMessage(role="user", content="Hi")]))
    deltas = [r.additional_kwargs.get("thinking_delta") for r in responses]
    assert sum(1 for d in deltas if d) > 1 and "".join(d or "" for d in deltas) == thinking.content
    assert responses[-1].message.blocks[0].content == thinking.content
