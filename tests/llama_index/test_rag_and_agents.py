"""``OpenVINO`` inside LlamaIndex on real models: RAG with ``OpenVINOEmbedding`` (and ``OpenVINORerank``),
a multi-turn chat engine, ``Settings.llm``, a ``FunctionAgent`` calling a real tool, and structured
output constrained to a Pydantic schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from pydantic import BaseModel
from workflows.errors import WorkflowRuntimeError

from llama_index_openvino import OpenVINO, OpenVINOEmbedding, OpenVINORerank

pytestmark = pytest.mark.slow

DOCS = [
    "The Eiffel Tower in Paris was finished in 1889 and is 330 metres tall.",
    "Bananas are yellow fruits that are rich in potassium.",
    "The Python programming language was created by Guido van Rossum.",
    "Mount Everest, 8849 metres high, is the highest mountain on Earth.",
]
EIFFEL = DOCS[0]


@pytest.fixture(scope="module")
def llm(smollm2_gguf: Path, cache_dir: Path) -> OpenVINO:
    return OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir, max_new_tokens=32, temperature=0)


@pytest.fixture(scope="module")
def embed_model(minilm_dir: Path, cache_dir: Path) -> OpenVINOEmbedding:
    return OpenVINOEmbedding(model=minilm_dir, device="CPU", cache_dir=str(cache_dir))


@pytest.fixture(scope="module")
def index(embed_model: OpenVINOEmbedding) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=embed_model)


class _Collector(BaseEventHandler):
    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "_Collector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def llm_inputs() -> Iterator[_Collector]:
    """Collects the instrumentation events fired while the test runs (root dispatcher)."""
    collector = _Collector(events=[])
    root = get_dispatcher()
    root.add_event_handler(collector)
    try:
        yield collector
    finally:
        root.event_handlers.remove(collector)


def _prompts(collector: _Collector) -> list[str]:
    """The text of each message list that was sent to an LLM's chat."""
    starts = [e for e in collector.events if isinstance(e, LLMChatStartEvent)]
    return ["\n".join(m.content or "" for m in e.messages) for e in starts]


# ---- RAG -----------------------------------------------------------------------------------------


def test_streaming_query_engine(index: VectorStoreIndex, llm: OpenVINO, llm_inputs: _Collector) -> None:
    query_engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=2)
    response = query_engine.query("When was the Eiffel Tower finished?")
    pieces = list(response.response_gen)
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces).strip()
    assert response.source_nodes[0].node.get_content() == EIFFEL  # retrieved by OpenVINOEmbedding
    prompts = _prompts(llm_inputs)
    assert len(prompts) == 1 and EIFFEL in prompts[0]  # and handed to the LLM as context


async def test_async_streaming_query_engine(index: VectorStoreIndex, llm: OpenVINO) -> None:
    query_engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=1)
    response = await query_engine.aquery("Who created the Python language?")
    pieces = [p async for p in response.async_response_gen()]
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces).strip()
    assert response.source_nodes[0].node.get_content() == DOCS[2]


def test_streaming_query_engine_with_rerank(
    index: VectorStoreIndex, llm: OpenVINO, minilm_dir: Path, cache_dir: Path, llm_inputs: _Collector
) -> None:
    from tests._cross_encoder import cached_cross_encoder

    rerank = OpenVINORerank(model=cached_cross_encoder(minilm_dir), device="CPU", cache_dir=str(cache_dir), top_n=1)
    query_engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=3, node_postprocessors=[rerank])
    response = query_engine.query("How tall is Mount Everest?")
    pieces = list(response.response_gen)
    assert "".join(pieces).strip()
    assert len(response.source_nodes) == 1  # the reranker cut the 3 retrieved nodes to its top_n
    kept = response.source_nodes[0].node.get_content()
    prompts = _prompts(llm_inputs)
    assert len(prompts) == 1 and kept in prompts[0]
    assert sum(doc in prompts[0] for doc in DOCS) == 1  # only the reranked node reached the LLM


def test_settings_llm_in_a_query_engine(index: VectorStoreIndex, llm: OpenVINO, embed_model: OpenVINOEmbedding) -> None:
    old_llm, old_embed = Settings._llm, Settings._embed_model
    try:
        Settings.llm = llm
        Settings.embed_model = embed_model
        query_engine = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS]).as_query_engine()
        assert query_engine._response_synthesizer._llm is llm
        assert str(query_engine.query("What colour are bananas?")).strip()
    finally:
        Settings._llm, Settings._embed_model = old_llm, old_embed


async def test_multi_turn_chat_engine(index: VectorStoreIndex, llm: OpenVINO) -> None:
    chat_engine = index.as_chat_engine(chat_mode="condense_plus_context", llm=llm, similarity_top_k=1)
    first = chat_engine.chat("Tell me about the Eiffel Tower.")
    assert first.response.strip()
    assert first.source_nodes[0].node.get_content() == EIFFEL
    second = await chat_engine.astream_chat("How tall is it?")
    pieces = [p async for p in second.async_response_gen()]
    assert "".join(pieces).strip()
    history = chat_engine.chat_history
    assert [m.role.value for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[1].content == first.response and history[3].content == "".join(pieces)


# ---- agents ---------------------------------------------------------------------------------------


@pytest.mark.real_model  # the answer using the tool's result is the model's judgment: SmolLM2 cannot make it
@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_calls_a_real_tool(real_model: str, streaming: bool) -> None:
    llm = OpenVINO(model=real_model, max_new_tokens=48, temperature=0)
    calls: list[tuple[int, int]] = []

    def multiply(a: int, b: int) -> int:
        """Multiply two integers and return the product."""
        calls.append((a, b))
        return a * b

    agent = FunctionAgent(
        tools=[multiply],
        llm=llm,
        system_prompt="You are a calculator. Use the multiply tool, then state its result.",
        initial_tool_choice="multiply",
        streaming=streaming,
    )
    handler = agent.run("What is 6 times 7?", max_iterations=4)
    results: list[ToolCallResult] = []
    try:
        async for ev in handler.stream_events():
            if isinstance(ev, ToolCallResult):
                results.append(ev)
        answer = await handler
    except WorkflowRuntimeError:  # max_iterations reached
        answer = None
    assert calls[:1] == [(6, 7)]  # the first call has the numbers from the question
    if len(calls) > 1:
        pytest.xfail(
            "model limit: after the tool's result Qwen2.5-Coder-0.5B-Instruct (greedy) calls the tool again "
            f"(with the same numbers or its own result: {calls}) instead of answering"
        )
    assert answer is not None
    assert calls == [(6, 7)]  # called once, with the numbers from the question
    assert [(r.tool_name, r.tool_kwargs, r.tool_output.content) for r in results] == [
        ("multiply", {"a": 6, "b": 7}, "42")
    ]
    # The final answer is the model's own turn after the tool result (it went back through the LLM).
    assert "42" in str(answer)


# ---- structured output ----------------------------------------------------------------------------


class Person(BaseModel):
    """A person mentioned in a text."""

    name: str
    age: int


PROMPT = PromptTemplate("Extract the person from this text as JSON: {text}")
TEXT = "Alice is 30 years old and lives in Lyon."


def test_structured_predict(llm: OpenVINO) -> None:
    person = llm.structured_predict(Person, PROMPT, text=TEXT)
    assert isinstance(person, Person)


async def test_astructured_predict(llm: OpenVINO) -> None:
    person = await llm.astructured_predict(Person, PROMPT, text=TEXT)
    assert isinstance(person, Person)


def test_stream_structured_predict(llm: OpenVINO) -> None:
    parts = list(llm.stream_structured_predict(Person, PROMPT, text=TEXT))
    assert len(parts) >= 2 and isinstance(parts[-1], Person)


async def test_astream_structured_predict(llm: OpenVINO) -> None:
    parts = [p async for p in await llm.astream_structured_predict(Person, PROMPT, text=TEXT)]
    assert len(parts) >= 2 and isinstance(parts[-1], Person)


async def test_as_structured_llm(llm: OpenVINO) -> None:
    structured = llm.as_structured_llm(Person)
    messages = [ChatMessage(role="user", content=f"Extract the person as JSON: {TEXT}")]
    response = structured.chat(messages)
    assert isinstance(response.raw, Person)
    assert Person.model_validate_json(response.message.content or "") == response.raw
    aresponse = await structured.achat(messages)
    assert isinstance(aresponse.raw, Person)
