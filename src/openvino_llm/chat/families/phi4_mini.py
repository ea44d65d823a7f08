"""Phi-4-mini: ``<|tool_call|>[{"name": "f", "arguments": {...}}]<|/tool_call|>``.

Its template takes the tools as a JSON string in the system message's ``tools`` key (rendered
between ``<|tool|>`` tags) and has no slot for earlier calls, so those go back as the text the
model wrote. ``functools[...]`` (what some Phi-4-mini builds write) is read too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...types import ToolCallDict, ToolSpec
from .base import JsonCallsFamily


class Phi4MiniFamily(JsonCallsFamily):
    """Phi-4-mini(-instruct) tool calls."""

    name = "phi4_mini"
    prefixes = ("<|tool_call|>", "functools")
    suffixes = ("<|/tool_call|>",)
    markers = ("<|tool_call|>", "functools[", '[{"name"')
    template_hints = ("<|tool|>",)
    trigger = '[{"name"'
    in_list = True
    template_tools = False

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        body = [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in calls]
        return "<|tool_call|>" + json.dumps(body, ensure_ascii=False) + "<|/tool_call|>"

    def native_history(self, history: list[dict[str, Any]], tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
        out = []
        for m in history:
            if m.get("tool_calls"):
                calls = [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                         for c in m["tool_calls"]]  # fmt: skip
                m = {k: v for k, v in m.items() if k != "tool_calls"}
                m["content"] = f"{m.get('content') or ''}{self.render_calls(calls)}"
            out.append(m)
        if tools:
            listing = json.dumps(list(tools), ensure_ascii=False)
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "tools": listing}
            else:
                out.insert(0, {"role": "system", "content": "", "tools": listing})
        return out


__all__ = ["Phi4MiniFamily"]
