"""Plain data types shared by the engine and the adapters.

Messages and tools are plain dicts (the shape every chat API uses), so adapters translate with
a few lines and users can call the engine directly::

    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 6 times 7?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "name": "multiply", "arguments": {"a": 6, "b": 7}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1", "name": "multiply"},
    ]
    tool = {"name": "multiply", "description": "Multiply two ints.", "parameters": {"type": "object", ...}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired

from .errors import InvalidParameterError

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]
ToolChoice = Literal["auto", "required", "none"] | str


class ToolCallDict(TypedDict):
    """A tool call as it appears inside an assistant message."""

    id: str
    name: str
    arguments: dict[str, Any]


class Message(TypedDict):
    """One chat message. ``tool_calls`` only on assistant messages, ``tool_call_id`` on tool ones."""

    role: Role
    content: str
    tool_calls: NotRequired[list[ToolCallDict]]
    tool_call_id: NotRequired[str]
    name: NotRequired[str]
    #: an assistant message's reasoning (its ``<think>`` block), sent back as the template expects
    reasoning_content: NotRequired[str]


class ToolSpec(TypedDict):
    """A tool the model may call: a name, a description and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A tool call parsed from (or constrained into) the model's output."""

    id: str
    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> ToolCallDict:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: ``id`` and ``name`` come first, then argument text.

    Pieces with the same ``index`` belong to one call; their ``arguments`` joined are the call's
    arguments as JSON text (``json.loads`` of them equals the final :class:`ToolCall`'s arguments).
    """

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Timing:
    """Timing of one generation, in milliseconds and tokens per second.

    ``ttft_ms``: time to the first generated token; ``tpot_ms``: mean time per output token after
    the first; ``throughput_tps``: output tokens per second of decoding (all from openvino-genai's
    perf metrics where it has them); ``total_ms``: request to last token, queueing included;
    ``load_ms``: how long loading (and compiling) the model took.
    """

    ttft_ms: float
    tpot_ms: float
    throughput_tps: float
    total_ms: float
    load_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: round(getattr(self, f.name), 3) for f in fields(self)}


@dataclass(frozen=True)
class Generation:
    """The result of :meth:`openvino_llm.Engine.generate`."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timing: Timing
    tool_calls: list[ToolCall] = field(default_factory=list)
    model_name: str = ""
    #: the model's reasoning (its ``<think>`` block), never part of ``text``
    reasoning: str = ""


@dataclass(frozen=True)
class Chunk:
    """One piece of a stream. The last chunk has ``finish_reason`` (and usage/timing/tool calls) set."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timing: Timing | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    model_name: str = ""
    #: reasoning text produced since the previous chunk (never part of ``text``)
    reasoning: str = ""
    #: tool-call pieces produced since the previous chunk (name first, then argument text)
    tool_call_deltas: list[ToolCallDelta] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.finish_reason is not None


def _check_range(name: str, value: float | int | None, lo: float, hi: float, *, lo_open: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameterError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    if math.isnan(value) or math.isinf(value):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}.")
    if value < lo or value > hi or (lo_open and value == lo):
        lo_bracket = "(" if lo_open else "["
        raise InvalidParameterError(f"{name}={value!r} is out of range: it must be in {lo_bracket}{lo}, {hi}].")


@dataclass(frozen=True)
class GenerationParams:
    """What to generate and how. ``None`` means "the model's own default".

    Validated on construction: a bad value raises :class:`InvalidParameterError` before any work.

    - ``tools`` / ``tool_choice``: tools the model may call; ``"auto"`` (default when tools are
      given), ``"required"`` (decoding constrained to a call of one of the tools), ``"none"``, or a
      tool name (constrained to a call of that tool).
    - ``json_schema``: constrain the output to JSON matching this schema (structured output).
      ``{"type": "object"}`` gives plain JSON mode.
    - ``parallel_tool_calls``: ``False`` keeps the reply to one call; ``strict``: arguments follow
      the tools' schemas exactly (they always do once a call opens: decoding is guided).
    - ``reasoning``: turn the model's thinking on/off (Qwen3's ``enable_thinking``; for templates
      that open the block themselves, ``False`` closes it at once); ``None``: the template's default.
    - ``chat_template_kwargs``: extra variables for the chat template.
    - ``tool_format``: the tool-call family (``"hermes"``, ``"qwen3"``, ``"llama3_json"``, ...)
      instead of the one detected from the chat template.
    - ``min_new_tokens``: the end-of-sequence token (and stop tokens) cannot end the reply before this
      many new tokens (vLLM's ``min_tokens``); stop strings and ``max_new_tokens`` still can.
    - ``num_assistant_tokens`` / ``assistant_confidence_threshold``: speculative decoding per request
      (tokens proposed per step, or propose while the draft model is at least this confident), on an
      engine loaded with ``draft_model=`` or ``prompt_lookup=True``; ``None``: the engine's setting.
    """

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    min_new_tokens: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    json_schema: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    strict: bool | None = None
    reasoning: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    tool_format: str | None = None
    num_assistant_tokens: int | None = None
    assistant_confidence_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None:
            if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
                raise InvalidParameterError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}.")
            if self.max_new_tokens < 1:
                raise InvalidParameterError(f"max_new_tokens={self.max_new_tokens} is out of range: it must be >= 1.")
        m = self.min_new_tokens
        if m is not None:
            if isinstance(m, bool) or not isinstance(m, int) or m < 0:
                raise InvalidParameterError(f"min_new_tokens must be an int >= 0, got {m!r}.")
            if self.max_new_tokens is not None and m > self.max_new_tokens:
                raise InvalidParameterError(
                    f"min_new_tokens={m} is above max_new_tokens={self.max_new_tokens}: lower one of them."
                )
        _check_range("temperature", self.temperature, 0.0, 100.0)
        _check_range("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.top_k is not None:
            if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
                raise InvalidParameterError(f"top_k must be an int >= 0 (0 = no limit), got {self.top_k!r}.")
        _check_range("repetition_penalty", self.repetition_penalty, 0.0, 100.0, lo_open=True)
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise InvalidParameterError(f"seed must be an int >= 0, got {self.seed!r}.")
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        stop = tuple(stop or ())
        for s in stop:
            if not isinstance(s, str) or not s:
                raise InvalidParameterError(f"stop must be a list of non-empty strings, got {self.stop!r}.")
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "tools", tuple(self.tools or ()))
        for flag in ("parallel_tool_calls", "strict", "reasoning"):
            value = getattr(self, flag)
            if value is not None and not isinstance(value, bool):
                raise InvalidParameterError(f"{flag} must be True, False or None, got {value!r}.")
        kwargs = self.chat_template_kwargs
        if kwargs is not None and (not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs)):
            raise InvalidParameterError(
                f"chat_template_kwargs must be a dict of variable names to values, got {kwargs!r:.80}."
            )
        if self.tool_format is not None and not isinstance(self.tool_format, str):
            raise InvalidParameterError(f"tool_format must be a family name (a string), got {self.tool_format!r}.")
        n = self.num_assistant_tokens
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InvalidParameterError(f"num_assistant_tokens must be an int >= 1, got {n!r}.")
        _check_range("assistant_confidence_threshold", self.assistant_confidence_threshold, 0.0, 1.0, lo_open=True)
        if n is not None and self.assistant_confidence_threshold is not None:
            raise InvalidParameterError("Pass num_assistant_tokens or assistant_confidence_threshold, not both.")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise InvalidParameterError(
                f"json_schema must be a JSON schema dict, got {type(self.json_schema).__name__}."
            )

    def merged(self, **overrides: Any) -> GenerationParams:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise InvalidParameterError(
                f"Unknown generation parameter(s) {sorted(unknown)}; known: {sorted(f.name for f in fields(self))}."
            )
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
