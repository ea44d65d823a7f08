"""Llama 3.2 (1B/3B) / Llama 4 pythonic calls: ``[get_weather(city="Paris"), f(a=1)]``.

Arguments are Python literals, read with :func:`ast.literal_eval` (never evaluated as code).
openvino-genai's ``Llama3PythonicToolParser`` was measured (2026.4) to keep only the first of
several calls, so the parsing here is our own.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

import openvino_genai as ov_genai

from ...types import ToolCall, ToolCallDict, ToolSpec
from .base import SOG, PartialCall, ToolFamily

_OPEN = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
_OPEN_PREFIX = re.compile(r"\[\s*(?:[A-Za-z_][\w.]*\s*)?$")


def _literal(node: ast.expr) -> Any:
    return ast.literal_eval(node)


def _python_literal(value: Any) -> str:
    """``value`` as a Python literal, strings in double quotes as the models write them."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python_literal(str(k))}: {_python_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


class Llama3PythonicFamily(ToolFamily):
    """Calls written as a Python list of function calls with keyword arguments."""

    name = "llama3_pythonic"
    tool_result_role = "ipython"  # Llama 3.x templates render role "tool" or "ipython" as the ipython turn
    markers = ("[",)
    template_hints = ("[func_name1(",)
    trigger = "["

    def find_marker(self, text: str) -> int:
        m = _OPEN.search(text)
        return m.start() if m else -1

    def pending(self, text: str) -> int:
        m = _OPEN_PREFIX.search(text)
        return len(text) - m.start() if m else 0

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        parts = [
            f"{c['name']}("
            + ", ".join(f"{k}={_python_literal(v)}" for k, v in (c.get("arguments") or {}).items())
            + ")"
            for c in calls
        ]
        return "[" + ", ".join(parts) + "]"

    def native_message(self, message: dict[str, Any]) -> dict[str, Any]:
        # openvino-genai's template engine (minja) only takes a template as rendering tool calls if a
        # probe call's arguments come out as JSON ('"arg":') or '<parameter=arg>'; a template that
        # writes them in this family's form fails the probe, and minja then rewrites every earlier
        # call as a {"tool_calls": [...]} JSON object in the content (measured on a trained Llama 3.2
        # model, tests/chat/test_trained_families.py). The calls go back as the text the model wrote.
        calls = message.get("tool_calls") or []
        if not calls:
            return message
        text = self.render_calls(
            [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls]
        )
        return {k: v for k, v in message.items() if k != "tool_calls"} | {
            "content": f"{message.get('content') or ''}{text}"
        }

    def call_tag(self, tool: ToolSpec) -> Any:
        # keyword arguments with Python-literal values typed by the schema: "[name(" k=v, ... ")]"
        props = tool["parameters"].get("properties", {}) or {}
        kinds = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
                 "array": "list", "object": "dict"}  # fmt: skip
        needed = set(tool["parameters"].get("required", []) or [])
        pairs = [(f'"{k}=" {kinds.get(str((v or {}).get("type")), "value")}', k in needed) for k, v in props.items()]
        # each argument once, in the schema's order (required ones first); optional ones may be left out
        required = [p for p, needed in pairs if needed]
        optional = [p for p, needed in pairs if not needed]
        if required:
            kv = ' ", " '.join(f"({p})" for p in required) + "".join(f' (", " {p})?' for p in optional)
        elif optional:
            starts = [f"({p})" + "".join(f' (", " {q})?' for q in optional[i + 1 :]) for i, p in enumerate(optional)]
            kv = '"" | ' + " | ".join(f"({alt})" for alt in starts)
        else:
            kv = '""'
        ebnf = (
            f"root ::= {kv}\n"
            'value ::= string | number | boolean | "None" | list | dict\n'
            'string ::= "\\"" [^"\\\\\\n]* "\\""\n'
            'integer ::= "-"? ("0" | [1-9] [0-9]*)\n'
            'number ::= integer ("." [0-9]+)?\n'
            'boolean ::= "True" | "False"\n'
            'list ::= "[" (value (", " value)*)? "]"\n'
            'dict ::= "{" (string ": " value (", " string ": " value)*)? "}"\n'
        )
        return SOG.Tag(f"[{tool['name']}(", SOG.EBNF(ebnf), ")]")

    def guided_config(self, tools: Sequence[ToolSpec], *, parallel: bool = True) -> ov_genai.StructuredOutputConfig:
        # one trigger per tool (the whole "[name("), so a "[" in plain text (a link, a list) stays free
        grammar = SOG.TriggeredTags(
            triggers=[f"[{t['name']}(" for t in tools],
            tags=[self.call_tag(t) for t in tools],
            at_least_one=False,
            stop_after_first=True,
        )
        return ov_genai.StructuredOutputConfig(compound_grammar=grammar)

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        m = _OPEN.search(text)
        if m is None:
            return text, []
        names = {t["name"] for t in tools}
        start = m.start()
        for end in [i for i, ch in enumerate(text) if ch == "]" and i > start]:
            calls = self._calls(text[start : end + 1], names)
            if calls is not None:
                return (text[:start] + text[end + 1 :]).strip(), calls
        return text, []

    def _calls(self, source: str, names: set[str]) -> list[ToolCall] | None:
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            return None
        if not isinstance(tree.body, ast.List) or not tree.body.elts:
            return None
        calls = []
        for node in tree.body.elts:
            if not isinstance(node, ast.Call) or node.args:
                return None
            name = ast.unparse(node.func)
            if names and name not in names:
                return None
            try:
                args = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
            calls.append(ToolCall(id=self.new_id(), name=name, arguments=args))
        return calls

    def partial(self, text: str) -> list[PartialCall]:
        return []  # Python literals are not JSON: calls are reported whole at the end


__all__ = ["Llama3PythonicFamily"]
