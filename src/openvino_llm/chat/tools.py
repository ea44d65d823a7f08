"""Tool calling: the tool prompt, the JSON schemas for constrained decoding, and parsing tool calls.

The wire format is the one Hermes/Qwen-style models are trained on, and the one we render earlier
calls in, so prompt, history and constraint agree::

    <tool_call>
    {"name": "multiply", "arguments": {"a": 6, "b": 7}}
    </tool_call>
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InvalidParameterError
from ..types import ToolCall, ToolCallDict, ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

_SCHEMA_KEYWORDS = {
    "type", "properties", "anyOf", "oneOf", "allOf", "$ref", "enum", "const", "items", "$defs", "definitions",
}  # fmt: skip
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_BLOCK_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.DOTALL)


def new_call_id() -> str:
    """A fresh tool-call id in the usual ``call_...`` shape."""
    return "call_" + uuid.uuid4().hex[:24]


def validate_json_schema(schema: Any, *, what: str = "json_schema") -> dict[str, Any]:
    """Check that ``schema`` looks like a JSON schema (a JSON-serializable dict with schema keywords)."""
    if not isinstance(schema, dict):
        raise InvalidParameterError(
            f"{what} must be a JSON schema dict such as {{'type': 'object', 'properties': {{...}}}}, "
            f"got {type(schema).__name__}: {schema!r:.80}"
        )
    if not (_SCHEMA_KEYWORDS & schema.keys()):
        raise InvalidParameterError(
            f"{what} is not a JSON schema: it has none of the keywords {sorted(_SCHEMA_KEYWORDS)} "
            f"(got keys {sorted(schema)[:10]}). Pass e.g. a Pydantic model's model_json_schema()."
        )
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as e:
        raise InvalidParameterError(f"{what} is not JSON-serializable: {e}") from None
    return schema


def validate_tools(tools: Iterable[ToolSpec]) -> tuple[ToolSpec, ...]:
    """Check tool definitions; return them normalized (description defaulted, parameters an object schema)."""
    out: list[ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidParameterError(
                f"Tool #{i} must be a dict with 'name', 'description' and 'parameters' (a JSON schema), "
                f"got {tool!r:.100}"
            )
        name = tool["name"]
        if not _NAME_RE.match(name):
            raise InvalidParameterError(
                f"Tool name {name!r} is invalid: use 1-128 letters, digits, '_', '-', '.' or ':'."
            )
        if name in seen:
            raise InvalidParameterError(f"Tool name {name!r} is defined twice; tool names must be unique.")
        seen.add(name)
        params = tool.get("parameters") or {"type": "object", "properties": {}}
        validate_json_schema(params, what=f"parameters of tool {name!r}")
        out.append({"name": name, "description": str(tool.get("description") or ""), "parameters": params})
    return tuple(out)


def check_tool_choice(tool_choice: str | None, tools: Sequence[ToolSpec]) -> str | None:
    """Normalize ``tool_choice``: None/"auto"/"required"/"none" or the name of one of ``tools``."""
    if tool_choice in (None, "auto", "none"):
        return tool_choice
    if tool_choice in ("required", "any"):
        if not tools:
            raise InvalidParameterError(f"tool_choice={tool_choice!r} needs at least one tool; none were given.")
        return "required"
    names = [t["name"] for t in tools]
    if isinstance(tool_choice, str) and tool_choice in names:
        return tool_choice
    raise InvalidParameterError(
        f"tool_choice={tool_choice!r} is not a known tool. Use 'auto', 'required', 'none' or one of {names}."
    )


def tool_system_prompt(tools: Sequence[ToolSpec]) -> str:
    """The system prompt section that tells a model without native tool support how to call tools."""
    listing = "\n".join(json.dumps({"type": "function", "function": t}, ensure_ascii=False) for t in tools)
    return (
        "You may call one or more functions to answer the user. The available functions are:\n"
        f"<tools>\n{listing}\n</tools>\n"
        "To call a function, reply with a JSON object inside tags, exactly like this:\n"
        f'{TOOL_CALL_OPEN}\n{{"name": "<function-name>", "arguments": {{<arguments as JSON>}}}}\n{TOOL_CALL_CLOSE}\n'
        "When a function result is given to you, use it to answer the user."
    )


def render_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """One call in the wire format, as the model should produce it."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def render_tool_calls(calls: Sequence[ToolCallDict]) -> str:
    return "\n".join(render_tool_call(c["name"], c.get("arguments") or {}) for c in calls)


def _hoist_defs(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Move ``$defs``/``definitions`` of a sub-schema to the root so its ``#/$defs/..`` refs still resolve."""
    schema = dict(schema)
    for key in ("$defs", "definitions"):
        for name, sub in (schema.pop(key, None) or {}).items():
            if name in defs and defs[name] != sub:
                raise InvalidParameterError(
                    f"Two tools define different sub-schemas both named {name!r}; rename one of them."
                )
            defs[name] = sub
    return schema


def _rewrite_definitions_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/definitions/", "#/$defs/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_definitions_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_definitions_refs(v) for v in node]
    return node


def tool_call_schema(
    tools: Sequence[ToolSpec], only: str | None = None, *, args_key: str = "arguments"
) -> dict[str, Any]:
    """JSON schema of one call ``{"name": ..., "arguments": {...}}`` of any tool (or of ``only``).

    ``args_key`` names the arguments member (Llama 3 writes ``"parameters"``).
    """
    defs: dict[str, Any] = {}
    branches = []
    for tool in tools:
        if only is not None and tool["name"] != only:
            continue
        params = _hoist_defs(_rewrite_definitions_refs(tool["parameters"]), defs)
        branches.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [tool["name"]]}, args_key: params},
                "required": ["name", args_key],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


def _call_from_obj(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI-style {"type":"function","function":{...}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or (names and name not in names):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(id=new_call_id(), name=name, arguments=args)


def _loads_lenient(text: str) -> Any:
    """``json.loads`` of the first JSON value in ``text`` (trailing junk ignored); None if there is none."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except json.JSONDecodeError:
        return None


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
    """Split model output into (content text, tool calls).

    Understands ``<tool_call>{json}</tool_call>`` blocks (an unterminated last block too) and, failing
    those, a reply that is nothing but a JSON call object (or a list of them) naming a known tool.
    Calls naming unknown tools or with unparsable JSON are left in the text.
    """
    names = {t["name"] for t in tools}
    calls: list[ToolCall] = []
    if TOOL_CALL_OPEN in text:
        kept: list[str] = []
        pos = 0
        for m in _BLOCK_RE.finditer(text):
            call = _call_from_obj(_loads_lenient(m.group(1)), names)
            kept.append(text[pos : m.start()])
            if call is None:
                kept.append(m.group(0))
            else:
                calls.append(call)
            pos = m.end()
        kept.append(text[pos:])
        return "".join(kept).strip() if calls else text, calls
    obj = _loads_lenient(text)
    if obj is not None and text.strip().startswith(("{", "[")):
        objs = obj if isinstance(obj, list) else [obj]
        parsed = [_call_from_obj(o, names) for o in objs]
        if parsed and all(c is not None for c in parsed):
            return "", [c for c in parsed if c is not None]
    return text, []


__all__ = [
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "TOOL_RESPONSE_CLOSE",
    "TOOL_RESPONSE_OPEN",
    "check_tool_choice",
    "new_call_id",
    "parse_tool_calls",
    "render_tool_call",
    "render_tool_calls",
    "tool_call_schema",
    "tool_system_prompt",
    "validate_json_schema",
    "validate_tools",
]
