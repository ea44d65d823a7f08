"""The LlamaIndex ``OpenVINO`` LLM on the real SmolLM2-135M GGUF: the eight chat/completion variants,
usage and timing, metadata, instrumentation events, parameters and bad input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, ImageBlock, TextBlock
from llama_index.core.bridge.pydantic import ValidationError
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.tools import FunctionTool

from llama_index_openvino import OpenVINO
from llama_index_openvino.base import PACKING_MARGIN
from openvino_llm import GenerationParams, load_engine
from openvino_llm.errors import InvalidParameterError

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 16
SYSTEM = "You are a friendly assistant. Answer in one short sentence."
QUESTION = "Name a colour of the sky."


@pytest.fixture(scope="module")
def llm(smollm2_gguf: Path, cache_dir: Path) -> OpenVINO:
    return OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir, max_new_tokens=MAX_NEW_TOKENS, temperature=0)


def _messages() -> list[ChatMessage]:
    return [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=QUESTION)]


class _Collector(BaseEventHandler):
    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "_Collector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def events() -> Iterator[list[BaseEvent]]:
    """Every instrumentation event fired while the test runs (root dispatcher)."""
    collector = _Collector(events=[])
    root = get_dispatcher()
    root.add_event_handler(collector)
    try:
        yield collector.events
    finally:
        root.event_handlers.remove(collector)


# ---- the eight variants ------------------------------------------------------------------------


async def _run(llm: OpenVINO, variant: str) -> tuple[ChatResponse | CompletionResponse, list[str]]:
    """Run one variant; return its last response and the deltas it streamed (empty if not streaming)."""
    if variant == "chat":
        return llm.chat(_messages()), []
    if variant == "achat":
        return await llm.achat(_messages()), []
    if variant == "complete":
        return llm.complete(QUESTION), []
    if variant == "acomplete":
        return await llm.acomplete(QUESTION), []
    if variant == "stream_chat":
        responses = list(llm.stream_chat(_messages()))
    elif variant == "astream_chat":
        responses = [r async for r in await llm.astream_chat(_messages())]
    elif variant == "stream_complete":
        responses = list(llm.stream_complete(QUESTION))
    else:
        assert variant == "astream_complete"
        responses = [r async for r in await llm.astream_complete(QUESTION)]
    return responses[-1], [r.delta or "" for r in responses]


def _text(response: ChatResponse | CompletionResponse) -> str:
    return response.message.content or "" if isinstance(response, ChatResponse) else response.text


VARIANTS = [
    "chat",
    "achat",
    "complete",
    "acomplete",
    "stream_chat",
    "astream_chat",
    "stream_complete",
    "astream_complete",
]


@pytest.mark.parametrize("variant", VARIANTS)
async def test_variant_text_usage_timing_and_events(llm: OpenVINO, variant: str, events: list[BaseEvent]) -> None:
    response, deltas = await _run(llm, variant)
    text = _text(response)
    assert text.strip()

    usage = response.raw["usage"]
    assert response.raw["model"] == llm.metadata.model_name
    assert response.raw["finish_reason"] in ("stop", "length")
    assert usage["prompt_tokens"] > 0
    assert 1 <= usage["completion_tokens"] <= MAX_NEW_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert response.additional_kwargs[key] == usage[key]
    timing = response.additional_kwargs["timing"]
    assert timing == response.raw["timing"]
    assert timing["ttft_ms"] > 0 and timing["total_ms"] >= timing["ttft_ms"] and timing["throughput_tps"] > 0

    if variant.startswith(("stream", "astream")):
        assert "".join(deltas) == text  # deltas, not accumulated text
        assert len([d for d in deltas if d]) >= 2  # token by token, not one block at the end
        assert len([d for d in deltas if d]) <= usage["completion_tokens"]

    # Instrumentation: start and end events arrived, end events hold the response, nothing failed.
    assert not [e for e in events if isinstance(e, ExceptionEvent)]
    chat_starts = [e for e in events if isinstance(e, LLMChatStartEvent)]
    chat_ends = [e for e in events if isinstance(e, LLMChatEndEvent)]
    assert len(chat_starts) == len(chat_ends) == 1
    assert (chat_ends[0].response.message.content or "") == text
    if "complete" in variant:
        starts = [e for e in events if isinstance(e, LLMCompletionStartEvent)]
        ends = [e for e in events if isinstance(e, LLMCompletionEndEvent)]
        assert len(starts) == len(ends) == 1
        assert starts[0].prompt == QUESTION
        assert ends[0].response.text == text
    else:
        assert chat_starts[0].messages[-1].content == QUESTION
    if variant.startswith(("stream", "astream")):
        progress = LLMCompletionInProgressEvent if "complete" in variant else LLMChatInProgressEvent
        assert len([e for e in events if isinstance(e, progress)]) == len(deltas)


async def test_chat_template_applied_once(llm: OpenVINO) -> None:
    """complete() sends the prompt as one user message: the core's template, nothing added on top."""
    expected = llm.engine.count_tokens(llm.engine.render([{"role": "user", "content": QUESTION}]))
    assert llm.complete(QUESTION).additional_kwargs["prompt_tokens"] == expected
    assert (await llm.acomplete(QUESTION)).additional_kwargs["prompt_tokens"] == expected
    with_system = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    assert llm.chat(_messages()).raw["usage"]["prompt_tokens"] == llm.engine.count_tokens(
        llm.engine.render(with_system)
    )


async def test_concurrent_requests(llm: OpenVINO) -> None:
    """Concurrent calls share the one engine (batched there; the adapter holds no lock)."""
    questions = ["Name a fruit.", "Name a country.", "Name an animal."]
    responses = await asyncio.gather(*(llm.acomplete(q) for q in questions))
    for question, response in zip(questions, responses, strict=True):
        assert response.text.strip()
        expected = llm.engine.count_tokens(llm.engine.render([{"role": "user", "content": question}]))
        assert response.additional_kwargs["prompt_tokens"] == expected  # each got its own prompt


def test_closing_a_stream_early_cancels_it(llm: OpenVINO) -> None:
    """Closing the LlamaIndex stream closes the core stream, which drops the request from the batch."""
    stream = llm.stream_chat([ChatMessage(role="user", content="Count from 1 to 1000.")], max_new_tokens=1000)
    assert next(r for r in stream if r.delta).delta
    stream.close()
    del stream
    deadline = time.monotonic() + 5.0  # 1000 tokens would take well over 10 s here
    while llm.engine.active_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert llm.engine.active_requests == 0


# ---- metadata, construction, sharing -----------------------------------------------------------


def test_metadata(llm: OpenVINO) -> None:
    meta = llm.metadata
    assert llm.context_window == llm.engine.context_window >= 2048  # SmolLM2's real window, not a small fallback
    # the room for message text: the window less the chat template's own tokens and a packing margin
    system, user = {"role": "system", "content": ""}, {"role": "user", "content": ""}
    template = max(llm.engine.count_tokens(llm.engine.render(m)) for m in ([system, user], [user]))  # type: ignore[list-item]
    assert meta.context_window == llm.context_window - template - PACKING_MARGIN
    assert meta.num_output == MAX_NEW_TOKENS
    assert meta.is_chat_model and meta.is_function_calling_model
    assert meta.model_name == llm.engine.model_name and meta.model_name
    assert OpenVINO.class_name() == "OpenVINO_llm"


def test_shares_engine_and_context_window_override(llm: OpenVINO, smollm2_gguf: Path, cache_dir: Path) -> None:
    other = OpenVINO(model=str(smollm2_gguf), device="CPU", cache_dir=str(cache_dir), context_window=512)
    assert other.engine is llm.engine
    assert load_engine(smollm2_gguf, device="CPU", cache_dir=cache_dir) is llm.engine
    assert other.context_window == 512 and 400 < other.metadata.context_window < 512
    assert llm.context_window == llm.engine.context_window  # the shared engine is unchanged
    with pytest.raises(InvalidParameterError, match="context_window"):
        OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir, context_window=llm.engine.context_window + 1)


@pytest.mark.parametrize(
    "bad",
    [{"temperature": -0.5}, {"top_p": 0.0}, {"top_k": -1}, {"max_new_tokens": 0}, {"seed": -3}, {"context_window": 0}],
)
def test_constructor_bounds(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OpenVINO(**bad)


def test_bad_device_raises_core_error(smollm2_gguf: Path) -> None:
    from openvino_llm.errors import DeviceNotAvailableError

    with pytest.raises(DeviceNotAvailableError):
        OpenVINO(model=smollm2_gguf, device="NO_SUCH_DEVICE")


# ---- per-call parameters and bad input ---------------------------------------------------------


def test_per_call_parameters(llm: OpenVINO) -> None:
    response = llm.complete("Count from one to twenty in words.", max_new_tokens=3)
    assert response.additional_kwargs["completion_tokens"] <= 3
    assert response.raw["finish_reason"] == "length"
    stop = llm.complete("Count: one, two, three, four, five", max_new_tokens=24, stop=[","])
    assert "," not in stop.text


async def test_bad_input_raises_clear_core_errors(llm: OpenVINO) -> None:
    with pytest.raises(InvalidParameterError, match="empty"):
        llm.chat([])
    with pytest.raises(InvalidParameterError, match="empty"):
        await llm.achat([])
    with pytest.raises(InvalidParameterError, match="empty"):
        list(llm.stream_chat([]))
    with pytest.raises(InvalidParameterError, match="empty"):
        [r async for r in await llm.astream_chat([])]
    with pytest.raises(InvalidParameterError, match="temperature"):
        llm.complete("Hi", temperature=-1.0)
    with pytest.raises(InvalidParameterError, match="no_such_option"):
        llm.complete("Hi", no_such_option=1)
    image = ChatMessage(
        role="user", blocks=[TextBlock(text="What is this?"), ImageBlock(url="https://example.com/a.png")]
    )
    with pytest.raises(InvalidParameterError, match="ImageBlock"):
        llm.chat([image])
    assert llm.engine.active_requests == 0


async def test_unknown_tool_choice_raises(llm: OpenVINO) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    tool = FunctionTool.from_defaults(add)
    with pytest.raises(InvalidParameterError, match="not a known tool"):
        llm.chat_with_tools([tool], user_msg="Add 2 and 3.", tool_choice="subtract")
    with pytest.raises(InvalidParameterError, match="not a known tool"):
        await llm.achat_with_tools([tool], user_msg="Add 2 and 3.", tool_choice="subtract")
    openai_style = {"type": "function", "function": {"name": "subtract"}}
    with pytest.raises(InvalidParameterError, match="not a known tool"):
        llm.chat_with_tools([tool], user_msg="Add 2 and 3.", tool_choice=openai_style)
    with pytest.raises(InvalidParameterError, match="needs at least one tool"):
        llm.chat_with_tools([], user_msg="Add 2 and 3.", tool_required=True)


# ---- tool calling ------------------------------------------------------------------------------


def _multiply_tool(calls: list[tuple[int, int]] | None = None) -> FunctionTool:
    def multiply(a: int, b: int) -> int:
        """Multiply two integers and return the product."""
        if calls is not None:
            calls.append((a, b))
        return a * b

    return FunctionTool.from_defaults(multiply)


TOOL_QUESTION = "What is 6 times 7? Use the multiply tool."
TOOL_TOKENS = 48  # a constrained call may spend tokens on JSON whitespace


async def test_chat_with_tools_variants(llm: OpenVINO) -> None:
    tool = _multiply_tool()
    responses = [
        llm.chat_with_tools([tool], user_msg=TOOL_QUESTION, tool_required=True, max_new_tokens=TOOL_TOKENS),
        await llm.achat_with_tools([tool], user_msg=TOOL_QUESTION, tool_choice="multiply", max_new_tokens=TOOL_TOKENS),
        list(
            llm.stream_chat_with_tools([tool], user_msg=TOOL_QUESTION, tool_required=True, max_new_tokens=TOOL_TOKENS)
        )[-1],
        [
            r
            async for r in await llm.astream_chat_with_tools(
                [tool], user_msg=TOOL_QUESTION, tool_required=True, max_new_tokens=TOOL_TOKENS
            )
        ][-1],
    ]
    for response in responses:
        (call,) = llm.get_tool_calls_from_response(response)
        assert call.tool_name == "multiply"
        assert call.tool_kwargs == {"a": 6, "b": 7}
        assert call.tool_id  # the core's call id, echoed back in the tool result message
        assert response.raw["finish_reason"] == "tool_calls"
        assert "<tool_call>" not in (response.message.content or "")
        assert response.additional_kwargs["completion_tokens"] > 0


def test_tool_round_trip_and_history_not_mutated(llm: OpenVINO) -> None:
    """A tool call and its result go back to the model, which then answers; the caller's list is kept."""
    tool = _multiply_tool()
    history = [ChatMessage(role="system", content="You are a calculator. Use tools, then give the result.")]
    response = llm.chat_with_tools(
        [tool], user_msg=TOOL_QUESTION, chat_history=history, tool_required=True, max_new_tokens=TOOL_TOKENS
    )
    assert len(history) == 1
    (call,) = llm.get_tool_calls_from_response(response)
    tool_msg = ChatMessage(role="tool", content="42", additional_kwargs={"tool_call_id": call.tool_id})
    follow_up = [*history, ChatMessage(role="user", content=TOOL_QUESTION), response.message, tool_msg]
    answer = llm.chat_with_tools([tool], chat_history=follow_up, tool_choice="none")
    assert llm.get_tool_calls_from_response(answer, error_on_no_tool_call=False) == []
    assert (answer.message.content or "").strip()
    # The core got exactly this conversation: the call (id, name, arguments) and the tool result, named.
    expected = [
        {"role": "system", "content": history[0].content},
        {"role": "user", "content": TOOL_QUESTION},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": call.tool_id, "name": "multiply", "arguments": {"a": 6, "b": 7}}],
        },
        {"role": "tool", "content": "42", "tool_call_id": call.tool_id, "name": "multiply"},
    ]
    spec = {
        "name": "multiply",
        "description": tool.metadata.description,
        "parameters": tool.metadata.get_parameters_dict(),
    }
    prompt = llm.engine.render(expected, GenerationParams(tools=(spec,), tool_choice="none"))
    assert answer.additional_kwargs["prompt_tokens"] == llm.engine.count_tokens(prompt)


def test_get_tool_calls_error_on_no_tool_call(llm: OpenVINO) -> None:
    response = llm.chat(_messages())
    with pytest.raises(ValueError, match="Expected at least one tool call"):
        llm.get_tool_calls_from_response(response)
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []


async def test_predict_and_call_calls_the_tool(llm: OpenVINO) -> None:
    calls: list[tuple[int, int]] = []
    tool = _multiply_tool(calls)
    result = llm.predict_and_call([tool], user_msg=TOOL_QUESTION, tool_required=True, max_new_tokens=TOOL_TOKENS)
    assert calls == [(6, 7)]
    assert result.response == "42" and result.sources[0].tool_name == "multiply"
    aresult = await llm.apredict_and_call(
        [tool], user_msg=TOOL_QUESTION, tool_choice="multiply", max_new_tokens=TOOL_TOKENS
    )
    assert calls == [(6, 7), (6, 7)] and aresult.response == "42"
