"""Each family's history rendered through its chat template (openvino-genai's template engine)."""

from __future__ import annotations

from pathlib import Path

import openvino_genai as ov_genai
import pytest
from tests.chat import _families as _templates
from tests.chat._families import TOOLS

from openvino_llm.chat.render import ChatRenderer, normalize_messages
from openvino_llm.errors import InvalidParameterError

HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris, and 6 times 7?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "Two tools are needed.",
        "tool_calls": [
            {"id": "call_aaaaaaaaaaaaaaaaaaaaaaaa", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"id": "call_bbbbbbbbbbbbbbbbbbbbbbbb", "name": "multiply", "arguments": {"a": 6, "b": 7}},
        ],
    },
    {"role": "tool", "content": "sunny", "tool_call_id": "call_aaaaaaaaaaaaaaaaaaaaaaaa", "name": "get_weather"},
    {"role": "tool", "content": "42", "tool_call_id": "call_bbbbbbbbbbbbbbbbbbbbbbbb", "name": "multiply"},
]


@pytest.fixture(scope="module")
def tokenizer_for(tiny_model: Path):
    def make(template: str) -> ov_genai.Tokenizer:
        tok = ov_genai.Tokenizer(str(tiny_model))
        tok.chat_template = template
        return tok

    return make


def _render(tokenizer_for, template: str, messages=HISTORY, **kw) -> tuple[ChatRenderer, str]:
    renderer = ChatRenderer(tokenizer_for(template))
    return renderer, renderer.render(normalize_messages(messages), TOOLS, **kw)


def test_qwen25_is_hermes_and_drops_reasoning(tokenizer_for):
    renderer, prompt = _render(tokenizer_for, _templates.QWEN25)
    assert renderer.family.name == "hermes" and not renderer.reasons
    assert '"arguments": {"city": "Paris"}' in prompt and "<tool_response>\n42\n</tool_response>" in prompt
    assert "Two tools are needed" not in prompt


def test_qwen3_sends_reasoning_back_and_switches_thinking(tokenizer_for):
    renderer, prompt = _render(tokenizer_for, _templates.QWEN3)
    assert renderer.family.name == "qwen3" and renderer.reasons
    assert "<think>\nTwo tools are needed.\n</think>" in prompt
    assert not prompt.endswith("</think>\n\n")
    off = renderer.render(normalize_messages("Hi"), (), extra_context={"enable_thinking": False})
    assert off.endswith("<think>\n\n</think>\n\n")


def test_deepseek_r1_drops_reasoning(tokenizer_for):
    history = [
        *HISTORY[:2],
        {"role": "assistant", "content": "Sunny.", "reasoning_content": "Look it up."},
        {"role": "user", "content": "Thanks"},
    ]
    renderer, prompt = _render(tokenizer_for, _templates.DEEPSEEK_R1, history)
    assert renderer.reasons and "Look it up" not in prompt and prompt.endswith("<think>\n")


def test_llama31_json_one_call_per_message_in_the_template(tokenizer_for):
    renderer, prompt = _render(tokenizer_for, _templates.LLAMA31)
    assert renderer.family.name == "llama3_json"
    # the official template raises on two calls in one message: they go back as the text the model wrote
    assert '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "multiply"' in prompt
    one = HISTORY[:3] + HISTORY[3:4]
    one[2] = {**HISTORY[2], "tool_calls": HISTORY[2]["tool_calls"][:1]}
    _, prompt = _render(tokenizer_for, _templates.LLAMA31, one)
    assert '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>' in prompt


def test_mistral_gets_nine_character_ids(tokenizer_for):
    renderer, prompt = _render(tokenizer_for, _templates.MISTRAL)
    assert renderer.family.name == "mistral"
    ids = [part.split('"')[0] for part in prompt.split('"id": "')[1:]]
    results = [part.split('"')[0] for part in prompt.split('"call_id": "')[1:]]
    assert len(ids) == 2 and all(len(i) == 9 and i.isalnum() for i in ids)
    assert results == ids  # each result points at its call


def test_phi4_mini_tools_in_the_system_message(tokenizer_for):
    renderer, prompt = _render(tokenizer_for, _templates.PHI4_MINI)
    assert renderer.family.name == "phi4_mini"
    assert prompt.startswith('<|system|>Be brief.<|tool|>[{"name": "get_weather"')
    assert '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "multiply"' in prompt
    # openvino-genai's engine would make the results user turns of {"tool_response": ...} JSON; jinja2 renders them
    assert renderer.polyfills_tool_results
    assert prompt.endswith("<|tool|>sunny<|end|><|tool|>42<|end|><|assistant|>") and "tool_response" not in prompt


@pytest.mark.parametrize("turns", [1, 3])
def test_jinja_renders_as_openvino_genai_where_both_can(tokenizer_for, turns):
    """Without tool results, the jinja2 path gives the same prompt as openvino-genai's template engine."""
    renderer = ChatRenderer(tokenizer_for(_templates.PHI4_MINI))
    messages = normalize_messages(HISTORY[:turns])
    history = renderer.family.native_history([renderer._native(m, False) for m in messages], TOOLS)
    ours = renderer.render_with_jinja(history)
    assert ours == renderer._tokenizer.apply_chat_template(history, add_generation_prompt=True)
    assert ours.startswith("<|system|>Be brief.<|tool|>[{") and ours.endswith("<|end|><|assistant|>")


def test_templates_that_render_tool_results_keep_openvino_genai(tokenizer_for):
    for template in (_templates.QWEN25, _templates.QWEN3, _templates.LLAMA31, _templates.MISTRAL):
        assert not ChatRenderer(tokenizer_for(template)).polyfills_tool_results


def test_template_without_tools_is_taught_the_chosen_format(tokenizer_for, tiny_model):
    renderer = ChatRenderer(ov_genai.Tokenizer(str(tiny_model)))  # plain ChatML
    assert renderer.family.name == "hermes" and not renderer.native_tools
    family = renderer.family_for("llama3_pythonic")
    prompt = renderer.render(normalize_messages(HISTORY), TOOLS, family=family)
    assert '[get_weather(city="Paris"), multiply(a=6, b=7)]' in prompt  # the earlier calls
    assert "[<function-name>(" in prompt  # the format taught in the system prompt
    with pytest.raises(InvalidParameterError, match="tool_format"):
        renderer.family_for("nope")


def test_reasoning_content_is_checked():
    with pytest.raises(InvalidParameterError, match="reasoning_content"):
        normalize_messages([{"role": "assistant", "content": "", "reasoning_content": 3}])
    user = normalize_messages([{"role": "user", "content": "x", "reasoning_content": "r"}])[0]
    assert "reasoning_content" not in user
