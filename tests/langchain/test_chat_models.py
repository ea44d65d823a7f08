"""ChatOpenVINO on real inference (SmolLM2-135M GGUF): the LangChain surface, metadata, tools, errors.

The model runs under the exact-precision ``ov_config`` (``EXACT``): these tests compare generations
(stream with invoke, batch with one by one, a stop string with the full answer) and check the small
model's words, which at default precision change with the batch's shape (README, engine limits).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel
from tests._shared import EXACT
from typing_extensions import TypedDict

from langchain_openvino import ChatOpenVINO
from langchain_openvino._utils import to_core_messages
from openvino_llm import load_engine
from openvino_llm.errors import InvalidParameterError

pytestmark = pytest.mark.slow

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Japan": "Tokyo", "England": "London", "Russia": "Moscow", "Canada": "Ottawa",
}  # fmt: skip


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers and return the product."""
    return a * b


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Light snow in {city}."


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


class PersonDict(TypedDict):
    name: str
    age: int


class _TokenCollector(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


@pytest.fixture(scope="module")
def chat(smollm2_gguf: Path, cache_dir: Path) -> ChatOpenVINO:
    return ChatOpenVINO(model=smollm2_gguf, max_tokens=24, temperature=0, ov_config=EXACT)


@pytest.fixture(scope="module")
def chat40(smollm2_gguf: Path, cache_dir: Path) -> ChatOpenVINO:
    """Room for JSON and tool calls. (``chat.bind(...).with_structured_output`` would drop the bound kwargs.)"""
    return ChatOpenVINO(model=smollm2_gguf, max_tokens=40, temperature=0, ov_config=EXACT)


def _check_final_metadata(msg: AIMessage, chat: ChatOpenVINO, max_tokens: int) -> None:
    usage = msg.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= max_tokens
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = msg.response_metadata
    assert meta["model_name"] == chat.model_name != ""
    assert meta["finish_reason"] in ("stop", "length")
    timing = meta["timing"]
    assert 0 < timing["ttft_ms"] <= timing["total_ms"]
    assert timing["tpot_ms"] >= 0 and timing["throughput_tps"] > 0


# ---- invoke / stream / async / batch ------------------------------------------------------------


def test_invoke_answers_with_usage_and_timing(chat: ChatOpenVINO) -> None:
    msg = chat.invoke("What is the capital of France?")
    assert isinstance(msg, AIMessage)
    assert "Paris" in msg.content
    _check_final_metadata(msg, chat, 24)


def test_stream_yields_tokens_matching_invoke_and_fires_callbacks(chat: ChatOpenVINO) -> None:
    prompt = "Describe the city of Paris in two sentences."
    expected = chat.invoke(prompt).content
    collector = _TokenCollector()
    chunks = list(chat.stream(prompt, config={"callbacks": [collector]}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.content]) > 5  # token by token, not one blob
    assert "".join(c.content for c in chunks) == expected  # type: ignore[misc]
    assert "".join(collector.tokens) == expected
    # usage and metadata on the final chunk only, so that adding chunks up counts them once
    assert [c.usage_metadata is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].chunk_position == "last"
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    _check_final_metadata(full, chat, 24)


def test_invoke_with_streaming_true_sends_tokens_to_callbacks(smollm2_gguf: Path) -> None:
    streaming_chat = ChatOpenVINO(model=smollm2_gguf, max_tokens=12, temperature=0, streaming=True)
    collector = _TokenCollector()
    msg = streaming_chat.invoke("Name a fruit.", config={"callbacks": [collector]})
    assert len(collector.tokens) > 1
    assert "".join(collector.tokens) == msg.content
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] <= 12


async def test_astream_yields_multiple_chunks_matching_ainvoke(chat: ChatOpenVINO) -> None:
    prompt = "Describe the city of Rome in two sentences."
    expected = (await chat.ainvoke(prompt)).content
    chunks = [c async for c in chat.astream(prompt)]
    assert len([c for c in chunks if c.content]) > 5
    assert "".join(c.content for c in chunks) == expected  # type: ignore[misc]
    assert chunks[-1].usage_metadata is not None and chunks[-1].response_metadata["finish_reason"]


def _watch_in_flight(chat: ChatOpenVINO) -> tuple[list[int], threading.Event]:
    """Sample the engine's number of requests in flight until the event is set."""
    seen: list[int] = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(chat._engine.active_requests)
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()
    return seen, done


async def test_abatch_runs_eight_prompts_concurrently_with_independent_answers(chat: ChatOpenVINO) -> None:
    prompts = [f"What is the capital of {country}?" for country in CAPITALS]
    one_by_one = [(await chat.ainvoke(p)).content for p in prompts]
    seen, done = _watch_in_flight(chat)
    answers = await chat.abatch(prompts)
    done.set()
    # in full f32, batching changes nothing: each answer is the one its prompt gets alone
    assert [a.content for a in answers] == one_by_one
    assert len(set(one_by_one)) == len(prompts)
    for answer in answers:
        assert answer.usage_metadata is not None and answer.response_metadata["timing"]
    assert max(seen) >= 4, f"the requests were not batched (at most {max(seen)} in flight)"


async def test_abatch_structured_outputs_are_independent(chat40: ChatOpenVINO) -> None:
    people = [("Alice", 30), ("Bob", 41), ("Carol", 25), ("Emma", 19),
              ("Frank", 67), ("Grace", 34), ("Jack", 38), ("Olivia", 27)]  # fmt: skip
    prompts = [f"{name} is {age} years old." for name, age in people]
    extract = chat40.with_structured_output(Person)
    one_by_one = [await extract.ainvoke(p) for p in prompts]
    seen, done = _watch_in_flight(chat40)
    results = await extract.abatch(prompts)
    done.set()
    assert all(isinstance(r, Person) for r in results)  # constrained decoding: always the schema
    assert results == one_by_one
    assert max(seen) >= 4, f"the requests were not batched (at most {max(seen)} in flight)"


def test_batch_from_threads(chat: ChatOpenVINO) -> None:
    prompts = [f"What is the capital of {c}?" for c in list(CAPITALS)[:3]]
    answers = chat.batch(prompts)
    assert [a.content for a in answers] == [chat.invoke(p).content for p in prompts]


# ---- per-call parameters ---------------------------------------------------------------------------


def test_stop_per_call_bound_and_in_constructor(chat: ChatOpenVINO, smollm2_gguf: Path) -> None:
    prompt = "Describe the city of Paris in two sentences."
    full = chat.invoke(prompt).content
    assert isinstance(full, str)
    stop = full.split()[4]  # a word from the middle of the model's own answer
    expected = full[: full.index(stop)]
    assert chat.invoke(prompt, stop=[stop]).content == expected
    assert chat.bind(stop=[stop]).invoke(prompt).content == expected
    stopped = ChatOpenVINO(model=smollm2_gguf, max_tokens=24, temperature=0, stop=[stop], ov_config=EXACT).invoke(
        prompt
    )
    assert stopped.content == expected
    assert stopped.response_metadata["finish_reason"] == "stop"


def test_max_tokens_per_call_and_bound(chat: ChatOpenVINO) -> None:
    prompt = "Describe the city of Paris in two sentences."
    msg = chat.invoke(prompt, max_tokens=3)
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] == 3
    assert msg.response_metadata["finish_reason"] == "length"
    bound = chat.bind(max_tokens=2).invoke(prompt)
    assert bound.usage_metadata is not None and bound.usage_metadata["output_tokens"] == 2


def test_model_override_per_call(chat: ChatOpenVINO, tiny_model: Path) -> None:
    msg = chat.invoke("Hello", model=str(tiny_model), max_tokens=4)
    tiny_name = load_engine(tiny_model).model_name
    assert msg.response_metadata["model_name"] == tiny_name != chat.model_name
    assert chat._get_ls_params(model=str(tiny_model))["ls_model_name"] == str(tiny_model)


def test_objects_with_the_same_load_arguments_share_the_engine(chat: ChatOpenVINO, smollm2_gguf: Path) -> None:
    other = ChatOpenVINO(model=str(smollm2_gguf), temperature=0.7, max_tokens=5, ov_config=EXACT)
    assert other._engine is chat._engine is load_engine(smollm2_gguf, ov_config=EXACT)


def test_identifying_and_tracing_params(chat: ChatOpenVINO) -> None:
    assert chat._llm_type == "openvino-chat"
    assert chat._identifying_params["model_name"] == chat.model_name
    ls = chat._get_ls_params(stop=["x"])
    assert ls == {
        "ls_provider": "openvino", "ls_model_name": chat.model_name, "ls_model_type": "chat",
        "ls_temperature": 0, "ls_max_tokens": 24, "ls_stop": ["x"],
    }  # fmt: skip


# ---- cancellation --------------------------------------------------------------------------------


def _wait_idle(chat: ChatOpenVINO) -> int:
    deadline = time.monotonic() + 5
    while chat._engine.active_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    return chat._engine.active_requests


def test_breaking_out_of_stream_cancels_the_request(chat: ChatOpenVINO) -> None:
    for chunk in chat.stream("Write a long story about a dragon.", max_tokens=400):
        assert chunk.content is not None
        break
    assert _wait_idle(chat) == 0


async def test_closing_astream_cancels_the_request(chat: ChatOpenVINO) -> None:
    async with aclosing(chat.astream("Write a long story about a dragon.", max_tokens=400)) as stream:
        async for _ in stream:
            break
    deadline = time.monotonic() + 5
    while chat._engine.active_requests and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert chat._engine.active_requests == 0


# ---- tools ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool_choice", ["multiply", {"type": "function", "function": {"name": "multiply"}}, "any"])
def test_forced_tool_call_invoke_and_stream(chat40: ChatOpenVINO, tool_choice: Any) -> None:
    llm = chat40.bind_tools([multiply, get_weather], tool_choice=tool_choice)
    msg = llm.invoke("What is 6 times 7?")
    assert msg.content == ""
    calls = [(c["name"], c["args"]) for c in msg.tool_calls]
    if tool_choice == "any":
        # any tool: which one is the 135M model's judgment; the call is one of them, complete and valid
        assert len(calls) == 1 and calls[0] in (("multiply", {"a": 6, "b": 7}), ("get_weather", calls[0][1]))
        assert calls[0][0] == "multiply" or isinstance(calls[0][1].get("city"), str)
    else:
        assert calls == [("multiply", {"a": 6, "b": 7})]
    assert msg.tool_calls[0]["id"]
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    chunks = list(llm.stream("What is 6 times 7?"))
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert [(c["name"], c["args"]) for c in full.tool_calls] == calls  # exact precision: stream == invoke
    assert full.tool_call_chunks and full.usage_metadata is not None


def test_tool_choice_none_gives_text(chat: ChatOpenVINO) -> None:
    msg = chat.bind_tools([multiply], tool_choice="none").invoke("Say hello.")
    assert msg.tool_calls == [] and msg.content


def test_conversation_with_tool_history_in_any_order(chat: ChatOpenVINO) -> None:
    history = [
        SystemMessage("You are a calculator. Use the tools, then answer in one sentence."),
        HumanMessage("What is 123 times 457?"),
        AIMessage("", tool_calls=[{"name": "multiply", "args": {"a": 123, "b": 457}, "id": "c1"}]),
        ToolMessage("56211", tool_call_id="c1"),
    ]
    answer = chat.bind_tools([multiply], tool_choice="none").invoke(history)
    assert "56211" in answer.content  # the model could not know the product without the tool result
    # a conversation may end with an assistant message (no "last message must be human" rule)
    follow_up = chat.invoke([*history, AIMessage(answer.content), HumanMessage("Thanks!"), AIMessage("You")])
    assert isinstance(follow_up.content, str)


def test_message_conversion() -> None:
    converted = to_core_messages(
        [
            SystemMessage("sys"),
            HumanMessage(content=[{"type": "text", "text": "part one"}, "part two"]),
            AIMessage(
                content=[
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                ],
                tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1"}],
            ),
            ToolMessage("result", tool_call_id="c1"),  # no name: taken from the call it answers
            AIMessage("done"),
        ]
    )
    assert converted == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "part one\npart two"},
        {"role": "assistant", "content": "calling", "tool_calls": [{"id": "c1", "name": "f", "arguments": {"x": 1}}]},
        {"role": "tool", "content": "result", "tool_call_id": "c1", "name": "f"},
        {"role": "assistant", "content": "done"},
    ]


# ---- structured output ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_pydantic(chat40: ChatOpenVINO, method: str) -> None:
    extract = chat40.with_structured_output(Person, method=method)  # type: ignore[arg-type]
    assert extract.invoke("Alice is 30 years old.") == Person(name="Alice", age=30)
    streamed = list(extract.stream("Alice is 30 years old."))
    assert streamed and streamed[-1] == Person(name="Alice", age=30)


@pytest.mark.parametrize("schema", [PersonDict, Person.model_json_schema()], ids=["typeddict", "json_schema_dict"])
async def test_structured_output_dicts(chat40: ChatOpenVINO, schema: Any) -> None:
    extract = chat40.with_structured_output(schema)
    assert await extract.ainvoke("Alice is 30 years old.") == {"name": "Alice", "age": 30}


def test_structured_output_json_mode_and_include_raw(chat40: ChatOpenVINO) -> None:
    as_json = chat40.with_structured_output(Person.model_json_schema(), method="json_mode")
    assert isinstance(as_json.invoke("Return a JSON object about Alice, who is 30."), dict)
    raw = chat40.with_structured_output(Person, include_raw=True).invoke("Alice is 30 years old.")
    assert set(raw) == {"raw", "parsed", "parsing_error"}
    assert isinstance(raw["raw"], AIMessage) and raw["raw"].usage_metadata is not None
    assert json.loads(raw["raw"].content) == {"name": "Alice", "age": 30}
    assert raw["parsed"] == Person(name="Alice", age=30) and raw["parsing_error"] is None


# ---- bad input -----------------------------------------------------------------------------------


def test_unknown_tool_choice_lists_the_tools(chat: ChatOpenVINO) -> None:
    with pytest.raises(InvalidParameterError, match="divide") as err:
        chat.bind_tools([multiply, get_weather], tool_choice="divide")
    assert "multiply" in str(err.value) and "get_weather" in str(err.value)
    with pytest.raises(InvalidParameterError, match="tool_choice"):
        chat.bind_tools([multiply], tool_choice={"type": "function"})


@pytest.mark.parametrize("schema", [42, "Person", {"foo": "bar"}, [Person], Person(name="A", age=1)])
def test_structured_output_rejects_what_is_not_a_schema(chat: ChatOpenVINO, schema: Any) -> None:
    with pytest.raises(InvalidParameterError, match="schema"):
        chat.with_structured_output(schema)


def test_structured_output_rejects_unknown_method_and_arguments(chat: ChatOpenVINO) -> None:
    with pytest.raises(InvalidParameterError, match="method='xml'"):
        chat.with_structured_output(Person, method="xml")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="unsupported"):
        chat.with_structured_output(Person, foo=1)


def test_empty_messages_and_media_are_rejected(chat: ChatOpenVINO) -> None:
    with pytest.raises(InvalidParameterError, match="empty"):
        chat.invoke([])
    image_block = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    image = HumanMessage(content=[{"type": "text", "text": "What is this?"}, image_block])
    with pytest.raises(InvalidParameterError, match="'image_url' content block"):
        chat.invoke([image])


def test_bad_parameters_are_rejected(chat: ChatOpenVINO, smollm2_gguf: Path) -> None:
    with pytest.raises(InvalidParameterError, match="temperature"):
        ChatOpenVINO(model=smollm2_gguf, temperature=-1)
    with pytest.raises(InvalidParameterError, match="max_token"):
        ChatOpenVINO(model=smollm2_gguf, max_token=5)  # a typo is an error, not silently ignored
    with pytest.raises(InvalidParameterError, match="top_p"):
        chat.invoke("Hi", top_p=1.5)
    with pytest.raises(InvalidParameterError, match="frobnicate"):
        chat.invoke("Hi", frobnicate=True)
