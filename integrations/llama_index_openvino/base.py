"""The LlamaIndex LLM ``OpenVINO``: local OpenVINO models behind llama_index's ``FunctionCallingLLM``.

Translation only: messages, tools and parameters go to the openvino-llm core engine, its results come
back as ``ChatResponse``. Chat templates, tool-call parsing, constrained decoding and batching all
live in the core.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from contextlib import aclosing, closing, contextmanager
from typing import TYPE_CHECKING, Any

import llama_index.core
from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    ContentBlock,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import (
    LLMStructuredPredictEndEvent,
    LLMStructuredPredictInProgressEvent,
    LLMStructuredPredictStartEvent,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.llms.utils import parse_partial_json
from llama_index.core.program.utils import FlexibleModel, process_streaming_objects
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.types import Model, PydanticProgramMode
from llama_index.core.utils import set_global_tokenizer

from openvino_llm import Engine, GenerationParams, load_engine
from openvino_llm.chat.schemas import minimal_json, truncation_message
from openvino_llm.engine.remote import RemoteEngine
from openvino_llm.errors import InvalidParameterError, OutputTruncatedError
from openvino_llm.types import Chunk, Generation, Message, ToolSpec

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

dispatcher = get_dispatcher(__name__)
log = logging.getLogger("llama_index_openvino")

#: Tokens kept free beyond the chat template's own: LlamaIndex counts a prompt piece by piece (template,
#: chunks, separators), and a text can tokenize into a few more tokens as a whole than as its pieces.
PACKING_MARGIN = 16

_ROLES: dict[MessageRole, str] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}


def _to_core_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """LlamaIndex chat messages -> the core's message dicts (tool calls from ``ToolCallBlock`` s)."""
    out: list[Message] = []
    call_names: dict[str, str] = {}  # tool_call_id -> tool name, to name the tool results
    for i, message in enumerate(messages):
        role = _ROLES[message.role]
        texts: list[str] = []
        calls = []
        thoughts: list[str] = []
        for block in message.blocks:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ThinkingBlock):  # reasoning goes back as the template expects (or dropped)
                thoughts.append(block.content or "")
            elif isinstance(block, ToolCallBlock):  # arguments may be a dict or JSON text: the core checks them
                call_id = block.tool_call_id or ""
                call_names[call_id] = block.tool_name
                calls.append({"id": call_id, "name": block.tool_name, "arguments": block.tool_kwargs})
            elif not isinstance(block, (CachePoint, ThinkingBlock)):
                raise InvalidParameterError(
                    f"messages[{i}] holds a {type(block).__name__}: OpenVINO LLMs take text (and tool calls) "
                    "only. Convert it to text first."
                )
        core: Message = {"role": role, "content": "\n".join(texts)}  # type: ignore[typeddict-item]
        if calls:
            core["tool_calls"] = calls
        if role == "assistant" and "".join(thoughts):
            core["reasoning_content"] = "".join(thoughts)
        if role == "tool":
            call_id = str(message.additional_kwargs.get("tool_call_id") or "")
            if call_id:
                core["tool_call_id"] = call_id
            name = message.additional_kwargs.get("name") or (call_names.get(call_id) if call_id else None)
            if name:
                core["name"] = str(name)
        out.append(core)
    return out


def _to_tool_spec(tool: BaseTool) -> ToolSpec:
    metadata = tool.metadata
    return {
        "name": metadata.get_name(),
        "description": metadata.description,
        "parameters": metadata.get_parameters_dict(),
    }


class _StreamSoFar:
    """What a stream has produced so far: reasoning and the tool calls as far as they are written."""

    def __init__(self, params: GenerationParams) -> None:
        self._params = params
        self.text = ""
        self.thinking = ""
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, argument text]

    def response(self, chunk: Chunk) -> ChatResponse:
        """Take the stream's next chunk; the ``ChatResponse`` so far (raises if the model was cut off)."""
        self.text += chunk.text
        self.thinking += chunk.reasoning
        for d in chunk.tool_call_deltas:
            call = self._calls.setdefault(d.index, ["", "", ""])
            call[0], call[1] = call[0] or d.id, call[1] or d.name
            call[2] += d.arguments
        _check_complete(self._params, chunk, self.text)
        return _chat_response(self.text, chunk, delta=chunk.text, so_far=self)

    def partial_calls(self) -> list[ToolCallBlock]:
        """The calls so far, arguments parsed leniently (a partial JSON object)."""
        blocks = []
        for call_id, name, args in self._calls.values():
            try:
                kwargs = parse_partial_json(args) if args else {}
            except (ValueError, TypeError):
                kwargs = {}
            blocks.append(ToolCallBlock(tool_call_id=call_id, tool_name=name, tool_kwargs=kwargs))
        return blocks


def _chat_response(
    text: str, result: Generation | Chunk, delta: str | None = None, so_far: _StreamSoFar | None = None
) -> ChatResponse:
    """The one place a core result (or stream chunk) becomes a ``ChatResponse``.

    ``raw`` and ``additional_kwargs`` carry ``prompt_tokens`` / ``completion_tokens`` /
    ``total_tokens`` and ``timing`` once the core reports them (always on the last stream chunk).
    The model's reasoning is a ``ThinkingBlock`` (and, streamed, ``additional_kwargs["thinking_delta"]``);
    a stream's responses carry the tool calls as far as they are written (``so_far``).
    """
    thinking = so_far.thinking if so_far is not None else result.reasoning
    blocks: list[ContentBlock] = [ThinkingBlock(content=thinking)] if thinking else []
    blocks.append(TextBlock(text=text))
    if result.tool_calls or so_far is None:
        calls = result.tool_calls
        blocks += [ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=c.arguments) for c in calls]
    else:
        blocks += so_far.partial_calls()
    raw: dict[str, Any] = {"model": result.model_name, "finish_reason": result.finish_reason}
    extra: dict[str, Any] = {}
    if so_far is not None and result.reasoning:
        extra["thinking_delta"] = result.reasoning
    if result.usage is not None:
        extra["prompt_tokens"] = result.usage.input_tokens
        extra["completion_tokens"] = result.usage.output_tokens
        extra["total_tokens"] = result.usage.total_tokens
        raw["usage"] = dict(extra)
    if result.timing is not None:
        extra["timing"] = raw["timing"] = result.timing.as_dict()
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks),
        raw=raw,
        delta=delta,
        additional_kwargs=extra,
    )


def _as_list(objects: Any) -> list[Any] | None:
    return None if objects is None else [objects]


def _check_budget(engine: Engine, params: GenerationParams) -> None:
    """``max_new_tokens`` too small for even the shortest JSON the schema allows fails before any work."""
    schema, limit = params.json_schema, params.max_new_tokens
    if schema is None or limit is None:
        return
    needed = engine.count_tokens(minimal_json(schema))
    if needed > limit:
        raise InvalidParameterError(
            f"max_new_tokens={limit} cannot hold the structured output: the shortest JSON its schema allows is "
            f"{needed} tokens. Raise max_new_tokens (or max_tokens; on the LLM or per call) well above {needed}."
        )


def _check_complete(params: GenerationParams, result: Generation | Chunk, text: str) -> None:
    """A structured (JSON schema) output cut at the token limit raises, never reaching a JSON parser."""
    if params.json_schema is not None and result.finish_reason == "length":
        limit = params.max_new_tokens or (result.usage.output_tokens if result.usage else None)
        raise OutputTruncatedError(truncation_message("max_new_tokens", limit, text), text)


@contextmanager
def _cut_call(params: GenerationParams) -> Iterator[None]:
    """The core's cut-off forced tool call, worded for LlamaIndex (``max_new_tokens``)."""
    try:
        yield
    except OutputTruncatedError as e:
        raise OutputTruncatedError(
            truncation_message("max_new_tokens", params.max_new_tokens, e.output), e.output
        ) from None


class ModelTokenizer:
    """A LlamaIndex tokenizer (``str -> list of token ids``) that counts with the model's own tokenizer.

    :class:`OpenVINO` installs one as LlamaIndex's global tokenizer (``Settings.tokenizer``) unless you
    set your own, so that prompt packing (response synthesizers, ``PromptHelper``) and token counts
    match what the model is given.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, text: str) -> list[int]:
        return self.engine.token_ids(text)

    def __repr__(self) -> str:
        return f"ModelTokenizer({self.engine.model_name!r})"


def _is_stock_tokenizer(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` is LlamaIndex's own default (tiktoken's gpt-3.5 encoding, set on first use)."""
    if not isinstance(tokenizer, functools.partial):
        return False
    encoding = getattr(tokenizer.func, "__self__", None)
    return type(encoding).__module__.startswith("tiktoken") and getattr(encoding, "name", "") == "cl100k_base"


def _use_model_tokenizer(engine: Engine) -> None:
    """Make LlamaIndex count tokens with ``engine``'s tokenizer, unless the user chose a tokenizer."""
    current = llama_index.core.global_tokenizer
    if isinstance(current, ModelTokenizer) and current.engine is engine:
        return
    if current is None or _is_stock_tokenizer(current) or isinstance(current, ModelTokenizer):
        if isinstance(current, ModelTokenizer):
            log.warning(
                "LlamaIndex's tokenizer was %r; it now counts with %s's tokenizer (the last OpenVINO LLM created).",
                current,
                engine.model_name,
            )
        set_global_tokenizer(ModelTokenizer(engine))
        return
    log.warning(
        "LlamaIndex counts tokens with a tokenizer you set (%r), not %s's own: prompts it packs for this model "
        "may not fit its context window. Set `Settings.tokenizer = llm.tokenizer` to count with the model's.",
        current,
        engine.model_name,
    )


class OpenVINO(FunctionCallingLLM):
    """A local LLM running on OpenVINO (CPU, GPU or NPU), for LlamaIndex.

    Install::

        pip install "openvino-llm[llama-index]"

    Setup: ``model`` is an OpenVINO IR folder, a ``.gguf`` file, a Hugging Face folder, a hub id
    (exported to OpenVINO once, then cached) or ``None`` for the default model (SmolLM2-135M-Instruct).
    Sampling defaults come from the model's generation config; ``temperature=0`` is greedy. Objects on
    the same model, device and options share one loaded engine, which batches concurrent requests.
    Every response carries ``prompt_tokens`` / ``completion_tokens`` / ``total_tokens`` and ``timing``
    in ``raw`` and ``additional_kwargs``.

    Chat, complete and stream::

        from llama_index.core import Settings
        from llama_index.core.llms import ChatMessage

        from llama_index_openvino import OpenVINO

        llm = OpenVINO(model=None, device="CPU", max_new_tokens=64)
        Settings.llm = llm  # used by indexes, query engines and agents from here on

        messages = [
            ChatMessage(role="system", content="You are a helpful assistant."),
            ChatMessage(role="user", content="What is the capital of France?"),
        ]
        response = llm.chat(messages)
        print(response.message.content, response.raw["usage"], response.raw["timing"]["ttft_ms"])
        print(llm.complete("Name three colours.").text)
        for part in llm.stream_chat(messages):
            print(part.delta, end="", flush=True)

    Async (``achat``, ``acomplete``, ``astream_chat``, ``astream_complete``)::

        import asyncio

        async def main() -> None:
            async for part in await llm.astream_chat(messages):
                print(part.delta, end="", flush=True)

        asyncio.run(main())

    Tool calling (``tool_required=True`` or ``tool_choice="<tool name>"`` constrain the output to a call)::

        from llama_index.core.tools import FunctionTool

        def multiply(a: int, b: int) -> int:
            \"\"\"Multiply two integers.\"\"\"
            return a * b

        tool = FunctionTool.from_defaults(multiply)
        print(llm.predict_and_call([tool], "What is 6 times 7?", tool_required=True))  # 42

    Structured output (decoding constrained to the class's JSON schema, so it always validates)::

        from llama_index.core.prompts import PromptTemplate
        from pydantic import BaseModel

        class Person(BaseModel):
            name: str
            age: int

        prompt = PromptTemplate("Extract the person from this text: {text}")
        print(llm.structured_predict(Person, prompt, text="Alice is 30 years old."))
    """

    model: str | None = Field(
        default=None,
        description="OpenVINO IR folder, .gguf file, Hugging Face folder or hub id; None = the default model.",
    )
    device: str = Field(default="AUTO", description='OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ...')
    weight_format: str | None = Field(
        default=None, description='Weight compression when exporting, e.g. "int8" or "int4"; None = as exported.'
    )
    ov_config: dict[str, Any] | None = Field(default=None, description="OpenVINO compile properties.")
    backend: str = Field(default="auto", description='Inference backend: "auto" or a backend name of the core.')
    cache_dir: str | None = Field(
        default=None, description="openvino-llm cache folder (exports, compiled models); None = the default."
    )
    draft_model: str | None = Field(
        default=None,
        description="Speculative decoding: a smaller model of the same family (same tokenizer) proposes tokens "
        "that the model checks (greedy output unchanged); any reference ``model`` accepts.",
    )
    prompt_lookup: bool = Field(
        default=False, description="Speculative decoding without a draft: proposals copied from the prompt."
    )
    max_new_tokens: int = Field(
        default=256, ge=1, description="Maximum number of tokens to generate; ``max_tokens`` is an alias."
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=100.0, description="Sampling temperature; 0 = greedy; None = the model's default."
    )
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Nucleus sampling probability mass.")
    top_k: int | None = Field(default=None, ge=0, description="Sample from the k most likely tokens; 0 = no limit.")
    repetition_penalty: float | None = Field(
        default=None, gt=0.0, le=100.0, description="Penalty for repeated tokens; 1.0 = none."
    )
    stop: list[str] | None = Field(default=None, description="Stop generating at any of these strings.")
    seed: int | None = Field(default=None, ge=0, description="Random seed for sampling.")
    base_url: str | None = Field(
        default=None,
        description="An openvino-llm server (http://host:8000/v1) to run on instead of a local model; "
        "``model`` is then the served model's name.",
    )
    api_key: str | None = Field(default=None, description="With base_url: the server's key.", exclude=True)
    context_window: int | None = Field(
        default=None,
        gt=0,
        description="Context window in tokens (at most the model's); None = the model's own (from its config).",
    )

    _engine: Engine = PrivateAttr()
    _template_tokens: int = PrivateAttr(default=0)

    @field_validator("model", "cache_dir", "draft_model", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def __init__(self, **kwargs: Any) -> None:
        known = set(type(self).model_fields)
        unknown = sorted(set(kwargs) - known - {"max_tokens"})
        if unknown:
            raise InvalidParameterError(
                f"OpenVINO got unknown argument(s) {unknown}; the arguments are {sorted(known)}."
            )
        alias = kwargs.pop("max_tokens", None)
        if alias is not None:
            if kwargs.get("max_new_tokens", alias) != alias:
                raise InvalidParameterError(
                    f"max_tokens={alias!r} and max_new_tokens={kwargs['max_new_tokens']!r} disagree: pass one of them."
                )
            kwargs["max_new_tokens"] = alias
        super().__init__(**kwargs)
        # Loaded after validation, so core errors (missing model, bad device...) reach the caller unchanged.
        if self.base_url is not None:  # an OpenAI-compatible server: the Engine interface over HTTP
            engine = self._engine = RemoteEngine(self.base_url, model=self.model, api_key=self.api_key)  # type: ignore[assignment]
        else:
            engine = self._engine = load_engine(
                self.model,
                device=self.device,
                weight_format=self.weight_format,
                ov_config=self.ov_config,
                backend=self.backend,
                cache_dir=self.cache_dir,
                draft_model=self.draft_model,
                prompt_lookup=self.prompt_lookup,
            )
        if self.context_window is None:
            self.context_window = engine.context_window
        elif self.context_window > engine.context_window:
            raise InvalidParameterError(
                f"context_window={self.context_window} is larger than {engine.model_name}'s own "
                f"({engine.context_window} tokens): leave it unset or pass at most {engine.context_window}."
            )
        # What the chat template adds around the messages' text (roles, turn markers, generation prompt).
        empty: list[Message] = [{"role": "system", "content": ""}, {"role": "user", "content": ""}]
        self._template_tokens = max(engine.count_tokens(engine.render(m)) for m in (empty, empty[1:]))
        _use_model_tokenizer(engine)

    @classmethod
    def class_name(cls) -> str:
        return "OpenVINO_llm"

    @property
    def engine(self) -> Engine:
        """The shared openvino-llm engine this LLM runs on."""
        return self._engine

    @property
    def tokenizer(self) -> ModelTokenizer:
        """The model's tokenizer as LlamaIndex takes it (``Settings.tokenizer = llm.tokenizer``)."""
        return ModelTokenizer(self._engine)

    @property
    def metadata(self) -> LLMMetadata:
        """``context_window`` is the room for the messages' text: the window less what the chat template
        adds and a small packing margin, counted with the model's tokenizer (which this LLM installs
        as LlamaIndex's, unless you set one). ``num_output`` is ``max_new_tokens``, so LlamaIndex
        leaves room for the whole reply."""
        window = (self.context_window or self._engine.context_window) - self._template_tokens - PACKING_MARGIN
        return LLMMetadata(
            context_window=max(1, window),
            num_output=self.max_new_tokens,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=self._engine.model_name,
        )

    def _params(self, **kwargs: Any) -> GenerationParams:
        """This LLM's settings, overridden by per-call ``GenerationParams`` fields (unknown names raise;
        ``max_tokens`` is the alias of ``max_new_tokens``)."""
        if "max_tokens" in kwargs:
            alias = kwargs.pop("max_tokens")
            if kwargs.get("max_new_tokens", alias) != alias:
                raise InvalidParameterError(
                    f"max_tokens={alias!r} and max_new_tokens={kwargs['max_new_tokens']!r} disagree: pass one of them."
                )
            kwargs["max_new_tokens"] = alias
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop or ()),
            seed=self.seed,
        ).merged(**kwargs)

    # -- chat: the four native variants ------------------------------------------------------------

    def _request(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> tuple[list[Message], GenerationParams]:
        """Core messages and params of one call; bad input (or a budget too small for the schema) raises here."""
        params = self._params(**kwargs)
        _check_budget(self._engine, params)
        return _to_core_messages(messages), params

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        core_messages, params = self._request(messages, kwargs)
        with _cut_call(params):
            result = self._engine.generate(core_messages, params)
        _check_complete(params, result, result.text)
        return _chat_response(result.text, result)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        core_messages, params = self._request(messages, kwargs)
        with _cut_call(params):
            result = await self._engine.agenerate(core_messages, params)
        _check_complete(params, result, result.text)
        return _chat_response(result.text, result)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        core_messages, params = self._request(messages, kwargs)

        def gen() -> ChatResponseGen:
            so_far = _StreamSoFar(params)
            chunks = self._engine.stream(core_messages, params)
            with closing(chunks), _cut_call(params):
                for chunk in chunks:
                    yield so_far.response(chunk)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        core_messages, params = self._request(messages, kwargs)

        async def gen() -> ChatResponseAsyncGen:
            so_far = _StreamSoFar(params)
            chunks = self._engine.astream(core_messages, params)
            async with aclosing(chunks):
                with _cut_call(params):
                    async for chunk in chunks:
                        yield so_far.response(chunk)

        return gen()

    # -- completion: derived from chat (the core applies the chat template once) ------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self.chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await achat_to_completion_decorator(self.achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self.stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self.astream_chat)(prompt, **kwargs)

    # -- tool calling ------------------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """``tool_required`` -> ``tool_choice="required"``; ``tool_choice`` may name one tool."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        if isinstance(tool_choice, dict):  # OpenAI shape: {"type": "function", "function": {"name": ...}}
            tool_choice = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
            if not tool_choice:
                raise InvalidParameterError(
                    'tool_choice dict must name a tool: {"type": "function", "function": {"name": "<tool>"}}.'
                )
        if tool_choice is None and tool_required:
            tool_choice = "required"
        tool_specs = [_to_tool_spec(tool) for tool in tools]
        return {"messages": messages, "tools": tool_specs, "tool_choice": tool_choice, **kwargs}

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls are allowed."""
        calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        if not allow_parallel_tool_calls and len(calls) > 1:
            response.message.blocks = [
                b for b in response.message.blocks if not isinstance(b, ToolCallBlock) or b is calls[0]
            ]
        return response

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """The tool calls of a response, as ``ToolSelection`` s (``tool_id`` is the call's id)."""
        calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        if not calls and error_on_no_tool_call:
            raise ValueError(
                "Expected at least one tool call, but the model answered in text: "
                f"{(response.message.content or '')[:200]!r}. Pass tool_required=True to force a call."
            )
        return [
            ToolSelection(
                tool_id=call.tool_call_id or call.tool_name, tool_name=call.tool_name, tool_kwargs=call.tool_kwargs
            )
            for call in calls
        ]

    # -- structured output: decoding constrained to the output class's JSON schema -----------------

    def _structured_call(
        self, output_cls: type[Model], prompt: BasePromptTemplate, llm_kwargs: dict[str, Any] | None, prompt_args: Any
    ) -> tuple[list[ChatMessage], dict[str, Any]]:
        dispatcher.event(
            LLMStructuredPredictStartEvent(output_cls=output_cls, template=prompt, template_args=prompt_args)
        )
        messages = self._get_messages(prompt, **prompt_args)
        return messages, {**(llm_kwargs or {}), "json_schema": output_cls.model_json_schema()}

    @dispatcher.span
    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """Predict an ``output_cls`` instance; decoding is constrained to its JSON schema."""
        if self.pydantic_program_mode != PydanticProgramMode.DEFAULT:
            return super().structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)  # type: ignore[arg-type]
        messages, kwargs = self._structured_call(output_cls, prompt, llm_kwargs, prompt_args)
        result = output_cls.model_validate_json(self.chat(messages, **kwargs).message.content or "")
        dispatcher.event(LLMStructuredPredictEndEvent(output=result))
        return result

    @dispatcher.span
    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """Async :meth:`structured_predict`."""
        if self.pydantic_program_mode != PydanticProgramMode.DEFAULT:
            return await super().astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)  # type: ignore[arg-type]
        messages, kwargs = self._structured_call(output_cls, prompt, llm_kwargs, prompt_args)
        result = output_cls.model_validate_json((await self.achat(messages, **kwargs)).message.content or "")
        dispatcher.event(LLMStructuredPredictEndEvent(output=result))
        return result

    @dispatcher.span
    def stream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Generator[Model | FlexibleModel, None, None]:
        """Stream partial ``output_cls`` objects; the last one is complete and valid."""
        if self.pydantic_program_mode != PydanticProgramMode.DEFAULT:
            yield from super().stream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)  # type: ignore[arg-type]
            return
        messages, kwargs = self._structured_call(output_cls, prompt, llm_kwargs, prompt_args)
        objects: Any = None
        for response in self.stream_chat(messages, **kwargs):
            objects = process_streaming_objects(response, output_cls, cur_objects=_as_list(objects), llm=self)
            dispatcher.event(LLMStructuredPredictInProgressEvent(output=objects))
            yield objects
        dispatcher.event(LLMStructuredPredictEndEvent(output=objects))

    @dispatcher.span
    async def astream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> AsyncGenerator[Model | FlexibleModel, None]:
        """Async :meth:`stream_structured_predict`."""
        if self.pydantic_program_mode != PydanticProgramMode.DEFAULT:
            return await super().astream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)  # type: ignore[arg-type]
        messages, kwargs = self._structured_call(output_cls, prompt, llm_kwargs, prompt_args)
        responses = await self.astream_chat(messages, **kwargs)

        async def gen() -> AsyncGenerator[Model | FlexibleModel, None]:
            objects: Any = None
            async for response in responses:
                objects = process_streaming_objects(response, output_cls, cur_objects=_as_list(objects), llm=self)
                dispatcher.event(LLMStructuredPredictInProgressEvent(output=objects))
                yield objects
            dispatcher.event(LLMStructuredPredictEndEvent(output=objects))

        return gen()
