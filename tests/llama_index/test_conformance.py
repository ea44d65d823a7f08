"""The LlamaIndex ``OpenVINO`` LLM as LlamaIndex code drives it (issue 14), on the real SmolLM2-135M.

Response synthesizers pack prompts that fit the model (its tokenizer counts, ``metadata`` is honest),
``max_tokens`` works as at other LlamaIndex LLMs (construction and per call), unknown arguments fail,
and structured output cut at the token limit says so instead of failing in pydantic.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_index.core
import pytest
from llama_index.core import Settings, get_response_synthesizer
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.core.utils import get_tokenizer, set_global_tokenizer
from pydantic import BaseModel, Field

from llama_index_openvino import OpenVINO
from llama_index_openvino.base import ModelTokenizer
from openvino_llm.chat.schemas import minimal_json
from openvino_llm.errors import InvalidParameterError, OutputTruncatedError

pytestmark = pytest.mark.slow

WINDOW = 512  # a small window keeps the summaries fast; the packing is the same at the model's 8192
NUM_OUTPUT = 16


class Dossier(BaseModel):
    """A long record: more tokens than the tests give it."""

    full_name: str = Field(min_length=12)
    birthplace: str = Field(min_length=12)
    occupation: str = Field(min_length=12)
    employer: str = Field(min_length=12)
    hobbies: str = Field(min_length=12)
    biography: str = Field(min_length=40)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class _Prompts(BaseEventHandler):
    prompts: list[list[ChatMessage]] = []

    @classmethod
    def class_name(cls) -> str:
        return "_Prompts"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMChatStartEvent):
            self.prompts.append(list(event.messages))


@pytest.fixture
def prompts() -> Iterator[list[list[ChatMessage]]]:
    """The messages of every chat call made while the test runs."""
    handler = _Prompts(prompts=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler.prompts
    finally:
        root.event_handlers.remove(handler)


@pytest.fixture(scope="module")
def small(smollm2_gguf: Path, cache_dir: Path) -> OpenVINO:
    return OpenVINO(
        model=smollm2_gguf,
        device="CPU",
        cache_dir=cache_dir,
        context_window=WINDOW,
        max_tokens=NUM_OUTPUT,  # LlamaIndex's usual name for max_new_tokens
        temperature=0,
    )


def _chunks(n: int) -> list[str]:
    """Retrieved-looking text that the model's tokenizer splits finer than tiktoken (digits, accents, code)."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog OpenVINO 2026 tokens 3.14159 x86_64 naïve café".split()
    return [
        " ".join(rng.choice(words) for _ in range(40)) + f" Fact {i}: item {i * 37} costs {i * 1.5} EUR."
        for i in range(n)
    ]


def _prompt_tokens(llm: OpenVINO, messages: list[ChatMessage]) -> int:
    """Tokens of the prompt the model is given for ``messages`` (chat template applied)."""
    core = [{"role": "user" if m.role.value == "user" else "system", "content": m.content or ""} for m in messages]
    return llm.engine.count_tokens(llm.engine.render(core))  # type: ignore[arg-type]


# ---- 1. response synthesizers pack prompts that fit --------------------------------------------


@pytest.mark.parametrize("mode", ["tree_summarize", "simple_summarize"])
def test_summarizers_pack_prompts_that_fit_the_window(
    small: OpenVINO, mode: str, prompts: list[list[ChatMessage]]
) -> None:
    assert isinstance(llama_index.core.global_tokenizer, ModelTokenizer)  # LlamaIndex counts as the model does
    assert Settings.tokenizer("naïve café 3.14159") == small.engine.token_ids("naïve café 3.14159")
    chunks = _chunks(16)
    total = small.engine.count_tokens("\n\n".join(chunks))
    assert total > 2 * WINDOW  # more text than one prompt can hold
    synthesizer = get_response_synthesizer(llm=small, response_mode=mode)
    response = synthesizer.get_response("Summarize the facts.", chunks)
    assert str(response).strip()
    sizes = [_prompt_tokens(small, p) for p in prompts]
    assert sizes and all(size + NUM_OUTPUT <= WINDOW for size in sizes), sizes  # each prompt leaves room
    assert max(sizes) > 0.8 * (WINDOW - NUM_OUTPUT), sizes  # and the window is used, not wasted
    if mode == "tree_summarize":
        assert len(prompts) >= 3  # several packed summaries, then their summary


def test_the_stock_tokenizer_is_replaced_and_one_set_by_the_user_kept(
    small: OpenVINO, smollm2_gguf: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def mine(text: str) -> list[str]:
        return text.split()

    try:
        llama_index.core.global_tokenizer = None
        stock = get_tokenizer()  # LlamaIndex's default (tiktoken), set on first use
        assert len(stock("naïve café 3.14159")) < len(small.engine.token_ids("naïve café 3.14159"))
        OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir)
        assert isinstance(llama_index.core.global_tokenizer, ModelTokenizer)
        set_global_tokenizer(mine)
        with caplog.at_level(logging.WARNING, logger="llama_index_openvino"):
            OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir)
        assert llama_index.core.global_tokenizer is mine
        assert "Settings.tokenizer = llm.tokenizer" in caplog.text
    finally:
        set_global_tokenizer(small.tokenizer)
    assert small.tokenizer("Hello world") == small.engine.token_ids("Hello world")


# ---- 3. max_tokens, and unknown arguments --------------------------------------------------------


def test_max_tokens_at_construction_and_per_call(small: OpenVINO, smollm2_gguf: Path, cache_dir: Path) -> None:
    llm = OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir, max_tokens=8, temperature=0)
    assert llm.max_new_tokens == 8 and llm.metadata.num_output == 8
    counting = "Count from one to one hundred in words, separated by commas."
    response = llm.complete(counting)
    assert response.additional_kwargs["completion_tokens"] == 8 and response.raw["finish_reason"] == "length"
    for call in (
        lambda: llm.complete(counting, max_tokens=3),
        lambda: llm.chat([ChatMessage(role="user", content=counting)], max_tokens=3),
        lambda: list(llm.stream_complete(counting, max_tokens=3))[-1],
    ):
        assert call().additional_kwargs["completion_tokens"] == 3
    with pytest.raises(InvalidParameterError, match="disagree"):
        llm.complete(counting, max_tokens=3, max_new_tokens=4)
    with pytest.raises(InvalidParameterError, match="disagree"):
        OpenVINO(model=smollm2_gguf, max_tokens=3, max_new_tokens=4)


async def test_max_tokens_per_call_async(small: OpenVINO) -> None:
    counting = "Count from one to one hundred in words, separated by commas."
    response = await small.acomplete(counting, max_tokens=2)
    assert response.additional_kwargs["completion_tokens"] == 2
    stream = await small.astream_chat([ChatMessage(role="user", content=counting)], max_tokens=2)
    parts = [part async for part in stream]
    assert parts[-1].additional_kwargs["completion_tokens"] == 2


@pytest.mark.parametrize("bad", [{"max_token": 8}, {"timeout": 30}, {"num_ctx": 2048}, {"model_path": "x"}])
def test_unknown_constructor_arguments_fail_loudly(bad: dict[str, Any], smollm2_gguf: Path) -> None:
    with pytest.raises(InvalidParameterError, match=next(iter(bad))) as err:
        OpenVINO(model=smollm2_gguf, **bad)
    assert "max_new_tokens" in str(err.value)  # the message lists the arguments


# ---- 6. structured output cut at the token limit -------------------------------------------------


def _floor(llm: OpenVINO) -> int:
    return llm.engine.count_tokens(minimal_json(Dossier.model_json_schema()))


async def test_structured_output_cut_at_the_limit_says_so(small: OpenVINO, smollm2_gguf: Path, cache_dir: Path) -> None:
    floor = _floor(small)
    tight = OpenVINO(model=smollm2_gguf, device="CPU", cache_dir=cache_dir, max_tokens=floor, temperature=0)
    question = [ChatMessage(role="user", content="Write the dossier of Alice Johnson, an engineer from Paris.")]
    with pytest.raises(OutputTruncatedError, match=rf"max_new_tokens={floor}\b.*Raise max_new_tokens") as err:
        async for _ in await tight.as_structured_llm(Dossier).astream_chat(question):
            pass
    assert err.value.output.startswith("{")
    prompt = PromptTemplate("Write the dossier of {name}.")
    with pytest.raises(OutputTruncatedError, match="max_new_tokens"):
        tight.structured_predict(Dossier, prompt, name="Alice Johnson")
    with pytest.raises(OutputTruncatedError, match="max_new_tokens"):
        await small.astructured_predict(Dossier, prompt, llm_kwargs={"max_tokens": floor}, name="Alice Johnson")
    with pytest.raises(OutputTruncatedError, match="max_new_tokens"):
        list(tight.stream_structured_predict(Dossier, prompt, name="Alice Johnson"))
    # a forced tool call cut short
    tool = FunctionTool.from_defaults(multiply)
    with pytest.raises(OutputTruncatedError, match="max_new_tokens=2"):
        tight.chat_with_tools([tool], user_msg="What is 6 times 7?", tool_required=True, max_tokens=2)
    # a budget below the schema's shortest JSON fails before any generation
    with pytest.raises(InvalidParameterError, match=rf"max_new_tokens={floor - 1} .*{floor} tokens"):
        small.structured_predict(Dossier, prompt, llm_kwargs={"max_tokens": floor - 1}, name="Alice Johnson")
    assert small.engine.active_requests == 0
