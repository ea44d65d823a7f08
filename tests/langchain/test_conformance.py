"""ChatOpenVINO as generic LangChain code drives it (issue 14), on real inference with SmolLM2-135M.

Token counting with the model's tokenizer (``trim_messages(token_counter=llm)``), JSON mode without a
schema, an OpenAI-shaped ``response_format`` (also through ``create_agent(response_format=
ProviderStrategy(...))``), structured output cut at ``max_tokens``, and the standard ``timeout`` /
``max_retries`` / ``api_key`` parameters.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ProviderStrategy
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage, trim_messages
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from tests._shared import EXACT

from langchain_openvino import ChatOpenVINO
from openvino_llm.chat.schemas import minimal_json
from openvino_llm.errors import GenerationTimeoutError, InvalidParameterError, OutputTruncatedError

pytestmark = pytest.mark.slow


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


class Dossier(BaseModel):
    """A long record: more tokens than the tests give it."""

    full_name: str = Field(min_length=12)
    birthplace: str = Field(min_length=12)
    occupation: str = Field(min_length=12)
    employer: str = Field(min_length=12)
    hobbies: str = Field(min_length=12)
    biography: str = Field(min_length=40)


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers and return the product."""
    return a * b


@pytest.fixture(scope="module")
def chat(smollm2_gguf: Path, cache_dir: Path) -> ChatOpenVINO:
    return ChatOpenVINO(model=smollm2_gguf, max_tokens=40, temperature=0, ov_config=EXACT)


def _history() -> list[Any]:
    """Eleven messages: a system prompt and five question/answer turns."""
    messages: list[Any] = [SystemMessage("You are a helpful geography teacher.")]
    for country, capital in [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
                             ("Canada", "Ottawa")]:  # fmt: skip
        messages += [HumanMessage(f"What is the capital of {country}?"), AIMessage(f"The capital is {capital}.")]
    return messages


# ---- 4. token counting with the model's own tokenizer --------------------------------------------


def test_token_counts_are_the_models_own(chat: ChatOpenVINO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # LangChain's GPT-2 fallback would need the hub
    engine = chat._engine
    text = "OpenVINO runs naïve café models on x86_64: 3.14159!"
    assert chat.get_token_ids(text) == engine.token_ids(text)
    assert chat.get_num_tokens(text) == len(engine.token_ids(text)) == engine.count_tokens(text) > 10
    messages = [SystemMessage("Answer in one word."), HumanMessage("What is the capital of France?")]
    counted = chat.get_num_tokens_from_messages(messages)
    # exactly the prompt the model is given: chat template and generation prompt included
    assert counted == chat.invoke(messages, max_tokens=1).usage_metadata["input_tokens"]  # type: ignore[index]
    with_tools = chat.get_num_tokens_from_messages(messages, tools=[multiply])
    sent = chat.bind_tools([multiply]).invoke(messages, max_tokens=1).usage_metadata
    assert with_tools == sent["input_tokens"] > counted  # type: ignore[index]
    assert chat.get_num_tokens_from_messages([]) == 0


def test_trim_messages_with_the_model_as_token_counter(chat: ChatOpenVINO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    history = _history()
    whole = chat.get_num_tokens_from_messages(history)
    budget = whole // 2
    trimmed = trim_messages(history, max_tokens=budget, token_counter=chat, strategy="last", include_system=True)
    assert 3 <= len(trimmed) < len(history)
    assert isinstance(trimmed[0], SystemMessage) and trimmed[-1] == history[-1]
    assert chat.get_num_tokens_from_messages(trimmed) <= budget
    answer = chat.invoke([*trimmed, HumanMessage("And of Germany?")], max_tokens=8)
    assert answer.usage_metadata["input_tokens"] <= budget + 20  # type: ignore[index]


# ---- 2. JSON mode without a schema ----------------------------------------------------------------


def test_json_mode_chain_without_a_schema_returns_a_dict(chat: ChatOpenVINO) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer with a JSON object with the keys 'name' and 'age'."), ("human", "{text}")]
    )
    chain = prompt | chat.with_structured_output(method="json_mode")
    result = chain.invoke({"text": "Alice is 30 years old."})
    assert isinstance(result, dict) and result
    raw = (prompt | chat.with_structured_output(None, method="json_mode", include_raw=True)).invoke(
        {"text": "Bob is 41."}
    )
    assert raw["parsing_error"] is None and raw["parsed"] == json.loads(raw["raw"].content)
    with pytest.raises(InvalidParameterError, match="json_mode"):
        chat.with_structured_output(method="json_schema")


# ---- 5. response_format (OpenAI shape) and create_agent(ProviderStrategy) ------------------------


def test_response_format_json_schema_and_json_object(chat: ChatOpenVINO) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "Person", "schema": Person.model_json_schema()}}
    msg = chat.bind(response_format=schema).invoke("Alice is 30 years old.")
    assert json.loads(msg.content) == {"name": "Alice", "age": 30}  # type: ignore[arg-type]
    keys = SystemMessage("Answer with a JSON object with the keys 'name' and 'age'.")
    as_object = chat.invoke([keys, HumanMessage("Alice is 30 years old.")], response_format={"type": "json_object"})
    assert isinstance(json.loads(as_object.content), dict)  # type: ignore[arg-type]
    text = chat.invoke("Say hi.", response_format={"type": "text"}, max_tokens=4)
    assert isinstance(text.content, str) and text.content
    for bad in ({"type": "xml"}, {"type": "json_schema"}, "json"):
        with pytest.raises(InvalidParameterError, match="response_format"):
            chat.invoke("Hi", response_format=bad)


def test_create_agent_with_provider_strategy(chat: ChatOpenVINO) -> None:
    agent = create_agent(model=chat, tools=[], response_format=ProviderStrategy(Person))
    state = agent.invoke({"messages": [HumanMessage("Extract the person: Alice is 30 years old.")]})
    assert state["structured_response"] == Person(name="Alice", age=30)
    with_tools = create_agent(model=chat, tools=[multiply], response_format=ProviderStrategy(Person))
    with pytest.raises(InvalidParameterError, match="ToolStrategy"):
        with_tools.invoke({"messages": [HumanMessage("Alice is 30 years old.")]})


# ---- 6. structured output cut at max_tokens -------------------------------------------------------


def _dossier_floor(chat: ChatOpenVINO) -> int:
    return chat.get_num_tokens(minimal_json(Dossier.model_json_schema()))


def test_structured_output_cut_at_max_tokens_says_so(chat: ChatOpenVINO) -> None:
    floor = _dossier_floor(chat)  # the schema's shortest JSON: real values need more
    prompt = "Write the dossier of Alice Johnson, a software engineer from Paris."
    for method in ("json_schema", "function_calling"):
        extract = chat.with_structured_output(Dossier, method=method)  # type: ignore[arg-type]
        with pytest.raises(OutputTruncatedError, match=rf"max_tokens={floor}\b.*Raise max_tokens") as err:
            extract.invoke(prompt, max_tokens=floor)
        assert err.value.output and not err.value.output.rstrip().endswith("}")
    with pytest.raises(OutputTruncatedError, match="max_tokens"):
        list(chat.with_structured_output(Dossier).stream(prompt, max_tokens=floor))
    with pytest.raises(OutputTruncatedError, match="max_tokens"):
        as_format = {"type": "json_schema", "json_schema": {"name": "d", "schema": Dossier.model_json_schema()}}
        chat.bind(response_format=as_format).invoke(prompt, max_tokens=floor)


async def test_structured_output_cut_async_and_a_budget_below_the_schema(chat: ChatOpenVINO) -> None:
    floor = _dossier_floor(chat)
    extract = chat.with_structured_output(Dossier)
    with pytest.raises(OutputTruncatedError, match="max_tokens"):
        await extract.ainvoke("Alice Johnson's dossier.", max_tokens=floor)
    with pytest.raises(OutputTruncatedError, match="max_tokens"):
        async for _ in extract.astream("Alice Johnson's dossier.", max_tokens=floor):
            pass
    # a budget below even the shortest JSON fails before any generation
    start = time.perf_counter()
    with pytest.raises(InvalidParameterError, match=rf"max_tokens={floor - 1} .*{floor} tokens"):
        await extract.ainvoke("Alice Johnson's dossier.", max_tokens=floor - 1)
    assert chat._engine.active_requests == 0 and time.perf_counter() - start < 5


# ---- 7. timeout / max_retries / api_key -----------------------------------------------------------


def _wait_idle(chat: ChatOpenVINO) -> int:
    for _ in range(100):
        if chat._engine.active_requests == 0:
            break
        time.sleep(0.05)
    return chat._engine.active_requests


def test_standard_parameters_are_accepted(smollm2_gguf: Path) -> None:
    llm = ChatOpenVINO(
        model=smollm2_gguf, ov_config=EXACT, timeout=600, max_retries=2, api_key="sk-unused", max_tokens=4
    )
    assert llm.timeout == 600 and llm.max_retries == 2
    assert "sk-unused" not in repr(llm) and "sk-unused" not in json.dumps(llm._identifying_params, default=str)
    assert llm.invoke("Say hi.").content
    assert llm.invoke("Say hi.", timeout=600, max_retries=1, api_key="x").content  # per call too
    for bad in ({"timeout": 0}, {"timeout": -1.5}, {"max_retries": -1}):
        with pytest.raises(InvalidParameterError, match=next(iter(bad))):
            ChatOpenVINO(model=smollm2_gguf, **bad)
    with pytest.raises(ValueError, match="timeout"):  # pydantic's type check
        ChatOpenVINO(model=smollm2_gguf, timeout="soon")
    with pytest.raises(InvalidParameterError, match="timeout"):
        llm.invoke("Hi", timeout=0)


def test_timeout_cancels_the_generation(chat: ChatOpenVINO) -> None:
    slow = chat.bind(max_tokens=400, min_tokens=400)  # no early end-of-sequence: 400 tokens take seconds
    start = time.perf_counter()
    with pytest.raises(TimeoutError) as err:
        slow.invoke("Count from one to two hundred, one number per line.", timeout=0.3)
    assert isinstance(err.value, GenerationTimeoutError) and "timeout=0.3" in str(err.value)
    assert time.perf_counter() - start < 30  # not the 400 tokens
    assert _wait_idle(chat) == 0  # the request was dropped, not left running
    with pytest.raises(GenerationTimeoutError):
        for _ in slow.stream("Count from one to two hundred.", timeout=0.3):
            pass
    assert _wait_idle(chat) == 0


async def test_timeout_cancels_the_async_generation(smollm2_gguf: Path) -> None:
    llm = ChatOpenVINO(model=smollm2_gguf, ov_config=EXACT, temperature=0, max_tokens=400, timeout=0.3)
    with pytest.raises(GenerationTimeoutError):
        await llm.ainvoke("Count from one to two hundred, one number per line.", min_tokens=400)
    with pytest.raises(GenerationTimeoutError):
        async for _ in llm.astream("Count from one to two hundred.", min_tokens=400):
            pass
    await asyncio.sleep(0)
    assert _wait_idle(llm) == 0
    quick = await llm.ainvoke("Say hi.", timeout=600, max_tokens=4)
    assert quick.content


def test_parallel_tool_calls_and_strict_are_accepted(chat: ChatOpenVINO) -> None:
    bound = chat.bind_tools([multiply], tool_choice="multiply", parallel_tool_calls=False, strict=True)
    msg = bound.invoke("What is 6 times 7?")
    assert len(msg.tool_calls) == 1 and msg.tool_calls[0]["name"] == "multiply"
    follow_up = [HumanMessage("What is 6 times 7?"), msg, ToolMessage("42", tool_call_id=msg.tool_calls[0]["id"])]
    assert chat.bind_tools([multiply], parallel_tool_calls=False).invoke(follow_up, max_tokens=16) is not None
