"""Families, reasoning and streamed tool calls through the engine, on real inference.

SmolLM2-135M (its template has no tools, so the tool prompt teaches the chosen family's format)
makes a forced call in every family's format: the call goes through constrained decoding,
detokenization, the family's stream parser and its whole-output parser. The tiny random model,
given a family's chat template, checks what the template decides: reasoning that starts inside the
block, the thinking switch, extra template variables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._shared import EXACT
from tests.chat._families import DEEPSEEK_R1, QWEN3, TOOLS

from openvino_llm import GenerationParams, load_engine
from openvino_llm.chat.families import FAMILY_NAMES
from openvino_llm.engine.engine import Engine
from openvino_llm.errors import InvalidParameterError
from openvino_llm.types import Chunk

QUESTION = [{"role": "user", "content": "What is 6 times 7?"}]


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path, cache_dir: Path) -> Engine:
    return load_engine(smollm2_gguf, device="CPU", ov_config=EXACT, cache_dir=cache_dir)


def _joined_deltas(chunks: list[Chunk]) -> list[tuple[str, str, dict]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for d in chunk.tool_call_deltas:
            slot = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            if d.name:
                slot["id"], slot["name"] = d.id, d.name
            slot["arguments"] += d.arguments
    return [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_forced_call_in_every_family_format(smollm2: Engine, family: str):
    params = GenerationParams(max_new_tokens=160, temperature=0, tools=tuple(TOOLS), tool_choice="multiply",
                              tool_format=family)  # fmt: skip
    prompt = smollm2.render(QUESTION, params)
    chunks = list(smollm2.stream(QUESTION, params))
    final = chunks[-1]
    assert final.finish_reason == "tool_calls" and "".join(c.text for c in chunks) == ""
    [call] = final.tool_calls
    assert call.name == "multiply" and set(call.arguments) == {"a", "b"}
    assert all(isinstance(v, int) for v in call.arguments.values())
    # the stream showed the same call: name first, argument pieces adding up to the arguments
    assert _joined_deltas(chunks) == [(call.id, call.name, call.arguments)]
    if family == "mistral":
        assert len(call.id) == 9 and call.id.isalnum()
    if family not in ("hermes", "qwen3"):  # the system prompt teaches the family's own format
        assert "<tool_call>\n{" not in prompt


def test_json_families_stream_arguments_in_pieces(smollm2: Engine):
    params = GenerationParams(max_new_tokens=160, temperature=0, tools=tuple(TOOLS), tool_choice="multiply")
    chunks = list(smollm2.stream(QUESTION, params))
    pieces = [d for c in chunks for d in c.tool_call_deltas]
    assert pieces[0].name == "multiply" and pieces[0].id
    assert len([d for d in pieces if d.arguments]) > 1  # arguments came as they were written, not at the end
    assert chunks.index(next(c for c in chunks if c.tool_call_deltas)) < len(chunks) - 1


def test_parallel_and_strict_flags_are_honoured(smollm2: Engine):
    params = GenerationParams(max_new_tokens=160, temperature=0, tools=tuple(TOOLS), tool_choice="required",
                              parallel_tool_calls=False, strict=True)  # fmt: skip
    gen = smollm2.generate(QUESTION, params)
    assert gen.finish_reason == "tool_calls" and len(gen.tool_calls) == 1
    with pytest.raises(InvalidParameterError, match="parallel_tool_calls"):
        GenerationParams(parallel_tool_calls="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="tool_format"):
        smollm2.generate(QUESTION, GenerationParams(tools=tuple(TOOLS), tool_format="gpt5"))


def test_reply_that_starts_inside_the_block_is_reasoning(templated):
    """A DeepSeek-R1 template opens <think>: what the model writes (no </think> here) is reasoning, streamed."""
    engine = templated(DEEPSEEK_R1)
    params = GenerationParams(max_new_tokens=12, temperature=0)
    chunks = list(engine.stream("Hi", params))
    reasoning = "".join(c.reasoning for c in chunks)
    assert reasoning.strip() and "".join(c.text for c in chunks) == ""
    assert sum(1 for c in chunks if c.reasoning) > 1  # as it was produced, not at the end
    gen = engine.generate("Hi", params)
    assert (gen.reasoning, gen.text) == (reasoning, "")
    # thinking off: the engine closes the block the template opened, and the reply is content
    off = GenerationParams(max_new_tokens=12, temperature=0, reasoning=False)
    assert engine.render("Hi", off).endswith("<think>\n</think>\n\n")
    gen = engine.generate("Hi", off)
    assert gen.text.strip() and gen.reasoning == ""


def test_thinking_switch_and_template_variables(templated):
    engine = templated(QWEN3 + "{% if greeting is defined %}{{ greeting }}{% endif %}")
    assert not engine.render("Hi").endswith("</think>\n\n")
    assert engine.render("Hi", GenerationParams(reasoning=False)).endswith("<think>\n\n</think>\n\n")
    assert engine.render("Hi", GenerationParams(chat_template_kwargs={"greeting": "Hello!"})).endswith("Hello!")
    gen = engine.generate("Hi", GenerationParams(max_new_tokens=8, temperature=0, reasoning=False))
    assert gen.reasoning == "" and gen.text
    with pytest.raises(InvalidParameterError, match="chat_template_kwargs"):
        GenerationParams(chat_template_kwargs=["greeting"])  # type: ignore[arg-type]
