"""JSON-schema helpers for structured output: OpenAI ``response_format``, JSON mode, token budgets.

- :data:`ANY_JSON_OBJECT`: the schema of "any JSON object" (JSON mode without a schema).
- :func:`response_format_schema`: an OpenAI-shaped ``response_format`` -> the JSON schema to constrain to.
- :func:`minimal_json`: the shortest JSON text valid for a schema, to tell how many tokens a schema
  needs at least (its keys and punctuation) before any work is done.
- :func:`truncation_message`: the error text when constrained output was cut at the token limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParameterError

#: JSON mode: decoding constrained to any JSON object.
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}

_MAX_DEPTH = 32


def response_format_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema an OpenAI-shaped ``response_format`` asks for; ``None`` for plain text.

    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}`` -> the
    schema; ``{"type": "json_object"}`` -> :data:`ANY_JSON_OBJECT`; ``{"type": "text"}`` or ``None``
    -> ``None``. Anything else raises :class:`InvalidParameterError`.

    >>> response_format_schema({"type": "json_object"})
    {'type': 'object'}
    >>> response_format_schema({"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "integer"}}})
    {'type': 'integer'}
    """
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(ANY_JSON_OBJECT)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping):
            return dict(schema)
        raise InvalidParameterError(
            "response_format of type 'json_schema' needs a schema: "
            '{"type": "json_schema", "json_schema": {"name": "<name>", "schema": {...}}}; '
            f"got {response_format!r:.200}."
        )
    raise InvalidParameterError(
        f"response_format={response_format!r:.200} is not understood: use "
        '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}, {"type": "json_object"} '
        'or {"type": "text"}.'
    )


def minimal_json(schema: Mapping[str, Any]) -> str:
    """The shortest JSON text (compact) that is valid for ``schema``: required properties only, empty
    strings, zeros, empty arrays, the shortest ``anyOf``/``oneOf`` branch; ``$ref`` s into ``$defs``
    are followed. A lower bound on what constrained decoding must write.

    >>> minimal_json({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    ...               "required": ["name", "age"]})
    '{"name":"","age":0}'
    """
    return json.dumps(_minimal(schema, schema, 0), separators=(",", ":"), ensure_ascii=False)


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _minimal(schema: Any, root: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _minimal(_resolve(str(schema["$ref"]), root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return min(schema["enum"], key=lambda v: len(json.dumps(v)))
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            values = [_minimal(b, root, depth + 1) for b in branches]
            return min(values, key=lambda v: len(json.dumps(v)))
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(str(part["$ref"]), root) if isinstance(part, Mapping) and "$ref" in part else part
            if isinstance(part, Mapping):
                merged.update(part)
        return _minimal(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else (kind[0] if kind else None)
    if kind is None and ("properties" in schema or "required" in schema):
        kind = "object"
    if kind == "object":
        properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
        return {
            name: _minimal(properties.get(name, {}), root, depth + 1)
            for name in schema.get("required") or ()
            if isinstance(name, str)
        }
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        return [_minimal(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        return "a" * int(schema.get("minLength") or 0)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return low if isinstance(low, (int, float)) and not isinstance(low, bool) and low > 0 else 0
    if kind == "boolean":
        return True
    return None


def truncation_message(limit_name: str, limit: int | None, output: str, needed: int | None = None) -> str:
    """The error text when constrained output was cut at the token limit (``limit_name`` is the
    framework's name of the setting, e.g. ``max_tokens``).

    >>> truncation_message("max_tokens", 16, '{"name": "Al')  # doctest: +ELLIPSIS
    'The structured output was cut at max_tokens=16 before its JSON was complete, ...'
    """
    shown = f"{limit_name}={limit}" if limit is not None else limit_name
    floor = f" The schema alone needs at least {needed} tokens." if needed else ""
    return (
        f"The structured output was cut at {shown} before its JSON was complete, so it cannot be parsed.{floor} "
        f"Raise {limit_name} (on the model or per call) so the whole object fits, or ask for a smaller schema. "
        f"Output so far: {output!r:.200}"
    )


__all__ = ["ANY_JSON_OBJECT", "minimal_json", "response_format_schema", "truncation_message"]
