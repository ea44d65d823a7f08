"""ChatOpenVINO: a LangChain chat model over openvino-llm's engine (translation only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing, closing, contextmanager
from dataclasses import dataclass
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
from pydantic import PrivateAttr, SecretStr

from openvino_llm import Engine, GenerationParams, load_engine
from openvino_llm.chat.schemas import ANY_JSON_OBJECT, minimal_json, response_format_schema, truncation_message
from openvino_llm.engine.remote import RemoteEngine
from openvino_llm.errors import InvalidParameterError, OutputTruncatedError
from openvino_llm.types import Chunk, Generation, Message

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
_LOAD_ARGS = ("device", "weight_format", "ov_config", "backend", "cache_dir", "draft_model", "prompt_lookup")


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
    draft_model: str | Path | None = None
    """Speculative decoding: a smaller model of the same family (same tokenizer) proposes tokens that the
    model checks; greedy output is unchanged. Any reference ``model`` accepts."""
    prompt_lookup: bool = False
    """Speculative decoding without a draft: proposals copied from the prompt (quoting, editing given code)."""
    streaming: bool = False
    """Whether ``invoke`` streams internally (so that callbacks receive tokens as they come)."""
    timeout: float | None = None
    """Seconds a call may take (wall time, prompt processing included); when exceeded the generation is
    cancelled and ``GenerationTimeoutError`` (a ``TimeoutError``) is raised. None: no limit. Also per call."""
    max_retries: int | None = None
    """With ``base_url``: retries of a request that could not connect or got 429/5xx (default 2). Locally
    accepted so that generic code can pass it to every chat model: a local generation is not retried (its
    errors would repeat); wrap the model in ``.with_retry()`` to retry anyway."""
    api_key: SecretStr | None = None
    """With ``base_url``: the server's key (default ``$OPENVINO_LLM_API_KEY``). Locally ignored (never
    logged or serialized)."""
    base_url: str | None = None
    """An OpenAI-compatible server to run on instead of a local model (``openvino-llm serve``:
    ``http://host:8000/v1``; OpenVINO Model Server: ``.../v3``); ``model`` is then the served model's name."""

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
        _check_timeout(self.timeout)
        if self.max_retries is not None and (
            isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0
        ):
            raise InvalidParameterError(f"max_retries must be an int >= 0, got {self.max_retries!r}.")
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
        if self.base_url is not None:
            return RemoteEngine(  # type: ignore[return-value]  # the Engine interface over HTTP
                self.base_url,
                model=str(model) if model is not None else None,
                api_key=self.api_key.get_secret_value() if self.api_key is not None else None,
                max_retries=self.max_retries if self.max_retries is not None else 2,
            )
        return load_engine(model, **{name: getattr(self, name) for name in _LOAD_ARGS})

    def _get_engine(self, model: str | Path | None = None) -> Engine:
        """The engine a call runs on: this model's, or the one a per-call ``model=`` names (the one place
        the adapter reaches its engine)."""
        return self._engine if model is None or model == self.model else self._load(model)

    @property
    def model_name(self) -> str:
        """The loaded model's name."""
        return self._get_engine().model_name

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

    # ---- token counting: the model's own tokenizer (never LangChain's GPT-2 fallback) ----------------

    def get_token_ids(self, text: str) -> list[int]:
        """The ids of the tokens ``text`` encodes to with the model's tokenizer (no special tokens added)."""
        return self._get_engine().token_ids(text)

    def get_num_tokens(self, text: str) -> int:
        """The number of tokens ``text`` encodes to with the model's tokenizer."""
        return self._get_engine().count_tokens(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """The number of prompt tokens ``messages`` (and ``tools``) make: the model's chat template (and tool
        section) applied, generation prompt included, exactly what a call would send."""
        if not messages:
            return 0
        engine = self._get_engine()
        params = GenerationParams(tools=to_tool_specs(tools)) if tools else None
        return engine.count_tokens(engine.render(to_core_messages(messages), params))

    # ---- one call --------------------------------------------------------------------------------

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Call:
        """Everything one call needs (per-call kwargs override fields); bad input raises here, before any work."""
        overrides = {k: v for k, v in kwargs.items() if k != "stream"}  # LangChain's own streaming switch
        engine = self._get_engine(overrides.pop("model", None))
        timeout = overrides.pop("timeout", None)
        _check_timeout(timeout)
        for name in _ACCEPTED_PER_CALL:
            overrides.pop(name, None)
        if "response_format" in overrides:
            schema = response_format_schema(overrides.pop("response_format"))
            if schema is not None:
                if overrides.get("json_schema") not in (None, schema):
                    raise InvalidParameterError("Pass response_format or with_structured_output's schema, not both.")
                if overrides.get("tools") and overrides.get("tool_choice") != "none":
                    raise InvalidParameterError(
                        "ChatOpenVINO cannot constrain one reply to both tools and a response_format. With "
                        "create_agent and tools, use response_format=ToolStrategy(Schema) (the answer is a forced "
                        "call of a tool made from the schema); ProviderStrategy works when the agent has no tools."
                    )
                overrides["json_schema"] = schema
        if "max_tokens" in overrides:
            overrides["max_new_tokens"] = overrides.pop("max_tokens")
        if "min_tokens" in overrides:
            overrides["min_new_tokens"] = overrides.pop("min_tokens")
        if stop is not None:
            overrides["stop"] = tuple(stop)
        params = self._defaults.merged(**overrides)
        call = _Call(engine, to_core_messages(messages), params, timeout if timeout is not None else self.timeout)
        call.check_budget()
        return call

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        with call.errors():
            generation = call.engine.generate(call.messages, call.params, timeout=call.timeout)
        return ChatResult(generations=[ChatGeneration(message=call.message(generation))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        with call.errors():
            generation = await call.engine.agenerate(call.messages, call.params, timeout=call.timeout)
        return ChatResult(generations=[ChatGeneration(message=call.message(generation))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        chunks = call.engine.stream(call.messages, call.params, timeout=call.timeout)
        with closing(chunks), call.errors():  # closing cancels the request
            for chunk in chunks:
                generation_chunk = ChatGenerationChunk(message=call.message(chunk))
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
        call = self._prepare(messages, stop, kwargs)
        chunks = call.engine.astream(call.messages, call.params, timeout=call.timeout)
        async with aclosing(chunks):  # closing cancels the request
            with call.errors():
                async for chunk in chunks:
                    generation_chunk = ChatGenerationChunk(message=call.message(chunk))
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=generation_chunk)
                    yield generation_chunk

    # ---- tools and structured output ---------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (BaseTools, functions, Pydantic models, TypedDicts or OpenAI tool dicts) to the model.

        ``tool_choice``: ``None``/``"auto"`` (the model decides), ``"any"``/``"required"``/``True`` (it must
        call one of the tools), ``"none"`` (it must not), or a tool name / ``{"type": "function",
        "function": {"name": ...}}`` (it must call that tool). Forced calls are constrained to the
        tool's JSON schema (and a call the model opens by itself too), so ``strict`` changes nothing in
        practice. ``parallel_tool_calls=False`` keeps a reply to one call. Other keyword arguments are
        bound as call parameters (``response_format``, ``max_tokens``, ``temperature``...).
        """
        specs = to_tool_specs(tools)
        choice = to_core_tool_choice(tool_choice, specs)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        if strict is not None:
            kwargs["strict"] = strict
        return self.bind(tools=specs, **kwargs) if specs else self.bind(**kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """A runnable that returns ``schema`` instances (Pydantic) or dicts (TypedDict, JSON schema).

        ``method="json_schema"`` (default) constrains decoding to the schema; ``"function_calling"``
        forces a call of a tool with the schema as arguments; ``"json_mode"`` constrains decoding to
        any JSON object (describe the keys in the prompt; ``schema`` may then be ``None``, and the
        result is a dict). Output is always valid for the schema as far as the grammar goes, so
        ``strict`` is accepted and has no further effect. If the token limit cuts the JSON short,
        ``OutputTruncatedError`` says so (and how to raise ``max_tokens``).
        """
        if kwargs:
            raise InvalidParameterError(f"with_structured_output() got unsupported argument(s) {sorted(kwargs)}.")
        if method not in ("json_schema", "function_calling", "json_mode"):
            raise InvalidParameterError(
                f"method={method!r} is not supported: use 'json_schema', 'function_calling' or 'json_mode'."
            )
        if schema is None and method != "json_mode":
            raise InvalidParameterError(
                f"with_structured_output(method={method!r}) needs a schema (a Pydantic class, a TypedDict or a "
                "JSON schema dict); only method='json_mode' works without one."
            )
        json_schema = structured_output_schema(schema) if schema is not None else None  # validates the schema
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        pydantic = is_pydantic_class(schema)
        parser: Runnable[Any, Any]
        if method == "function_calling":
            assert schema is not None
            untitled = isinstance(schema, dict) and "title" not in schema and "function" not in schema
            [spec] = to_tool_specs([{"title": "output", **schema} if untitled else schema])  # the title names the tool
            llm = self.bind_tools([spec], tool_choice=spec["name"], ls_structured_output_format=ls_format)
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                if pydantic
                else JsonOutputKeyToolsParser(key_name=spec["name"], first_tool_only=True)
            )
        else:
            constraint = json_schema if method == "json_schema" else ANY_JSON_OBJECT
            llm = self.bind(json_schema=constraint, ls_structured_output_format=ls_format)
            parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
        if not include_raw:
            return llm | parser
        parse_raw = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse_raw.with_fallbacks([no_parse], exception_key="parsing_error")


# Standard parameters generic code passes per call that change nothing for a local model (see the fields).
_ACCEPTED_PER_CALL = ("max_retries", "api_key")


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise InvalidParameterError(f"timeout must be a number of seconds > 0 (or None), got {timeout!r}.")


@dataclass
class _Call:
    """One call's engine, messages and params, and what turns its results into LangChain messages."""

    engine: Engine
    messages: list[Message]
    params: GenerationParams
    timeout: float | None
    _streamed: str = ""  # the text of the chunks seen so far (for the error of a cut stream)

    def check_budget(self) -> None:
        """A ``max_tokens`` too small for even the shortest JSON the schema allows fails before any work."""
        schema, limit = self.params.json_schema, self.params.max_new_tokens
        if schema is None or limit is None:
            return
        needed = self.engine.count_tokens(minimal_json(schema))
        if needed > limit:
            raise InvalidParameterError(
                f"max_tokens={limit} cannot hold the structured output: the shortest JSON its schema allows "
                f"is {needed} tokens. Raise max_tokens (on ChatOpenVINO or per call) well above {needed}."
            )

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Re-raise the core's cut-off constrained tool call in LangChain's terms (``max_tokens``)."""
        try:
            yield
        except OutputTruncatedError as e:
            raise OutputTruncatedError(
                truncation_message("max_tokens", self.params.max_new_tokens, e.output), e.output
            ) from None

    def message(self, result: Generation | Chunk) -> Any:
        """The LangChain message of a result; a JSON output cut at the token limit raises instead."""
        if isinstance(result, Chunk):
            self._streamed += result.text
        if result.finish_reason == "length" and self.params.json_schema is not None:
            text = result.text if isinstance(result, Generation) else self._streamed
            limit = self.params.max_new_tokens or (result.usage.output_tokens if result.usage else None)
            raise OutputTruncatedError(truncation_message("max_tokens", limit, text), text)
        return to_ai_message(result)
