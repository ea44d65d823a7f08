"""Translation between LangChain objects and openvino-llm's plain dicts. No generation logic here.

- :func:`to_core_messages`: LangChain messages -> core ``Message`` dicts.
- :func:`to_ai_message`: a core ``Generation`` / ``Chunk`` -> ``AIMessage`` / ``AIMessageChunk``.
- :func:`to_tool_specs`, :func:`to_core_tool_choice`: ``bind_tools`` arguments -> ``ToolSpec`` / choice.
- :func:`structured_output_schema`: a ``with_structured_output`` schema -> JSON schema dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from typing_extensions import is_typeddict

from openvino_llm.chat.tools import check_tool_choice, validate_json_schema
from openvino_llm.errors import InvalidParameterError
from openvino_llm.types import Chunk, Generation, Message, ToolSpec

PROVIDER = "openvino"

# Content blocks that carry no text for the model: tool calls are sent from ``AIMessage.tool_calls``,
# and earlier reasoning goes back from ``additional_kwargs["reasoning_content"]``.
_SKIPPED_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "function_call", "thinking", "reasoning"})
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "developer": "system"}


def _text_of(message: BaseMessage, index: int) -> str:
    """The text of a message: a string, or its text blocks joined by newlines."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind not in _SKIPPED_BLOCKS:
            raise InvalidParameterError(
                f"messages[{index}] ({message.type}) has a {kind!r} content block; ChatOpenVINO takes text only. "
                "Send text content (a string or 'text' blocks) and leave out images, audio and files."
            )
    return "\n".join(parts)


def to_core_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """Convert LangChain messages to core message dicts, in order, any roles in any order."""
    out: list[Message] = []
    tool_names: dict[str, str] = {}  # tool_call_id -> tool name, to name ToolMessages that lack one
    for i, message in enumerate(messages):
        text = _text_of(message, i)
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": text})
        elif isinstance(message, AIMessage):
            msg: Message = {"role": "assistant", "content": text}
            if message.tool_calls:
                msg["tool_calls"] = [
                    {"id": tc.get("id") or "", "name": tc["name"], "arguments": tc.get("args") or {}}
                    for tc in message.tool_calls
                ]
                tool_names.update({tc["id"]: tc["name"] for tc in msg["tool_calls"] if tc["id"]})
            reasoning = message.additional_kwargs.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:  # back to the template as it expects (or dropped)
                msg["reasoning_content"] = reasoning
            out.append(msg)
        elif isinstance(message, ToolMessage):
            name = message.name or tool_names.get(message.tool_call_id, "")
            out.append({"role": "tool", "content": text, "tool_call_id": message.tool_call_id, "name": name})
        elif isinstance(message, FunctionMessage):
            out.append({"role": "tool", "content": text, "tool_call_id": "", "name": message.name})
        elif isinstance(message, ChatMessage):
            role = _ROLE_ALIASES.get(message.role, message.role)
            if role not in ("system", "user", "assistant"):
                raise InvalidParameterError(
                    f"messages[{i}] is a ChatMessage with role {message.role!r}; "
                    "use 'system', 'user' or 'assistant' (or a ToolMessage for tool results)."
                )
            out.append({"role": role, "content": text})  # type: ignore[typeddict-item]
        else:
            raise InvalidParameterError(
                f"messages[{i}] is a {type(message).__name__}, which ChatOpenVINO cannot send; use System-, "
                "Human-, AI- or ToolMessage."
            )
    return out


def _metadata(result: Generation | Chunk) -> dict[str, Any]:
    """usage_metadata and response_metadata of a finished generation (the final chunk of a stream)."""
    usage = result.usage
    metadata: dict[str, Any] = {
        "response_metadata": {
            "model_name": result.model_name,
            "model_provider": PROVIDER,
            "finish_reason": result.finish_reason,
            "timing": result.timing.as_dict() if result.timing else None,
        }
    }
    if usage is not None:
        metadata["usage_metadata"] = UsageMetadata(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, total_tokens=usage.total_tokens
        )
    return metadata


@overload
def to_ai_message(result: Generation) -> AIMessage: ...
@overload
def to_ai_message(result: Chunk) -> AIMessageChunk: ...
def to_ai_message(result: Generation | Chunk) -> AIMessage | AIMessageChunk:
    """Build the LangChain message of a core result: ``Generation`` -> ``AIMessage``, ``Chunk`` -> chunk.

    Usage, model name, finish reason and timing go on the message of a whole generation and on the
    final chunk of a stream only (so that adding chunks up counts them once). The model's reasoning
    goes to ``additional_kwargs["reasoning_content"]`` (LangChain's ``reasoning`` content block);
    streamed tool calls become ``tool_call_chunks`` (name first, then argument pieces, by index).
    """
    extra = {"reasoning_content": result.reasoning} if result.reasoning else {}
    if isinstance(result, Generation):
        return AIMessage(
            content=result.text,
            additional_kwargs=extra,
            tool_calls=[
                {"name": tc.name, "args": tc.arguments, "id": tc.id, "type": "tool_call"} for tc in result.tool_calls
            ],
            **_metadata(result),
        )
    chunks = [
        {"name": d.name or None, "args": d.arguments or None, "id": d.id or None, "index": d.index,
         "type": "tool_call_chunk"}
        for d in result.tool_call_deltas
    ]  # fmt: skip
    if not result.is_final:
        return AIMessageChunk(content=result.text, additional_kwargs=extra, tool_call_chunks=chunks)
    return AIMessageChunk(
        content=result.text,
        additional_kwargs=extra,
        tool_call_chunks=chunks,
        chunk_position="last",
        **_metadata(result),
    )


def to_tool_specs(tools: Sequence[Any]) -> tuple[ToolSpec, ...]:
    """Convert anything ``convert_to_openai_tool`` takes (BaseTool, function, Pydantic, dict) to ToolSpecs."""
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        try:
            function = convert_to_openai_tool(tool)["function"]
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidParameterError(
                f"tools[{i}] ({tool!r:.80}) is not a tool: pass a BaseTool, a function with a docstring, a "
                f"Pydantic model, a TypedDict or an OpenAI-style tool dict. ({e})"
            ) from None
        specs.append(
            {
                "name": function["name"],
                "description": function.get("description") or "",
                "parameters": function.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return tuple(specs)  # the core validates names and schemas when the tools are used


def to_core_tool_choice(tool_choice: Any, tools: Sequence[ToolSpec]) -> str | None:
    """LangChain ``tool_choice`` -> core: None/"auto"/"none", "any"/"required"/True -> "required", or a name."""
    choice = tool_choice
    if choice is True:
        choice = "required"
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if not isinstance(name, str):
            raise InvalidParameterError(
                f"tool_choice={tool_choice!r} is not understood: use a dict like "
                "{'type': 'function', 'function': {'name': '<tool name>'}}, or a string."
            )
        choice = name
    elif choice is not None and not isinstance(choice, str):
        raise InvalidParameterError(
            f"tool_choice={tool_choice!r} is not understood: "
            "use 'auto', 'any', 'required', 'none', True or a tool name."
        )
    return check_tool_choice(choice, tools)


def is_pydantic_class(schema: Any) -> bool:
    return isinstance(schema, type) and is_basemodel_subclass(schema)


def structured_output_schema(schema: Any) -> dict[str, Any]:
    """The JSON schema of a Pydantic class, a TypedDict class or a JSON schema dict; anything else is an error."""
    if is_pydantic_class(schema) or is_typeddict(schema):
        return convert_to_json_schema(schema)
    if isinstance(schema, dict):
        if schema.get("type") == "function" and isinstance(schema.get("function"), dict):  # OpenAI tool dict
            return convert_to_json_schema(schema)
        return validate_json_schema(schema, what="the structured output schema")
    raise InvalidParameterError(
        f"with_structured_output() needs a Pydantic model class, a TypedDict class or a JSON schema dict; got "
        f"{type(schema).__name__}: {schema!r:.80}"
    )
