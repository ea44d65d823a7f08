"""Qwen3: Hermes-style ``<tool_call>`` JSON calls plus ``<think>`` reasoning; and Qwen3-Coder's XML form.

Qwen3-Coder (and Qwen3.5) write calls as XML inside the same tags::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

A parameter's text is taken as a string when the tool's schema says so, else read as JSON (falling
back to the raw text). Guided decoding uses openvino-genai's ``QwenXMLParametersFormat``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ...types import ToolCall, ToolCallDict, ToolSpec
from ..tools import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from .base import SOG, PartialCall, ToolFamily
from .hermes import HermesFamily


class Qwen3Family(HermesFamily):
    """Qwen3 / QwQ: the Hermes call format; reasoning in ``<think>`` blocks."""

    name = "qwen3"
    template_hints = (TOOL_CALL_OPEN, "<think>")


_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)</function>", re.DOTALL)
_FUNCTION_OPEN = re.compile(r"<function=([^>\n]+)>")
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.DOTALL)


def _param_value(raw: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind and len(kind) == 1):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


class Qwen3CoderFamily(ToolFamily):
    """Qwen3-Coder: ``<tool_call><function=name><parameter=p>value</parameter></function></tool_call>``."""

    name = "qwen3_coder"
    markers = ("<tool_call", "<function=")
    template_hints = ("<function=", "<parameter=")
    trigger = "<tool_call"
    bare_json = False

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        blocks = []
        for c in calls:
            params = "".join(
                f"<parameter={k}>\n{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}\n</parameter>\n"
                for k, v in (c.get("arguments") or {}).items()
            )
            blocks.append(f"{TOOL_CALL_OPEN}\n<function={c['name']}>\n{params}</function>\n{TOOL_CALL_CLOSE}")
        return "\n".join(blocks)

    def call_tag(self, tool: ToolSpec) -> Any:
        return SOG.Tag(
            f"{TOOL_CALL_OPEN}\n<function={tool['name']}>\n",
            SOG.QwenXMLParametersFormat(json.dumps(tool["parameters"])),
            f"</function>\n{TOOL_CALL_CLOSE}",
        )

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        by_name = {t["name"]: t for t in tools}
        calls: list[ToolCall] = []
        kept: list[str] = []
        pos = 0
        for m in _FUNCTION.finditer(text):
            name = m.group(1).strip()
            tool = by_name.get(name)
            if tool is None and by_name:
                continue
            props = (tool or {}).get("parameters", {}).get("properties", {})  # type: ignore[union-attr]
            args = {k.strip(): _param_value(v, props.get(k.strip(), {})) for k, v in _PARAMETER.findall(m.group(2))}
            start, end = m.start(), m.end()
            # take the enclosing <tool_call> ... </tool_call> with the call
            before = text[pos:start]
            open_at = before.rfind(TOOL_CALL_OPEN)
            if open_at >= 0 and not before[open_at + len(TOOL_CALL_OPEN) :].strip():
                start = pos + open_at
            after = text[end:]
            if after.lstrip().startswith(TOOL_CALL_CLOSE):
                end += len(after) - len(after.lstrip()) + len(TOOL_CALL_CLOSE)
            kept.append(text[pos:start])
            calls.append(ToolCall(id=self.new_id(), name=name, arguments=args))
            pos = end
        if not calls:
            return text, []
        kept.append(text[pos:])
        return "".join(kept).strip(), calls

    def partial(self, text: str) -> list[PartialCall]:
        # arguments are XML, not JSON text: names stream now, arguments come whole at the end
        return [PartialCall(m.group(1).strip()) for m in _FUNCTION_OPEN.finditer(text)]


__all__ = ["Qwen3CoderFamily", "Qwen3Family"]
