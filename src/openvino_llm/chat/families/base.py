"""What every model family shares: the family interface, JSON scanning, partial calls, call ids.

A *family* is one way of writing tool calls: how the calls are opened in the output (``markers``),
how they are parsed (whole output and a stream prefix), how earlier calls are written back in a chat
template that does not know tools, and how decoding is guided once a call opens (the family's
trigger and its structural tags). Families never raise on malformed model output: a call that does
not parse stays in the text.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import openvino_genai as ov_genai

from ...types import Message, ToolCall, ToolCallDict, ToolSpec
from ..tools import new_call_id, tool_call_schema

SOG = ov_genai.StructuredOutputConfig


@dataclass(frozen=True)
class PartialCall:
    """A call as far as the stream has produced it.

    ``arguments`` is the raw text of the arguments so far (a JSON object prefix) when the family
    streams arguments, else ``""`` until the call is complete; ``complete`` is true once it is.
    """

    name: str
    arguments: str = ""
    complete: bool = False


_ID_ALPHABET = string.ascii_letters + string.digits


def new_short_id(n: int = 9) -> str:
    """A random alphanumeric id of ``n`` characters (Mistral's templates require exactly 9)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(n))


def json_value_end(text: str, start: int) -> int | None:
    """Index just after the JSON object/array starting at ``text[start]``; None if it is not closed yet."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def loads_first(text: str) -> tuple[Any, int] | None:
    """The first JSON value in ``text`` (leading whitespace skipped) and the index after it; None if none."""
    stripped = len(text) - len(text.lstrip())
    try:
        obj, end = json.JSONDecoder().raw_decode(text, stripped)
    except json.JSONDecodeError:
        return None
    return obj, end


_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n(.*?)\n?```$", re.S)


def unfence(text: str) -> str:
    """The body of a reply that is nothing but one Markdown code block (```json ... ```), else the text."""
    m = _FENCE.match(text.strip())
    return m.group(1) if m else text


def may_open_json_block(text: str) -> bool:
    """Whether a reply that starts with ``text`` may still turn out to be a code block holding only JSON.

    Small models (Qwen2.5-Coder-0.5B among them) sometimes answer a tool request with the call as a
    fenced JSON object instead of their native markup: such a reply is held back until it is decided.
    """
    s = text.lstrip()
    if len(s) < 3:
        return "```".startswith(s)
    if not s.startswith("```"):
        return False
    head, newline, body = s[3:].partition("\n")
    if not newline:
        return "json".startswith(head.strip().lower())
    return head.strip().lower() in ("", "json") and (not body.strip() or body.lstrip().startswith(("{", "[")))


def call_from_obj(obj: Any, names: set[str], *, new_id: Any = new_call_id) -> ToolCall | None:
    """A :class:`ToolCall` from ``{"name", "arguments"|"parameters"}`` (or OpenAI's nested form); None if not one."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {...}}
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
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    call_id = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else new_id()
    return ToolCall(id=call_id, name=name, arguments=args)


_NAME_KEY = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGS_KEY = re.compile(r'"(?:arguments|parameters)"\s*:\s*')


def partial_json_calls(text: str) -> list[PartialCall]:
    """Calls of the ``{"name": ..., "arguments"|"parameters": {...}}`` shape in a stream prefix.

    Each ``"name"`` key starts a call; the raw text of its arguments object follows as far as it is
    written. Arguments that are not an object (a JSON string, say) are left to the final parse.
    """
    out: list[PartialCall] = []
    pos = 0
    while True:
        m = _NAME_KEY.search(text, pos)
        if m is None:
            return out
        name = m.group(1)
        nxt = _NAME_KEY.search(text, m.end())
        limit = nxt.start() if nxt else len(text)
        a = _ARGS_KEY.search(text, m.end(), limit)
        if a is None or a.end() >= len(text) or text[a.end()] != "{":
            out.append(PartialCall(name, "", False))
            pos = m.end()
            continue
        end = json_value_end(text, a.end())
        if end is None:
            out.append(PartialCall(name, text[a.end() :], False))
            return out
        out.append(PartialCall(name, text[a.end() : end], True))
        pos = end


class ToolFamily:
    """One tool-call format. Subclasses set the class attributes and override what differs.

    - ``markers``: texts that open a call in the output; content before the first one is text.
    - ``template_hints``: substrings of a chat template that identify the family.
    - ``trigger``: the text that switches on guided decoding in ``tool_choice="auto"``.
    - ``parallel``: whether the family can write several calls in one reply.
    """

    name: ClassVar[str] = ""
    markers: ClassVar[tuple[str, ...]] = ()
    template_hints: ClassVar[tuple[str, ...]] = ()
    trigger: ClassVar[str] = ""
    parallel: ClassVar[bool] = True
    #: a reply made only of a JSON call (or list of calls), without any marker, also counts as calls
    bare_json: ClassVar[bool] = True
    #: the template reads the ``tools`` variable (else the tools go in via :meth:`native_history`;
    #: openvino-genai would inject a tool prompt of its own into a template that ignores ``tools``)
    template_tools: ClassVar[bool] = True
    #: the role tool results take when the template renders that role (Llama's ``ipython``): openvino-genai
    #: rewrites ``tool`` messages as a user turn of JSON for templates its probe takes as tool-less
    tool_result_role: ClassVar[str] = "tool"

    @classmethod
    def matches(cls, template: str, special_tokens: Sequence[str]) -> bool:
        """Whether a chat template (and the tokenizer's special tokens) belong to this family."""
        return bool(cls.template_hints) and all(h in template for h in cls.template_hints)

    def new_id(self) -> str:
        """A call id in the form this family's templates accept."""
        return new_call_id()

    # ---- prompting -------------------------------------------------------------------------------

    def tool_prompt(self, tools: Sequence[ToolSpec]) -> str:
        """A system-prompt section teaching this format, for chat templates that do not render tools."""
        listing = "\n".join(json.dumps({"type": "function", "function": t}, ensure_ascii=False) for t in tools)
        example = self.render_calls([{"id": "", "name": "<function-name>", "arguments": {"<arg>": "<value>"}}])
        return (
            "You may call one or more functions to answer the user. The available functions are:\n"
            f"<tools>\n{listing}\n</tools>\n"
            f"To call a function, reply exactly in this form:\n{example}\n"
            "When a function result is given to you, use it to answer the user."
        )

    def render_calls(self, calls: Sequence[ToolCallDict]) -> str:
        """Earlier calls as the assistant text the model would have written."""
        raise NotImplementedError

    def native_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """Adjust one message (already in the template's ``tool_calls`` shape) for the family's template."""
        return message

    def native_history(self, history: list[dict[str, Any]], tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
        """Adjust the whole history for the family's template (e.g. ids, tools in the system message)."""
        return [self.native_message(m) for m in history]

    # ---- decoding --------------------------------------------------------------------------------

    def forced_prefill(self) -> str:
        """Text put after the generation prompt when a call is forced (the output continues it)."""
        return ""

    def call_tag(self, tool: ToolSpec) -> Any:
        """The structural tag of one call of ``tool`` (begin, arguments constrained to its schema, end)."""
        raise NotImplementedError

    def guided_config(self, tools: Sequence[ToolSpec], *, parallel: bool = True) -> ov_genai.StructuredOutputConfig:
        """Free text, but once the model writes :attr:`trigger` the call is constrained to the tools."""
        tags = SOG.TriggeredTags(
            triggers=[self.trigger],
            tags=[self.call_tag(t) for t in tools],
            at_least_one=False,
            stop_after_first=not (parallel and self.parallel),
        )
        return ov_genai.StructuredOutputConfig(compound_grammar=tags)

    def forced_config(
        self, tools: Sequence[ToolSpec], only: str | None = None, *, parallel: bool = True
    ) -> ov_genai.StructuredOutputConfig:
        """The reply is one call (or, with ``parallel``, calls) of ``tools`` (or of the tool ``only``)."""
        chosen = [t for t in tools if only is None or t["name"] == only]
        tags = [self.call_tag(t) for t in chosen]
        grammar = tags[0] if len(tags) == 1 else SOG.Union(tags)
        return ov_genai.StructuredOutputConfig(compound_grammar=grammar)

    # ---- parsing ---------------------------------------------------------------------------------

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        """Split a whole output into (content, calls). Malformed calls stay in the content."""
        raise NotImplementedError

    def partial(self, text: str) -> list[PartialCall]:
        """The calls in ``text`` (the output from the first marker on) as far as they are written."""
        return partial_json_calls(text)

    def find_marker(self, text: str) -> int:
        """Index of the first call marker in ``text``, or -1."""
        hits = [i for i in (text.find(m) for m in self.markers) if i >= 0]
        return min(hits) if hits else -1

    def pending(self, text: str) -> int:
        """Length of the end of ``text`` that may be the start of a marker (held back while streaming)."""
        best = 0
        for m in self.markers:
            for n in range(min(len(m) - 1, len(text)), best, -1):
                if text.endswith(m[:n]):
                    best = n
                    break
        return best

    def fenced_calls(self, text: str, tools: Sequence[ToolSpec]) -> list[ToolCall] | None:
        """Calls when the whole reply is one code block that holds nothing but calls; else None."""
        body = unfence(text)
        if body is text or not self.bare_json:
            return None
        content, calls = self.parse(body, tools)
        return calls if calls and not content else None

    def parse_bare(self, text: str, tools: Sequence[ToolSpec]) -> list[ToolCall] | None:
        """Calls when ``text`` is nothing but a JSON call object or a list of them; else None."""
        stripped = unfence(text).strip()
        if not self.bare_json or not stripped.startswith(("{", "[")):
            return None
        first = loads_first(stripped)
        if first is None or stripped[first[1] :].strip():
            return None
        objs = first[0] if isinstance(first[0], list) else [first[0]]
        names = {t["name"] for t in tools}
        calls = [call_from_obj(o, names, new_id=self.new_id) for o in objs]
        if not calls or any(c is None for c in calls):
            return None
        return [c for c in calls if c is not None]


def json_call_schema(tools: Sequence[ToolSpec], args_key: str = "arguments", only: str | None = None) -> dict[str, Any]:
    """JSON schema of one ``{"name": ..., args_key: {...}}`` call of any of ``tools`` (or of ``only``)."""
    return tool_call_schema(tools, only=only, args_key=args_key)


def message_calls(message: Message) -> list[ToolCallDict]:
    """The tool calls of a message (empty list if it has none)."""
    return list(message.get("tool_calls") or [])


__all__ = [
    "PartialCall",
    "ToolFamily",
    "call_from_obj",
    "json_call_schema",
    "json_value_end",
    "loads_first",
    "may_open_json_block",
    "new_call_id",
    "new_short_id",
    "parse_json_calls",
    "partial_json_calls",
    "unfence",
]


_SEPARATORS = " \t\r\n;,"


def parse_json_calls(
    text: str, start: int, tools: Sequence[ToolSpec], *, new_id: Any = new_call_id
) -> tuple[list[ToolCall], int]:
    """JSON calls (objects, or lists of them) one after another from ``text[start]``, separated by
    whitespace, ``;`` or ``,``. Returns the calls and the index where the first non-call begins."""
    names = {t["name"] for t in tools}
    calls: list[ToolCall] = []
    pos = start
    while True:
        while pos < len(text) and text[pos] in _SEPARATORS:
            pos += 1
        if pos >= len(text) or text[pos] not in "{[":
            return calls, pos
        try:
            obj, end = json.JSONDecoder().raw_decode(text, pos)
        except json.JSONDecodeError:
            return calls, pos
        objs = obj if isinstance(obj, list) else [obj]
        parsed = [call_from_obj(o, names, new_id=new_id) for o in objs]
        if not parsed or any(c is None for c in parsed):
            return calls, pos
        calls.extend(c for c in parsed if c is not None)
        pos = end


class JsonCallsFamily(ToolFamily):
    """Families whose calls are JSON objects (or lists of them) after an optional prefix token.

    ``prefixes`` are texts that announce calls and are not part of the JSON (``<|python_tag|>``,
    ``[TOOL_CALLS]``); ``suffixes`` close them (``<|/tool_call|>``). Special tokens are usually
    dropped by detokenization, so the bare JSON opens a call too: ``markers`` lists both.
    """

    prefixes: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: calls are written as a JSON list (``[{...}, {...}]``) rather than bare objects
    in_list: ClassVar[bool] = False
    args_key: ClassVar[str] = "arguments"

    def parse(self, text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
        fenced = self.fenced_calls(text, tools)
        if fenced:
            return "", fenced
        at = self.find_marker(text)
        if at < 0:
            bare = self.parse_bare(text, tools)
            return ("", bare) if bare else (text, [])
        pos = at
        for prefix in self.prefixes:
            if text.startswith(prefix, pos):
                pos += len(prefix)
                break
        calls, end = parse_json_calls(text, pos, tools, new_id=self.new_id)
        if not calls:
            return text, []
        rest = text[end:]
        for suffix in self.suffixes:
            if rest.lstrip().startswith(suffix):
                rest = rest.lstrip()[len(suffix) :]
                break
        return (text[:at] + rest).strip(), calls

    def call_json(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, self.args_key: arguments}

    def call_tag(self, tool: ToolSpec) -> Any:
        begin = json.dumps(self.call_json(tool["name"], {}))[: -len("{}}")]  # '{"name": "f", "arguments": '
        if self.in_list:
            return SOG.Tag("[" + begin, SOG.JSONSchema(json.dumps(tool["parameters"])), "}]")
        return SOG.Tag(begin, SOG.JSONSchema(json.dumps(tool["parameters"])), "}")
