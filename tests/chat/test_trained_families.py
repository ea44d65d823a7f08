# ruff: noqa: E501  (expected prompts keep their own lines)
"""Every model family on real inference: tiny models trained to speak the family's format.

Each model (tests/chat/_trained.py) has the family's chat template and special tokens and was
trained until greedy decoding reproduces its transcripts, so its free output in
``tool_choice="auto"`` goes through tokenization, generation (with the family's guided trigger),
detokenization, detection, parsing and the adapters, and is compared to what it was trained to
write. Exact precision: the results are deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import reduce
from operator import add
from pathlib import Path

import openvino_genai as ov_genai
import pytest
from filelock import FileLock
from tests._shared import EXACT
from tests.chat._families import MULTIPLY, TOOLS, WEATHER
from tests.chat._trained import (
    CALL_ID,
    FAMILIES,
    GREETING,
    GREETING_REPLY,
    MULTIPLY_QUESTION,
    WEATHER_ANSWER,
    WEATHER_RESULT,
    build_trained,
    cache_name,
    prompts_digest,
    reasoning_for,
    transcripts,
    weather_question,
)
from tests.conftest import _test_cache_root

from openvino_llm import GenerationParams, load_engine
from openvino_llm.chat.render import ChatRenderer
from openvino_llm.engine.engine import Engine
from openvino_llm.types import Chunk

pytestmark = pytest.mark.slow

NAMES = tuple(FAMILIES)
AUTO = GenerationParams(max_new_tokens=80, temperature=0, tools=tuple(TOOLS), tool_choice="auto")

#: families whose calls open with a special token (detokenization drops it from the text)
SPECIAL_MARKERS = {"llama3_json": "<|python_tag|>", "mistral": "[TOOL_CALLS]", "phi4_mini": "<|tool_call|>"}

#: how the earlier call and its result come back on the next turn (the Phi-4-mini template's tool turn
#: is rendered with jinja2: openvino-genai's engine would make it a user turn of {"tool_response": ...};
#: Llama 3.2's pythonic results go as the "ipython" role it renders)
HISTORY_FORM = {
    "qwen3": ["<|im_start|>assistant<think>\nThe user wants the weather in Paris. I call get_weather.\n</think>"
              '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
              "<|im_start|>user\n<tool_response>\nSunny, 22 C\n</tool_response><|im_end|>"],
    "qwen3_coder": ["<|im_start|>assistant\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                    "</function>\n</tool_call><|im_end|>",
                    "<|im_start|>user\n<tool_response>\nSunny, 22 C\n</tool_response><|im_end|>"],
    "llama3_json": ['<|start_header_id|>assistant<|end_header_id|>\n\n<|python_tag|>{"name": "get_weather", '
                    '"parameters": {"city": "Paris"}}<|eom_id|>',
                    "<|start_header_id|>ipython<|end_header_id|>\n\nSunny, 22 C<|eot_id|>"],
    "llama3_pythonic": ['<|start_header_id|>assistant<|end_header_id|>\n\n[get_weather(city="Paris")]<|eot_id|>'
                        "<|start_header_id|>ipython<|end_header_id|>\n\nSunny, 22 C<|eot_id|>"],
    "mistral": ['[/INST][TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "{id}"}]</s>'
                '[TOOL_RESULTS]{"content": "Sunny, 22 C", "call_id": "{id}"}[/TOOL_RESULTS]'],
    "phi4_mini": ['<|assistant|><|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|/tool_call|><|end|>'
                  "<|tool|>Sunny, 22 C<|end|>"],
}  # fmt: skip


@pytest.fixture(scope="session")
def trained_dir(cache_dir: Path) -> Callable[[str], Path]:
    """The IR folder of a family's trained model: trained once (cached across sessions), exported once."""
    pytest.importorskip("torch", reason="training the family models needs torch: pip install openvino-llm[export]")
    from openvino_llm.models.resolve import resolve_model

    made: dict[str, Path] = {}

    def make(family: str) -> Path:
        if family in made:
            return made[family]
        root = _test_cache_root()
        target = root / cache_name(family)
        marker = target / "TRAINED_BUILDER_VERSION"
        with FileLock(str(root / f"{cache_name(family)}.lock")):
            for attempt in range(2):
                if not marker.exists():
                    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-trained-{family}-", dir=root))
                    try:
                        build_trained(family, tmp)
                        if target.exists():  # a half-written folder, or a model trained on older prompts
                            shutil.rmtree(target)
                        os.replace(tmp, target)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                path = resolve_model(target, task="text-generation").path
                trained_on = json.loads(marker.read_text().splitlines()[1]).get("prompts")
                if trained_on == prompts_digest(family, ov_genai.Tokenizer(str(path))) or attempt:
                    break
                marker.unlink()  # the core renders the training prompts differently now: train again
        made[family] = path
        return path

    return make


@pytest.fixture(scope="module")
def engine_for(trained_dir: Callable[[str], Path]) -> Iterator[Callable[[str], Engine]]:
    engines: dict[str, Engine] = {}

    def make(family: str) -> Engine:
        if family not in engines:
            engines[family] = load_engine(trained_dir(family), device="CPU", ov_config=EXACT)
        return engines[family]

    yield make
    for engine in engines.values():
        engine.close()


def _trained_reply(family: str, question: str) -> str:
    return next(r for m, r, _ in transcripts(family) if m == [{"role": "user", "content": question}])


def _tokens(engine: Engine, text: str) -> int:
    return int(engine.tokenizer.encode(text, add_special_tokens=False).input_ids.shape[-1])


def _joined(chunks: list[Chunk]) -> list[tuple[str, str, dict]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for d in chunk.tool_call_deltas:
            slot = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            if d.name:
                slot["id"], slot["name"] = d.id, d.name
            slot["arguments"] += d.arguments
    return [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()]


@pytest.mark.parametrize("family", NAMES)
@pytest.mark.parametrize(
    ("question", "name", "arguments"),
    [(weather_question("Paris"), "get_weather", {"city": "Paris"}),
     (weather_question("Berlin"), "get_weather", {"city": "Berlin"}),
     (MULTIPLY_QUESTION, "multiply", {"a": 6, "b": 7})],
)  # fmt: skip
def test_auto_call_is_detected_parsed_and_streamed(engine_for, family, question, name, arguments):
    engine = engine_for(family)
    assert ChatRenderer(engine.tokenizer).family.name == family  # detected from the chat template
    chunks = list(engine.stream(question, AUTO))
    final = chunks[-1]
    assert final.finish_reason == "tool_calls", "".join(c.text for c in chunks)
    assert "".join(c.text for c in chunks) == ""  # no markup leaked into the text
    [call] = final.tool_calls
    assert (call.name, call.arguments) == (name, arguments)
    assert _joined(chunks) == [(call.id, name, arguments)]  # the streamed pieces add up to the call
    if family == "mistral":
        assert len(call.id) == 9 and call.id.isalnum()
    if family in SPECIAL_MARKERS:  # the model wrote its special-token marker: the guided grammar let it through
        reply = _trained_reply(family, question)
        assert reply.startswith(SPECIAL_MARKERS[family])
        assert final.usage.output_tokens == _tokens(engine, reply) + 1  # + the end token
    reasoning = "".join(c.reasoning for c in chunks)
    assert reasoning.strip() == (reasoning_for(question) if FAMILIES[family].reasons else "")
    if FAMILIES[family].reasons:
        assert sum(1 for c in chunks if c.reasoning) > 1  # streamed as it was produced
        gen = engine.generate(question, AUTO)
        assert (gen.reasoning.strip(), gen.text) == (reasoning_for(question), "")
        assert [(c.name, c.arguments) for c in gen.tool_calls] == [(name, arguments)]


@pytest.mark.parametrize("family", NAMES)
def test_greeting_gets_plain_text(engine_for, family):
    engine = engine_for(family)
    chunks = list(engine.stream(GREETING, AUTO))
    final = chunks[-1]
    assert "".join(c.text for c in chunks) == GREETING_REPLY
    assert final.tool_calls == [] and final.finish_reason == "stop"
    assert not any(c.tool_call_deltas for c in chunks)
    gen = engine.generate(GREETING, AUTO)
    assert (gen.text, gen.tool_calls) == (GREETING_REPLY, [])
    expected = reasoning_for(GREETING) if FAMILIES[family].reasons else ""
    assert gen.reasoning.strip() == expected and "<think>" not in gen.text


@pytest.mark.parametrize("family", NAMES)
def test_call_and_result_go_back_in_the_family_form(engine_for, family):
    engine = engine_for(family)
    question = weather_question("Paris")
    first = engine.generate(question, AUTO)
    [call] = first.tool_calls
    call = replace(call, id=CALL_ID)  # call ids are random, and some templates render them: keep the prompt fixed
    assistant = {"role": "assistant", "content": first.text,
                 "tool_calls": [{"id": call.id, "name": call.name, "arguments": call.arguments}]}  # fmt: skip
    if first.reasoning:
        assistant["reasoning_content"] = first.reasoning
    history = [
        {"role": "user", "content": question},
        assistant,
        {"role": "tool", "content": WEATHER_RESULT, "tool_call_id": call.id, "name": call.name},
    ]
    prompt = engine.render(history, AUTO)
    for form in HISTORY_FORM[family]:
        assert form.replace("{id}", call.id) in prompt, prompt
    gen = engine.generate(history, AUTO)
    assert (gen.text, gen.tool_calls, gen.finish_reason) == (WEATHER_ANSWER, [], "stop")


@pytest.mark.parametrize("family", NAMES)
def test_langchain_tool_call_chunks_and_text(trained_dir, family):
    pytest.importorskip("langchain_openvino")
    from langchain_openvino import ChatOpenVINO

    llm = ChatOpenVINO(model=trained_dir(family), device="CPU", max_tokens=80, temperature=0, ov_config=EXACT)
    bound = llm.bind_tools([WEATHER, MULTIPLY])
    chunks = list(bound.stream(weather_question("Rome")))
    assert any(c.tool_call_chunks for c in chunks)
    first = next(c for c in chunks if c.tool_call_chunks).tool_call_chunks[0]
    assert first["name"] == "get_weather" and first["id"]
    assert "".join(str(c.content) for c in chunks) == ""
    full = reduce(add, chunks)
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("get_weather", {"city": "Rome"})]
    assert full.tool_calls[0]["id"] == first["id"]
    assert full.response_metadata["finish_reason"] == "tool_calls"
    text = bound.invoke(GREETING)
    assert (text.content, text.tool_calls) == (GREETING_REPLY, [])
    if FAMILIES[family].reasons:
        assert text.additional_kwargs["reasoning_content"].strip() == reasoning_for(GREETING)
        assert full.additional_kwargs["reasoning_content"].strip() == reasoning_for(weather_question("Rome"))


def _llamaindex_tool(spec: dict, fn: Callable[..., str]):
    """A LlamaIndex tool whose schema is ``spec`` exactly (the trained prompts hold these tools)."""
    from llama_index.core.tools import FunctionTool, ToolMetadata
    from pydantic import BaseModel

    class Schema(BaseModel):
        @classmethod
        def model_json_schema(cls, *args, **kwargs):  # type: ignore[override]
            return spec["parameters"]

    return FunctionTool(fn, ToolMetadata(name=spec["name"], description=spec["description"], fn_schema=Schema))


@pytest.mark.parametrize("family", NAMES)
def test_llamaindex_tool_calls_and_text(trained_dir, family):
    pytest.importorskip("llama_index_openvino")
    from llama_index_openvino import OpenVINO

    tools = [
        _llamaindex_tool(WEATHER, lambda city: WEATHER_RESULT),
        _llamaindex_tool(MULTIPLY, lambda a, b: str(a * b)),
    ]
    llm = OpenVINO(model=trained_dir(family), device="CPU", max_new_tokens=80, temperature=0, ov_config=EXACT)
    response = llm.chat_with_tools(tools, user_msg=weather_question("Madrid"))
    [selection] = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert (selection.tool_name, selection.tool_kwargs) == ("get_weather", {"city": "Madrid"})
    streamed = list(llm.stream_chat_with_tools(tools, user_msg=MULTIPLY_QUESTION))
    [selection] = llm.get_tool_calls_from_response(streamed[-1], error_on_no_tool_call=True)
    assert (selection.tool_name, selection.tool_kwargs) == ("multiply", {"a": 6, "b": 7})
    reply = llm.chat_with_tools(tools, user_msg=GREETING)
    assert reply.message.content == GREETING_REPLY
    assert llm.get_tool_calls_from_response(reply, error_on_no_tool_call=False) == []
