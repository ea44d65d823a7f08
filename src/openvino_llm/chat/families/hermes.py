"""Hermes / Qwen2.5 (and the default for templates without tools): ``<tool_call>{json}</tool_call>``.

::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

Several calls are several blocks. Guided decoding triggers on ``<tool_call`` without the ``>``:
Qwen2.5-Coder-0.5B opens calls as ``<tool_call name=...`` and leaves the JSON form; forcing the rest
of ``<tool_call>\\n`` after the trigger turns those into valid calls (measured, FIELD-NOTES).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openvino_genai as ov_genai

from ...types import ToolCall, ToolCallDict, ToolSpec
from ..tools import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, parse_tool_calls, render_tool_calls, tool_call_schema
from .base import SOG, PartialCall, ToolFamily, partial_json_calls


class HermesFamily(ToolFamily):
    """Hermes-style calls: JSON inside ``<tool_call>`` tags (Qwen2.5, Hermes, SmolLM2 with our prompt)."""

    name = "hermes"
    markers = ("<tool_call",)
    template_hints = (TOOL_CALL_OPEN,)
    trigger = "<tool_call"

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        return render_tool_calls(calls)

    def call_tag(self, tool: ToolSpec) -> Any:
        return SOG.Tag(TOOL_CALL_OPEN + "\n", SOG.JSONSchema(json.dumps(tool_call_schema([tool]))), TOOL_CALL_CLOSE)

    def guided_config(self, tools: Sequence[ToolSpec], *, parallel: bool = True) -> ov_genai.StructuredOutputConfig:
        # one tag whose schema is any of the tools: the model picks the tool inside the JSON
        tag = SOG.Tag(TOOL_CALL_OPEN + "\n", SOG.JSONSchema(json.dumps(tool_call_schema(tools))), TOOL_CALL_CLOSE)
        grammar = SOG.TriggeredTags(
            triggers=[self.trigger], tags=[tag], at_least_one=False, stop_after_first=not parallel
        )
        return ov_genai.StructuredOutputConfig(compound_grammar=grammar)

    def forced_prefill(self) -> str:
        return TOOL_CALL_OPEN + "\n"

    def forced_config(
        self, tools: Sequence[ToolSpec], only: str | None = None, *, parallel: bool = True
    ) -> ov_genai.StructuredOutputConfig:
        # the prompt ends with "<tool_call>\n" (forced_prefill): the output is the call's JSON
        return ov_genai.StructuredOutputConfig(json_schema=json.dumps(tool_call_schema(tools, only=only)))

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        fenced = self.fenced_calls(text, tools)
        return ("", fenced) if fenced else parse_tool_calls(text, tools)

    def partial(self, text: str) -> list[PartialCall]:
        return partial_json_calls(text)


__all__ = ["HermesFamily"]
