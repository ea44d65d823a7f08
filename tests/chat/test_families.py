"""Every family's parsers on text: whole outputs, stream prefixes, broken and truncated calls."""

from __future__ import annotations

import json

import pytest
from tests.chat._families import CALLS, NATIVE, TOOLS

from openvino_llm.chat.families import FAMILY_NAMES, detect_family, get_family
from openvino_llm.chat.families.mistral import mistral_id
from openvino_llm.chat.families.stream import ToolCallStream
from openvino_llm.errors import InvalidParameterError
from openvino_llm.types import ToolSpec  # noqa: F401


def _pairs(calls):
    return [(c.name, c.arguments) for c in calls]


def test_every_family_has_a_sample():
    assert set(NATIVE) == set(FAMILY_NAMES)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_parse_several_calls_with_text_before(name):
    family = get_family(name)
    content, calls = family.parse("Let me check. " + NATIVE[name], TOOLS)
    assert content == "Let me check."
    assert _pairs(calls) == [("get_weather", {"city": "Paris"}), ("multiply", {"a": 6, "b": 7})]
    assert len({c.id for c in calls}) == 2


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_render_then_parse_round_trips(name):
    family = get_family(name)
    content, calls = family.parse(family.render_calls(CALLS), TOOLS)
    assert content == ""
    assert _pairs(calls) == [(c["name"], c["arguments"]) for c in CALLS]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_plain_text_is_content(name):
    text = "The weather in Paris is sunny [1]. Use {braces} freely; a < b."
    assert get_family(name).parse(text, TOOLS) == (text, [])


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_output_never_crashes(name, cut):
    """A call cut anywhere (the token limit) is text, or the calls that were complete: never an error."""
    family = get_family(name)
    text = NATIVE[name]
    for end in range(1, len(text)):
        content, calls = family.parse(text[:end], TOOLS)
        assert isinstance(content, str)
        for c in calls:
            assert c.name in ("get_weather", "multiply") and isinstance(c.arguments, dict)
    full = _pairs(family.parse(text, TOOLS)[1])
    partial = text[: int(len(text) * cut)]
    content, calls = family.parse(partial, TOOLS)
    assert _pairs(calls) == full[: len(calls)]  # only calls that were complete
    assert calls or content == partial
    if cut < 0.4:  # inside the first call
        assert (content, calls) == (partial, [])


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_unknown_tool_stays_text(name):
    family = get_family(name)
    text = family.render_calls([{"id": "c", "name": "launch_rockets", "arguments": {"n": 1}}])
    content, calls = family.parse(text, TOOLS)
    assert calls == [] and content == text


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>'),
        ("hermes", "<tool_call name=\"get_weather\" arguments=\"{'city': 'Paris'}\">\n  <tool>"),
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"),
        ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris"'),
        ("llama3_json", '{"name": "get_weather", "parameters": "not an object"}'),
        ("llama3_pythonic", '[get_weather(city="Paris"'),
        ("llama3_pythonic", "[get_weather(__import__('os').system('true'))]"),
        ("llama3_pythonic", "[get_weather(city=open('x'))]"),
        ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}'),
        ("phi4_mini", '<|tool_call|>[{"name": "get_weather", "arguments": ["Paris"]}]<|/tool_call|>'),
    ],
)
def test_broken_calls_are_text(name, broken):
    assert get_family(name).parse(broken, TOOLS) == (broken, [])


def test_qwen3_coder_values_follow_the_schema():
    family = get_family("qwen3_coder")
    text = "<tool_call>\n<function=get_weather>\n<parameter=city>\n42\n</parameter>\n</function>\n</tool_call>"
    assert family.parse(text, TOOLS)[1][0].arguments == {"city": "42"}  # a string parameter stays text
    text = "<tool_call>\n<function=multiply>\n<parameter=a>6</parameter>\n<parameter=b>\n7\n</parameter>\n</function>"
    assert family.parse(text, TOOLS)[1][0].arguments == {"a": 6, "b": 7}


def test_llama3_json_without_python_tag_and_newline_separated():
    family = get_family("llama3_json")
    text = '{"name": "get_weather", "parameters": {"city": "Paris"}}\n{"name": "multiply", "parameters": {"a": 1}}'
    assert _pairs(family.parse(text, TOOLS)[1]) == [("get_weather", {"city": "Paris"}), ("multiply", {"a": 1})]


def test_mistral_ids_and_the_v11_form():
    family = get_family("mistral")
    content, calls = family.parse('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', TOOLS)
    assert content == "" and _pairs(calls) == [("get_weather", {"city": "Paris"})]
    assert len(calls[0].id) == 9 and calls[0].id.isalnum()
    # the special tokens are dropped by detokenization: the bare forms parse too
    assert _pairs(family.parse('get_weather{"city": "Paris"}', TOOLS)[1]) == [("get_weather", {"city": "Paris"})]
    assert _pairs(family.parse('[{"name": "multiply", "arguments": {"a": 1, "b": 2}}]', TOOLS)[1]) == [
        ("multiply", {"a": 1, "b": 2})
    ]
    assert family.parse("weather{is nice}", TOOLS) == ("weather{is nice}", [])
    assert mistral_id("call_0123456789abcdef") == mistral_id("call_0123456789abcdef")
    assert len(mistral_id("call_0123456789abcdef")) == 9 and mistral_id("abcDEF123") == "abcDEF123"


def test_phi4_mini_functools_form():
    family = get_family("phi4_mini")
    text = 'functools[{"name": "multiply", "arguments": {"a": 2, "b": 3}}]'
    assert _pairs(family.parse(text, TOOLS)[1]) == [("multiply", {"a": 2, "b": 3})]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_stream_deltas_add_up_to_the_calls(name):
    """Feeding the output character by character: name first, then argument pieces that join to the call."""
    family = get_family(name)
    text = NATIVE[name]
    stream = ToolCallStream(family, TOOLS)
    deltas = []
    for end in range(1, len(text) + 1):
        at = family.find_marker(text[:end])
        if at >= 0:
            deltas += stream.update(text[at:end])
    _, calls = family.parse(text, TOOLS)
    calls, rest = stream.finish(calls)
    deltas += rest
    by_index: dict[int, dict[str, str]] = {}
    for d in deltas:
        slot = by_index.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
        if d.name:
            assert not slot["name"], "a call's name comes once, first"
            slot["id"], slot["name"] = d.id, d.name
        else:
            assert slot["name"], "argument text comes after the name"
        slot["arguments"] += d.arguments
    assert [(s["id"], s["name"], json.loads(s["arguments"])) for s in by_index.values()] == [
        (c.id, c.name, c.arguments) for c in calls
    ]


def test_json_families_stream_arguments_before_the_call_ends():
    family = get_family("hermes")
    stream = ToolCallStream(family, TOOLS)
    first = stream.update('<tool_call>\n{"name": "get_weather", "arguments": {"ci')
    assert [(d.name, d.arguments) for d in first] == [("get_weather", ""), ("", '{"ci')]
    assert [d.arguments for d in stream.update('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa')] == [
        'ty": "Pa'
    ]


def test_pending_holds_back_a_partial_marker():
    assert get_family("hermes").pending("Sure <tool_") == len("<tool_")
    assert get_family("hermes").pending("a < b") == 0
    assert get_family("llama3_pythonic").pending("ok [get_wea") == len("[get_wea")
    assert get_family("llama3_pythonic").find_marker("see [1] and [get_weather(") == len("see [1] and ")


def test_unknown_family_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="hermes"):
        get_family("gpt4")


@pytest.mark.parametrize(
    ("snippet", "name"),
    [
        ("{% for tool in tools %}<tools></tools><tool_call>{{ m }}</tool_call>", "hermes"),
        ("<tool_call>...<think>...</think>{{ message.reasoning_content }}", "qwen3"),
        ("<tool_call>\n<function=...>\n<parameter=...>", "qwen3_coder"),
        ('{"name": function name, "parameters": dictionary of argument name and its value}', "llama3_json"),
        ("<|python_tag|>", "llama3_json"),
        ("[func_name1(params_name1=params_value1, params_name2=params_value2...)]", "llama3_pythonic"),
        ("[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS][TOOL_CALLS]", "mistral"),
        ("{{ '<|system|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' }}", "phi4_mini"),
        ("{{ message['content'] }}", "hermes"),
    ],
)
def test_detection_from_the_template(snippet, name):
    assert detect_family(snippet).name == name


def test_a_reply_that_is_only_a_fenced_json_call_is_a_call():
    # Qwen2.5-Coder-0.5B (the embedded default) sometimes answers a tool request this way.
    family = get_family("hermes")
    name = TOOLS[0]["name"]
    reply = f'```json\n{{\n  "name": "{name}",\n  "arguments": {{"city": "Paris"}}\n}}\n```'
    text, calls = family.parse(reply, TOOLS)
    assert (text, [c.name for c in calls]) == ("", [name])


@pytest.mark.parametrize(
    "reply",
    [
        "```python\nprint('hi')\n```",
        '```json\n{"a": 1}\n```',  # JSON, but not a call of a known tool
        'Here it is:\n```json\n{"name": "x", "arguments": {}}\n```',  # text around the block
    ],
)
def test_other_code_blocks_stay_text(reply):
    text, calls = get_family("hermes").parse(reply, TOOLS)
    assert (text, calls) == (reply, [])


def test_code_block_hold_back_decides_on_the_first_line():
    from openvino_llm.chat.families import may_open_json_block

    assert all(may_open_json_block(t) for t in ("", "``", "```", "```json", "```json\n", "```\n  {"))
    assert not any(may_open_json_block(t) for t in ("Hi", "```python\n", "```json\nx = 1", "```\nfoo"))


def test_pythonic_calls_go_back_as_the_text_the_model_wrote():
    """openvino-genai's template engine would rewrite pythonic calls in a template as a JSON object."""
    family = get_family("llama3_pythonic")
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": [1, None]}},
    }
    message = family.native_message({"role": "assistant", "content": "", "tool_calls": [call]})
    assert message == {"role": "assistant", "content": '[get_weather(city="Paris", n=[1, None])]'}
    _, [parsed] = family.parse(message["content"], TOOLS)
    assert parsed.arguments == {"city": "Paris", "n": [1, None]}
    assert family.native_message({"role": "user", "content": "x"}) == {"role": "user", "content": "x"}
