"""Mistral ``[TOOL_CALLS]`` calls, with the 9-character call ids its templates require.

Two forms: ``[TOOL_CALLS][{"name": "f", "arguments": {...}}]`` (v3 tokenizers: Mistral 7B v0.3,
Nemo) and ``[TOOL_CALLS]f[ARGS]{...}`` (v11+: Mistral Small 3.2, Magistral, Devstral). The
control tokens are special, so detokenized output often shows ``[{...}]`` or ``f{...}`` only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from ...types import ToolCall, ToolCallDict, ToolSpec
from .base import JsonCallsFamily, PartialCall, new_short_id, partial_json_calls

_ID_RE = re.compile(r"^[A-Za-z0-9]{9}$")
_V11 = re.compile(r"(?:\[TOOL_CALLS\])?\s*([A-Za-z0-9_.:-]+)\s*(?:\[CALL_ID\][A-Za-z0-9]*)?\s*(?:\[ARGS\])?\s*(?=\{)")


def mistral_id(call_id: str) -> str:
    """``call_id`` as a 9-character alphanumeric id (kept if it is one; else a stable digest of it)."""
    if _ID_RE.match(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:9])


class MistralFamily(JsonCallsFamily):
    """Mistral / Mixtral / Nemo / Small: ``[TOOL_CALLS]`` then a JSON list of calls."""

    name = "mistral"
    prefixes = ("[TOOL_CALLS]",)
    markers = ("[TOOL_CALLS]", '[{"name"', '{"name"')
    template_hints = ("[TOOL_CALLS]",)
    trigger = '[{"name"'
    in_list = True

    def new_id(self) -> str:
        return new_short_id(9)

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        body = [{"name": c["name"], "arguments": c.get("arguments") or {}, "id": mistral_id(c["id"] or self.new_id())}
                for c in calls]  # fmt: skip
        return "[TOOL_CALLS]" + json.dumps(body, ensure_ascii=False)

    def native_message(self, message: dict[str, Any]) -> dict[str, Any]:
        out = dict(message)
        if out.get("tool_calls"):
            out["tool_calls"] = [{**c, "id": mistral_id(c.get("id") or self.new_id())} for c in out["tool_calls"]]
        if out.get("tool_call_id"):
            out["tool_call_id"] = mistral_id(out["tool_call_id"])
        return out

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        content, calls = super().parse(text, tools)
        if calls:
            return content, calls
        return self._parse_v11(text, tools)

    def _parse_v11(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        names = {t["name"] for t in tools}
        at = text.find("[TOOL_CALLS]")
        start = at if at >= 0 else 0
        calls: list[ToolCall] = []
        pos = start
        while True:
            m = _V11.match(text, pos)
            if m is None or (names and m.group(1) not in names) or (at < 0 and not calls and text[:pos].strip()):
                break
            try:
                args, end = json.JSONDecoder().raw_decode(text, m.end())
            except json.JSONDecodeError:
                break
            if not isinstance(args, dict):
                break
            calls.append(ToolCall(id=self.new_id(), name=m.group(1), arguments=args))
            pos = end
        if not calls:
            return text, []
        return (text[:start] + text[pos:]).strip(), calls

    def partial(self, text: str) -> list[PartialCall]:
        return partial_json_calls(text)


__all__ = ["MistralFamily", "mistral_id"]
