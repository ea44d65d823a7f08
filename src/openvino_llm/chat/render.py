"""Messages (and tools) to prompt text, with the model's own chat template.

The template is applied exactly once, here; the engine then tokenizes the result without adding
special tokens again. Models whose template knows about tools (Qwen2.5, Llama 3.1, ...) get the
tools, earlier tool calls and tool results in their native form, adjusted by the model's family
(:mod:`openvino_llm.chat.families`: Mistral's 9-character ids, Phi-4-mini's tools in the system
message, ...); for the others (SmolLM2, plain ChatML) we render a tool section into the system
prompt and the calls/results as text in the format the model is asked to answer in (Hermes
``<tool_call>`` unless a ``tool_format`` says otherwise). An assistant message's reasoning goes
back as ``reasoning_content`` to templates that use it, and is dropped for the others.

openvino-genai's template engine (minja) probes each template and, where the probe fails (Phi-4-mini's
template cannot render the probe's assistant turn with no content), rewrites tool results into user
turns holding ``{"tool_response": ...}`` JSON. For such a template a history with tool results is
rendered with Python's jinja2 instead (the same sandbox and options as Hugging Face's
``apply_chat_template``), so the result goes back in the template's own form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
import openvino_genai as ov_genai

from ..errors import InvalidParameterError
from ..types import Message, ToolSpec
from .families import HermesFamily, ToolFamily, detect_family, get_family
from .reasoning import template_reasons
from .tools import TOOL_CALL_OPEN, TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN

_ROLES = ("system", "user", "assistant", "tool")
_SPECIAL_SHAPE = re.compile(r"<\|?[^<>\s]{1,40}\|?>|\[/?[A-Z_]{2,20}\]")
_BREAK = "\u200b"  # zero-width space: splits a special token's text so it tokenizes as plain text
_PROBE_RESULT = "tool-result-probe-5b1e"
_POLYFILL_MARK = '"tool_response":'


def special_token_texts(tokenizer: ov_genai.Tokenizer) -> tuple[str, ...]:
    """Texts the tokenizer turns into one special/added token even inside plain text (``<|im_end|>``...)."""
    found = []
    for raw in tokenizer.get_vocab():
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if (
            _SPECIAL_SHAPE.fullmatch(text)
            and tokenizer.encode(f"x{text}x", add_special_tokens=False).input_ids.shape[-1] == 3
        ):
            found.append(text)
    return tuple(sorted(found, key=len, reverse=True))


def normalize_messages(messages: str | Sequence[Message]) -> list[Message]:
    """Validate ``messages`` (a string is one user message) and return a clean list of message dicts."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, dict)):
        raise InvalidParameterError(
            f"messages must be a string or a list of {{'role', 'content'}} dicts, got {type(messages).__name__}."
        )
    if not messages:
        raise InvalidParameterError(
            "messages is empty: pass at least one message, e.g. [{'role': 'user', 'content': 'Hi'}]."
        )
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidParameterError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}."
            )
        role = m.get("role")
        if role not in _ROLES:
            raise InvalidParameterError(f"messages[{i}] has role {role!r}; the roles are {list(_ROLES)}.")
        content = m.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise InvalidParameterError(
                f"messages[{i}] content must be text, got {type(content).__name__}. This model takes text only: "
                "join text parts into one string and leave out images or other media."
            )
        msg: Message = {"role": role, "content": content}
        if m.get("tool_calls"):
            if role != "assistant":
                raise InvalidParameterError(
                    f"messages[{i}] has tool_calls but role {role!r}; only assistant messages do."
                )
            calls = []
            for c in m["tool_calls"]:
                if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                    raise InvalidParameterError(
                        f"messages[{i}] tool_calls entries need 'name' and 'arguments': {c!r:.100}"
                    )
                args = c.get("arguments") or {}
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except json.JSONDecodeError as e:
                        raise InvalidParameterError(f"messages[{i}] tool call arguments are not JSON: {e}") from None
                calls.append({"id": str(c.get("id") or ""), "name": c["name"], "arguments": args})
            msg["tool_calls"] = calls
        for key in ("tool_call_id", "name"):
            if m.get(key):
                msg[key] = str(m[key])  # type: ignore[literal-required]
        reasoning = m.get("reasoning_content")
        if reasoning:
            if not isinstance(reasoning, str):
                raise InvalidParameterError(
                    f"messages[{i}] reasoning_content must be text, got {type(reasoning).__name__}."
                )
            if role == "assistant":
                msg["reasoning_content"] = reasoning
        out.append(msg)
    return out


class ChatRenderer:
    """Renders message lists for one tokenizer's chat template."""

    def __init__(self, tokenizer: ov_genai.Tokenizer) -> None:
        self._tokenizer = tokenizer
        template = tokenizer.chat_template or ""
        self.template = template
        self.has_template = bool(template.strip())
        self._special = special_token_texts(tokenizer)
        detected = detect_family(template, self._special)
        self.native_tools = "tools" in template and ("tool_call" in template or detected.name != HermesFamily.name)
        #: the tool-call family: detected from a template that renders tools, else Hermes (our prompt)
        self.family: ToolFamily = detected if self.native_tools else HermesFamily()
        #: whether the template knows reasoning blocks (``<think>`` ... ``</think>``)
        self.reasons = template_reasons(template)
        self._keeps_reasoning = "reasoning_content" in template
        #: whether openvino-genai's template engine rewrites tool results (then jinja2 renders them)
        self.polyfills_tool_results = self.native_tools and self._probe_polyfill()
        self._jinja: jinja2.Template | None = None

    def family_for(self, tool_format: str | None) -> ToolFamily:
        """The family to use: ``tool_format`` if given, else the detected one."""
        return self.family if tool_format is None else get_family(tool_format)

    def defuse(self, text: str) -> str:
        """``text`` with every special-token string broken up, so content can never open a new turn."""
        for token in self._special:
            if token in text:
                text = text.replace(token, token[0] + _BREAK + token[1:])
        return text

    def render(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        *,
        prefill: str = "",
        family: ToolFamily | None = None,
        extra_context: dict[str, Any] | None = None,
    ) -> str:
        """The prompt text for ``messages``, ending with the assistant generation prompt (+ ``prefill``).

        ``family`` overrides the detected tool-call family; ``extra_context`` holds extra chat-template
        variables (``enable_thinking``, ...).
        """
        family = family or self.family
        messages = [{**m, "content": self.defuse(m["content"])} for m in messages]  # type: ignore[misc]
        native_tools = self.native_tools and (family is self.family or family.matches(self.template, self._special))
        if native_tools:
            history = family.native_history([self._native(m, self._keeps_reasoning) for m in messages], tools)
            role = family.tool_result_role
            if role != "tool" and re.search(rf"""role\s*==\s*['"]{role}['"]""", self.template):
                history = [{**m, "role": role} if m["role"] == "tool" else m for m in history]
            native = [{"type": "function", "function": dict(t)} for t in tools] if family.template_tools else []
            native = native or None
        else:
            history = [self._as_text(m, family) for m in messages]
            native = None
            if tools:
                section = family.tool_prompt(tools)
                if history and history[0]["role"] == "system":
                    history[0] = {"role": "system", "content": f"{history[0]['content']}\n\n{section}".strip()}
                else:
                    history.insert(0, {"role": "system", "content": section})
        if not self.has_template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in history) + "assistant: " + prefill
        try:
            if self.polyfills_tool_results and any(m["role"] == "tool" for m in history):
                prompt = self.render_with_jinja(history, native, extra_context)
            else:
                prompt = self._tokenizer.apply_chat_template(
                    history, add_generation_prompt=True, tools=native, extra_context=extra_context or None
                )
        except Exception as e:  # the template itself raised (e.g. "roles must alternate")
            raise InvalidParameterError(
                f"The model's chat template rejected these messages: {e}. "
                f"Roles in order: {[m['role'] for m in messages]}."
            ) from None
        return prompt + prefill

    def render_with_jinja(
        self,
        history: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        extra_context: dict[str, Any] | None = None,
    ) -> str:
        """``history`` through the chat template with Python's jinja2, as Hugging Face's ``apply_chat_template``."""
        if self._jinja is None:
            env = jinja2.sandbox.ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
            )
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            self._jinja = env.from_string(self.template)
        context = {
            "bos_token": self._tokenizer.get_bos_token(),
            "eos_token": self._tokenizer.get_eos_token(),
            **(extra_context or {}),
        }
        return self._jinja.render(messages=history, tools=tools, add_generation_prompt=True, **context)

    def _probe_polyfill(self) -> bool:
        """Whether openvino-genai turns this template's tool results into ``{"tool_response": ...}`` user turns."""
        if _POLYFILL_MARK in self.template:
            return False
        probe = [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "tool", "content": _PROBE_RESULT, "tool_call_id": "abcdefghi", "name": "f"},
        ]
        try:
            out = self._tokenizer.apply_chat_template(probe, add_generation_prompt=True)
        except Exception:  # a template with its own rules for tool turns (it renders them itself)
            return False
        return _PROBE_RESULT in out and _POLYFILL_MARK in out

    @staticmethod
    def _native(m: Message, keep_reasoning: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"role": m["role"], "content": m["content"]}
        if keep_reasoning and m.get("reasoning_content"):
            out["reasoning_content"] = m["reasoning_content"]
        if m.get("tool_calls"):
            out["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in m["tool_calls"]
            ]
        for key in ("tool_call_id", "name"):
            if key in m:
                out[key] = m[key]  # type: ignore[literal-required]
        return out

    @staticmethod
    def _as_text(m: Message, family: ToolFamily) -> dict[str, Any]:
        if m["role"] == "tool":
            return {"role": "user", "content": f"{TOOL_RESPONSE_OPEN}\n{m['content']}\n{TOOL_RESPONSE_CLOSE}"}
        if m.get("tool_calls"):
            calls = family.render_calls(m["tool_calls"])
            return {"role": "assistant", "content": f"{m['content']}\n{calls}".strip()}
        return {"role": m["role"], "content": m["content"]}


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:  # fmt: skip
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


__all__ = ["TOOL_CALL_OPEN", "ChatRenderer", "normalize_messages"]
