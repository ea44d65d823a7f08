"""Llama 3.1-3.3 JSON calls: ``{"name": "f", "parameters": {...}}``, optionally after ``<|python_tag|>``.

Several calls come separated by ``;`` or new lines. ``<|python_tag|>`` is a special token, so the
detokenized output usually shows only the JSON. openvino-genai's ``Llama3JsonToolParser`` was
measured (2026.4) to raise on ``;``-separated calls, so the parsing here is our own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...types import ToolCallDict
from .base import JsonCallsFamily


class Llama3JsonFamily(JsonCallsFamily):
    """Llama 3.1 / 3.2 / 3.3 with the JSON tool format of their official templates."""

    name = "llama3_json"
    prefixes = ("<|python_tag|>",)
    markers = ("<|python_tag|>", '{"name"', '{"type"')
    trigger = '{"name"'
    args_key = "parameters"

    @classmethod
    def matches(cls, template: str, special_tokens: Sequence[str]) -> bool:
        return "<|python_tag|>" in template or '"parameters": dictionary of argument name' in template

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        return "; ".join(json.dumps(self.call_json(c["name"], c.get("arguments") or {})) for c in calls)

    def native_message(self, message: dict[str, Any]) -> dict[str, Any]:
        # the official template renders one call per assistant message and raises on more:
        # several calls go back as the text the model wrote
        calls = message.get("tool_calls") or []
        if len(calls) > 1:
            text = self.render_calls(
                [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls]
            )
            return {k: v for k, v in message.items() if k != "tool_calls"} | {
                "content": f"{message.get('content') or ''}<|python_tag|>{text}"
            }
        return message


__all__ = ["Llama3JsonFamily"]
