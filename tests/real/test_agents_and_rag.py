"""The real-model tier's judgment tests: agents that decide for themselves to call a tool, and RAG.

The agents get ``tool_choice`` left to the model (LangGraph's ``create_react_agent``, LlamaIndex's
``FunctionAgent`` without ``initial_tool_choice``): the model must call the right tool, read its result
and answer with it. The tool's result is made up (an order's courier and tracking number), so an
answer that contains it used the tool. RAG answers from a made-up fact that only the context holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import create_react_agent
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from workflows.errors import WorkflowRuntimeError

from langchain_openvino import ChatOpenVINO
from llama_index_openvino import OpenVINO, OpenVINOEmbedding

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

QUESTION = "Where is my order A-1042? Which courier has it?"
COURIER = "Falcon Freight"
TRACKING = "FF-90417"
SYSTEM = "You are a shop assistant. Use the tools to look things up, then answer the customer in one sentence."


def order_status(order_id: str) -> str:
    """Look up the shipping status of an order by its id (e.g. A-1000)."""
    return f"Order {order_id} shipped on 2026-11-28 with the courier {COURIER}, tracking number {TRACKING}."


def multiply(a: int, b: int) -> int:
    """Multiply two integers and return the product."""
    return a * b


LOOPS = (
    "model limit: after the tool's result, Qwen2.5-Coder-0.5B-Instruct (int4, greedy) calls the same tool again "
    "with the same arguments instead of answering (the Qwen2.5 tool prompt and <tool_response> are rendered right; "
    "llama.cpp greedy on the same Q4_K_M file, given the same rendered prompt, writes the same repeated call)"
)


def _used_the_result(answer: str) -> bool:
    return COURIER.split()[0] in answer or TRACKING in answer


def test_langgraph_react_agent_calls_the_tool_by_itself_and_answers_with_its_result(real_model: str) -> None:
    llm = ChatOpenVINO(model=real_model, temperature=0, max_tokens=128)
    agent = create_react_agent(llm, [tool(order_status), tool(multiply)], prompt=SYSTEM)
    messages = agent.invoke({"messages": [HumanMessage(QUESTION)]}, {"recursion_limit": 8})["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert calls and calls[0]["name"] == "order_status", messages  # the model chose the right tool by itself
    assert "A-1042" in calls[0]["args"]["order_id"]
    result = next(m for m in messages if isinstance(m, ToolMessage))
    assert result.content == order_status(calls[0]["args"]["order_id"])  # the tool ran on the model's arguments
    if len(calls) > 1 and all(c == {**calls[0], "id": c["id"]} for c in calls):
        pytest.xfail(LOOPS)
    assert len(calls) == 1, calls
    answer = messages[-1]
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert _used_the_result(str(answer.content)), answer.content


async def test_llamaindex_function_agent_calls_the_tool_by_itself_and_answers_with_its_result(
    real_model: str,
) -> None:
    llm = OpenVINO(model=real_model, temperature=0, max_new_tokens=128)
    agent = FunctionAgent(tools=[order_status, multiply], llm=llm, system_prompt=SYSTEM)  # no initial_tool_choice
    handler = agent.run(QUESTION, max_iterations=4)
    results: list[ToolCallResult] = []
    try:
        async for ev in handler.stream_events():
            if isinstance(ev, ToolCallResult):
                results.append(ev)
        answer = await handler
    except WorkflowRuntimeError as e:
        answer = None
        error = e
    assert results and results[0].tool_name == "order_status", results  # the model chose the right tool by itself
    assert "A-1042" in results[0].tool_kwargs["order_id"]
    assert COURIER in results[0].tool_output.content
    if answer is None and all(r.tool_kwargs == results[0].tool_kwargs for r in results):
        pytest.xfail(f"{LOOPS} ({error})")
    assert [r.tool_name for r in results] == ["order_status"], results
    assert _used_the_result(str(answer)), str(answer)


DOCS = [
    "The Quillon telescope array was switched on in 2031 on the plateau of Ardeval; its chief engineer is Maren Toft.",
    "Bananas are yellow fruits that are rich in potassium.",
    "The Python programming language was created by Guido van Rossum.",
    "Mount Everest, 8849 metres high, is the highest mountain on Earth.",
]


async def test_llamaindex_rag_answers_with_a_fact_only_the_context_has(real_model: str, minilm_dir: Path) -> None:
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=OpenVINOEmbedding(model=minilm_dir)
    )
    llm = OpenVINO(model=real_model, temperature=0, max_new_tokens=64)
    # One chunk of context: with two, the 0.5B model answers from the wrong one about as often as not.
    engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=1)
    response = await engine.aquery("Who is the chief engineer of the Quillon telescope array?")
    pieces = [p async for p in response.async_response_gen()]
    assert response.source_nodes[0].node.get_content() == DOCS[0]
    assert len([p for p in pieces if p]) > 1  # streamed
    assert "Maren Toft" in "".join(pieces)  # a made-up name: only the retrieved context has it
