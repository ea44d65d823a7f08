"""ChatOpenVINO: a LangChain chat model over openvino-llm's engine (translation only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing, closing
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from pydantic import PrivateAttr

from openvino_llm import Engine, GenerationParams, load_engine
from openvino_llm.errors import InvalidParameterError
from openvino_llm.types import Message

from ._utils import (
    PROVIDER,
    is_pydantic_class,
    structured_output_schema,
    to_ai_message,
    to_core_messages,
    to_core_tool_choice,
    to_tool_specs,
)

_PER_CALL = ("max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty",
             "frequency_penalty", "seed")  # fmt: skip
_LOAD_ARGS = ("device", "weight_format", "ov_config", "backend", "cache_dir")


class ChatOpenVINO(BaseChatModel):
    """A local OpenVINO chat model for LangChain: invoke, stream, batch, async, tools and structured output.

    Install::

        pip install "openvino-llm[langchain]"

    Setup: ``model`` is an OpenVINO IR folder, a ``.gguf`` file, a Hugging Face checkpoint folder, a
    Hugging Face hub id (exported to OpenVINO once and cached; needs ``openvino-llm[export]``), or
    ``None`` for the small built-in default model. The model is loaded when the object is created and
    shared by every ``ChatOpenVINO`` with the same load arguments (``model``, ``device``,
    ``weight_format``, ``ov_config``, ``backend``, ``cache_dir``). Concurrent calls (``batch``,
    ``abatch``, threads, tasks) are batched together inside the engine. Sampling parameters left at
    ``None`` take the model's own defaults; ``temperature=0`` is greedy decoding. All of them (and
    ``max_tokens``, ``stop``) can be set per call too: ``llm.invoke(msgs, max_tokens=32)`` or
    ``llm.bind(temperature=0.2)``.

    Invoke::

        from langchain_openvino import ChatOpenVINO

        llm = ChatOpenVINO(max_tokens=64)  # or ChatOpenVINO(model="path/to/model.gguf", device="CPU")
        msg = llm.invoke([("system", "You are a geography teacher."), ("human", "What is the capital of France?")])
        print(msg.content)
        print(msg.usage_metadata)  # {'input_tokens': ..., 'output_tokens': ..., 'total_tokens': ...}
        print(msg.response_metadata["timing"])  # {'ttft_ms': ..., 'tpot_ms': ..., 'throughput_tps': ..., ...}

    Stream (token by token; the last chunk carries usage and ``finish_reason``)::

        for chunk in llm.stream("Name three colours."):
            print(chunk.content, end="", flush=True)

    Async and batch::

        import asyncio

        async def main() -> None:
            msg = await llm.ainvoke("Say hello.")
            async for chunk in llm.astream("Count to five."):
                print(chunk.content, end="")
            answers = await llm.abatch(["What is 2+2?", "What is the capital of Italy?"])

        asyncio.run(main())

    Tool calling (``tool_choice``: ``"auto"``, ``"any"``/``"required"``/``True``, ``"none"`` or a tool
    name; a forced call is constrained to the tool's JSON schema)::

        from langchain_core.tools import tool

        @tool
        def multiply(a: int, b: int) -> int:
            \"\"\"Multiply two integers.\"\"\"
            return a * b

        msg = llm.bind_tools([multiply], tool_choice="multiply").invoke("What is 6 times 7?")
        print(msg.tool_calls)  # [{'name': 'multiply', 'args': {'a': 6, 'b': 7}, 'id': 'call_...', ...}]

    Structured output (decoding constrained to the schema; also ``method="function_calling"`` or
    ``"json_mode"``, and ``include_raw=True``)::

        from pydantic import BaseModel

        class Person(BaseModel):
            name: str
            age: int

        person = llm.with_structured_output(Person).invoke("Alice is 30 years old.")
        print(person)  # name='Alice' age=30

    Errors are openvino-llm's own (``openvino_llm.errors``): a bad parameter, message or tool raises
    ``InvalidParameterError`` before any generation starts.
    """

    model: str | Path | None = None
    """IR folder, .gguf file, Hugging Face folder or hub id; None for the built-in default model."""
    device: str = "AUTO"
    """OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ..."""
    weight_format: str | None = None
    """Weight format when exporting a Hugging Face model ("int4", "int8", "fp16", ...); None: the default."""
    ov_config: dict[str, Any] | None = None
    """OpenVINO properties passed when compiling the model."""
    max_tokens: int | None = None
    """Maximum number of new tokens per call; None: the model's default."""
    temperature: float | None = None
    """Sampling temperature; 0 is greedy decoding; None: the model's default."""
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] | None = None
    """Stop strings (the stop string itself is not included in the output)."""
    seed: int | None = None
    """Random seed for sampling, for reproducible output."""
    backend: str = "auto"
    """Inference backend: "auto", "genai" (openvino-genai) or "optimum" (optimum-intel)."""
    cache_dir: str | Path | None = None
    """openvino-llm cache folder (exports, compiled models); None: $OPENVINO_LLM_CACHE or ~/.cache/openvino-llm."""
    streaming: bool = False
    """Whether ``invoke`` streams internally (so that callbacks receive tokens as they come)."""

    _engine: Engine = PrivateAttr()
    _defaults: GenerationParams = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        known = set(type(self).model_fields) | {"callback_manager"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidParameterError(
                f"ChatOpenVINO got unknown argument(s) {unknown}; the arguments are {sorted(known)}."
            )
        super().__init__(**kwargs)
        self._defaults = GenerationParams(
            max_new_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            stop=tuple(self.stop or ()),
            seed=self.seed,
        )
        self._engine = self._load(self.model)

    def _load(self, model: str | Path | None) -> Engine:
        return load_engine(model, **{name: getattr(self, name) for name in _LOAD_ARGS})

    @property
    def model_name(self) -> str:
        """The loaded model's name."""
        return self._engine.model_name

    @property
    def _llm_type(self) -> str:
        return "openvino-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": str(self.model) if self.model is not None else None,
            "model_name": self.model_name,
            **{name: getattr(self, name) for name in (*_LOAD_ARGS, *_PER_CALL, "stop")},
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER,
            ls_model_name=str(kwargs["model"]) if kwargs.get("model") is not None else self.model_name,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        stop = stop if stop is not None else self.stop
        if temperature is not None:
            params["ls_temperature"] = temperature
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop:
            params["ls_stop"] = list(stop)
        return params

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Engine, list[Message], GenerationParams]:
        """The engine, core messages and generation params of one call (per-call kwargs override fields)."""
        overrides = {k: v for k, v in kwargs.items() if k != "stream"}  # LangChain's own streaming switch
        model = overrides.pop("model", None)
        engine = self._engine if model is None or model == self.model else self._load(model)
        if "max_tokens" in overrides:
            overrides["max_new_tokens"] = overrides.pop("max_tokens")
        if stop is not None:
            overrides["stop"] = tuple(stop)
        params = self._defaults.merged(**overrides)
        return engine, to_core_messages(messages), params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine, core_messages, params = self._prepare(messages, stop, kwargs)
        return ChatResult(generations=[ChatGeneration(message=to_ai_message(engine.generate(core_messages, params)))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine, core_messages, params = self._prepare(messages, stop, kwargs)
        generation = await engine.agenerate(core_messages, params)
        return ChatResult(generations=[ChatGeneration(message=to_ai_message(generation))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        engine, core_messages, params = self._prepare(messages, stop, kwargs)
        with closing(engine.stream(core_messages, params)) as chunks:  # closing cancels the request
            for chunk in chunks:
                generation_chunk = ChatGenerationChunk(message=to_ai_message(chunk))
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=generation_chunk)
                yield generation_chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        engine, core_messages, params = self._prepare(messages, stop, kwargs)
        async with aclosing(engine.astream(core_messages, params)) as chunks:  # closing cancels the request
            async for chunk in chunks:
                generation_chunk = ChatGenerationChunk(message=to_ai_message(chunk))
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=generation_chunk)
                yield generation_chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (BaseTools, functions, Pydantic models, TypedDicts or OpenAI tool dicts) to the model.

        ``tool_choice``: ``None``/``"auto"`` (the model decides), ``"any"``/``"required"``/``True`` (it must
        call one of the tools), ``"none"`` (it must not), or a tool name / ``{"type": "function",
        "function": {"name": ...}}`` (it must call that tool). Forced calls are constrained to the
        tool's JSON schema.
        """
        specs = to_tool_specs(tools)
        choice = to_core_tool_choice(tool_choice, specs)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return self.bind(tools=specs, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """A runnable that returns ``schema`` instances (Pydantic) or dicts (TypedDict, JSON schema).

        ``method="json_schema"`` (default) constrains decoding to the schema; ``"function_calling"``
        forces a call of a tool with the schema as arguments; ``"json_mode"`` constrains decoding to
        any JSON object (describe the keys in the prompt). Output is always valid for the schema
        as far as the grammar goes, so ``strict`` is accepted and has no further effect.
        """
        if kwargs:
            raise InvalidParameterError(f"with_structured_output() got unsupported argument(s) {sorted(kwargs)}.")
        json_schema = structured_output_schema(schema)  # validates the schema for every method
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        pydantic = is_pydantic_class(schema)
        parser: Runnable[Any, Any]
        if method in ("json_schema", "json_mode"):
            constraint = json_schema if method == "json_schema" else {"type": "object"}
            llm = self.bind(json_schema=constraint, ls_structured_output_format=ls_format)
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
        elif method == "function_calling":
            untitled = isinstance(schema, dict) and "title" not in schema and "function" not in schema
            [spec] = to_tool_specs([{"title": "output", **schema} if untitled else schema])  # the title names the tool
            llm = self.bind_tools([spec], tool_choice=spec["name"], ls_structured_output_format=ls_format)
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                if pydantic
                else JsonOutputKeyToolsParser(key_name=spec["name"], first_tool_only=True)
            )
        else:
            raise InvalidParameterError(
                f"method={method!r} is not supported: use 'json_schema', 'function_calling' or 'json_mode'."
            )
        if not include_raw:
            return llm | parser
        parse_raw = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse_raw.with_fallbacks([no_parse], exception_key="parsing_error")
