"""The generation engine: one loaded model, used by every adapter.

``generate``/``stream`` and ``agenerate``/``astream`` are twins over one implementation: a request
is prepared once (:meth:`Engine._prepare`: template, tokens, limits, generation config), submitted to
the model's batching scheduler, and its events are turned into :class:`~openvino_llm.types.Chunk`
objects by one :class:`~openvino_llm.engine.output.OutputParser` (stop strings, tool-call parsing,
usage, timing). Concurrent requests from threads or asyncio tasks are batched on the one model by
openvino-genai's continuous batching.

    >>> from openvino_llm import load_engine, GenerationParams
    >>> engine = load_engine()                       # the embedded SmolLM2-135M-Instruct
    >>> engine.generate("What is the capital of France?", GenerationParams(temperature=0)).text
    'The capital of France is Paris.'
    >>> for chunk in engine.stream("Say hi", GenerationParams(max_new_tokens=8)):
    ...     print(chunk.text, end="")
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openvino_genai as ov_genai

from ..chat.families import ToolFamily
from ..chat.reasoning import THINK_CLOSE, ReasoningTags, starts_inside
from ..chat.render import ChatRenderer, normalize_messages
from ..chat.tools import TOOL_RESPONSE_CLOSE, check_tool_choice, validate_json_schema, validate_tools
from ..errors import ContextLengthExceededError, GenerationTimeoutError, InvalidParameterError, OpenVINOLLMError
from ..types import Chunk, Generation, GenerationParams, Message, ToolSpec
from .output import Collector, OutputParser
from .scheduler import AsyncInbox, BatchScheduler, SyncInbox
from .speculative import Speculation, check_request_knobs, check_same_tokenizer, make_speculation

log = logging.getLogger("openvino_llm")

Backend = Literal["auto", "genai", "optimum"]

#: ``max_new_tokens`` when neither the caller nor the model's generation config sets one.
DEFAULT_MAX_NEW_TOKENS = 1024
_TOP_K_NONE = 2**31 - 1


@dataclass(frozen=True)
class _Prepared:
    """Everything a request needs, computed once before it is submitted."""

    input_ids: Any
    config: ov_genai.GenerationConfig
    stop: tuple[str, ...]
    tools: tuple[ToolSpec, ...]
    forced_tool: bool
    family: ToolFamily | None = None
    parallel_tool_calls: bool = True
    reasoning: ReasoningTags | None = None
    reasoning_inside: bool = False


@dataclass(frozen=True)
class _Rendered:
    """The prompt of a request and what rendering decided about tools and reasoning."""

    prompt: str
    tools: tuple[ToolSpec, ...]
    choice: str | None
    family: ToolFamily
    reasoning_inside: bool


class Engine:
    """One loaded OpenVINO model with a batching scheduler. Get one with :func:`load_engine`.

    Example::

        from openvino_llm import load_engine, GenerationParams

        engine = load_engine("path/to/model.gguf", device="CPU")
        gen = engine.generate([{"role": "user", "content": "Hi!"}], GenerationParams(max_new_tokens=32))
        print(gen.text, gen.usage.total_tokens, gen.timing.ttft_ms)
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        device: str,
        properties: Mapping[str, Any],
        context_window: int | None = None,
        scheduler_config: Mapping[str, Any] | None = None,
        backend: Backend = "auto",
        speculation: Speculation | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.model_name = name
        self.device = device
        self.path = path
        self.backend: str = "genai"
        #: speculative decoding (draft model or prompt lookup) of every request; None: none
        self.speculation = speculation
        if backend == "optimum":
            self._scheduler, self.tokenizer, base = _load_optimum(path, device, properties)
            self.backend = "optimum"
        else:
            try:
                self._scheduler, self.tokenizer, base = _load_genai(
                    path, device, properties, scheduler_config, name, speculation
                )
            except OpenVINOLLMError as e:
                # a bad argument is the caller's to fix, not a reason to try another backend
                fallback = (
                    not isinstance(e, InvalidParameterError) and path.is_dir() and (path / "config.json").exists()
                )
                if backend != "auto" or speculation or not fallback:
                    raise
                log.warning("openvino-genai cannot load %s (%s); falling back to the optimum backend.", name, e)
                self._scheduler, self.tokenizer, base = _load_optimum(path, device, properties)
                self.backend = "optimum"
        self._base_config = base
        self._renderer = ChatRenderer(self.tokenizer)
        self.context_window: int = int(context_window or _guess_context_window(base))
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.default_params = GenerationParams(
            max_new_tokens=None,
            temperature=base.temperature if base.do_sample else 0.0,
            top_p=base.top_p if base.do_sample else None,
            top_k=base.top_k if base.do_sample and base.top_k < _TOP_K_NONE else None,
            repetition_penalty=base.repetition_penalty if base.repetition_penalty != 1.0 else None,
        )
        log.info("loaded %s on %s (%s backend) in %.0f ms", name, device, self.backend, self.load_ms)

    # ---- the public twins ----------------------------------------------------------------------

    def generate(
        self,
        messages: str | Sequence[Message],
        params: GenerationParams | None = None,
        *,
        on_token: Callable[[str], Any] | None = None,
        timeout: float | None = None,
    ) -> Generation:
        """Generate a whole reply. ``on_token`` is called with each piece of text as it is produced.

        ``timeout`` (seconds of wall time, prompt processing included): when exceeded the request is
        cancelled and :class:`~openvino_llm.errors.GenerationTimeoutError` (a ``TimeoutError``) raised.
        """
        collector = Collector(on_token)
        for chunk in self.stream(messages, params, timeout=timeout):
            collector.add(chunk)
        return collector.generation()

    def stream(
        self, messages: str | Sequence[Message], params: GenerationParams | None = None, *, timeout: float | None = None
    ) -> Iterator[Chunk]:
        """Yield text chunks as they are produced; the last chunk carries finish reason, usage and timing.

        Bad input raises here, before anything runs; the request is submitted when iteration starts.
        Breaking out of the loop (or closing the generator) cancels the request at once, and so does
        passing ``timeout`` seconds since the call (``GenerationTimeoutError``).
        """
        return self._stream_sync(self._prepare(messages, params), _deadline(timeout))

    async def agenerate(
        self,
        messages: str | Sequence[Message],
        params: GenerationParams | None = None,
        *,
        on_token: Callable[[str], Any] | None = None,
        timeout: float | None = None,
    ) -> Generation:
        """Async twin of :meth:`generate`; never blocks the event loop."""
        collector = Collector(on_token)
        async for chunk in self.astream(messages, params, timeout=timeout):
            collector.add(chunk)
        return collector.generation()

    async def astream(
        self, messages: str | Sequence[Message], params: GenerationParams | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`stream`; cancelling the task, closing the iterator or passing ``timeout``
        seconds cancels the request."""
        deadline = _deadline(timeout)
        prep = self._prepare(messages, params)
        inbox = AsyncInbox(asyncio.get_running_loop(), self._check_alive)
        ticket = self._scheduler.submit(prep.input_ids, prep.config, inbox.put)
        out = self._output(prep)
        try:
            while not out.done:
                if deadline is None:
                    events = await inbox.drain()
                else:
                    try:
                        async with asyncio.timeout(deadline[0] - time.monotonic()):
                            events = await inbox.drain()
                    except TimeoutError:
                        raise self._timed_out(deadline[1]) from None
                for event in events:
                    for chunk in out.feed(event, ticket):
                        yield chunk
        finally:
            inbox.close()
            if not out.done:
                ticket.cancel()

    # ---- helpers -------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (no special tokens added)."""
        return int(self.tokenizer.encode(text, add_special_tokens=False).input_ids.shape[-1])

    def token_ids(self, text: str) -> list[int]:
        """The ids of the tokens ``text`` encodes to (no special tokens added)."""
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]

    def render(self, messages: str | Sequence[Message], params: GenerationParams | None = None) -> str:
        """The exact prompt text a request would be given (chat template and tool section applied)."""
        return self._render(normalize_messages(messages), params or GenerationParams()).prompt

    @property
    def active_requests(self) -> int:
        """Requests currently in the batch."""
        return self._scheduler.active_requests

    def close(self) -> None:
        """Stop the worker thread; pending requests end as cancelled."""
        self._scheduler.close()
        _forget(self)

    def _output(self, prep: _Prepared) -> OutputParser:
        return OutputParser(
            stop=prep.stop,
            tools=prep.tools,
            forced_tool=prep.forced_tool,
            max_new_tokens=prep.config.max_new_tokens,
            model_name=self.model_name,
            load_ms=self.load_ms,
            family=prep.family,
            parallel_tool_calls=prep.parallel_tool_calls,
            reasoning=prep.reasoning,
            reasoning_inside=prep.reasoning_inside,
        )

    def _check_alive(self) -> None:
        if not self._scheduler.alive:
            raise OpenVINOLLMError(f"The generation worker of {self.model_name} stopped; load the model again.")

    def _timed_out(self, timeout: float) -> GenerationTimeoutError:
        return GenerationTimeoutError(
            f"{self.model_name} did not finish within timeout={timeout} s, so the request was cancelled. Pass a "
            "larger timeout (or None), fewer max_new_tokens, or a shorter prompt."
        )

    def _stream_sync(self, prep: _Prepared, deadline: tuple[float, float] | None = None) -> Iterator[Chunk]:
        events = SyncInbox()
        ticket = self._scheduler.submit(prep.input_ids, prep.config, events.put)
        out = self._output(prep)
        try:
            while not out.done:
                wait = 5.0
                if deadline is not None:
                    wait = min(wait, deadline[0] - time.monotonic())
                    if wait <= 0:
                        raise self._timed_out(deadline[1])
                try:
                    event = events.get(timeout=wait)
                except queue.Empty:
                    self._check_alive()
                    continue
                yield from out.feed(event, ticket)
        finally:
            if not out.done:
                ticket.cancel()

    def _render(self, messages: list[Message], params: GenerationParams) -> _Rendered:
        tools = validate_tools(params.tools)
        choice = check_tool_choice(params.tool_choice, tools)
        if choice == "none":
            tools = ()
        forced = choice not in (None, "auto", "none")
        family = self._renderer.family_for(params.tool_format)
        extra = dict(params.chat_template_kwargs or {})
        if params.reasoning is not None:
            extra.setdefault("enable_thinking", params.reasoning)
        prompt = self._renderer.render(messages, tools, family=family, extra_context=extra)
        inside = self._renderer.reasons and starts_inside(prompt)
        if inside and (forced or params.reasoning is False):  # the template opened <think>: close it at once
            prompt += THINK_CLOSE + "\n\n"
            inside = False
        if forced:
            prompt += family.forced_prefill()
        return _Rendered(prompt, tools, choice, family, inside)

    def _prepare(self, messages: str | Sequence[Message], params: GenerationParams | None) -> _Prepared:
        params = params or GenerationParams()
        if not isinstance(params, GenerationParams):
            raise InvalidParameterError(f"params must be a GenerationParams, got {type(params).__name__}.")
        messages = normalize_messages(messages)
        rendered = self._render(messages, params)
        prompt, tools, choice, family = rendered.prompt, rendered.tools, rendered.choice, rendered.family
        parallel = params.parallel_tool_calls is not False
        if params.json_schema is not None:
            validate_json_schema(params.json_schema)
            if tools and choice != "none":
                raise InvalidParameterError("Pass either json_schema (structured output) or tools, not both.")
        encoded = self.tokenizer.encode(prompt, add_special_tokens=not self._renderer.has_template)
        input_ids = encoded.input_ids
        n_input = int(input_ids.shape[-1])
        if n_input >= self.context_window:
            raise ContextLengthExceededError(
                f"The prompt is {n_input} tokens long but {self.model_name}'s context window is "
                f"{self.context_window} tokens. Shorten the messages (or the retrieved context) "
                "to leave room for the reply."
            )
        room = self.context_window - n_input
        config = self._config(params, room)
        forced = choice not in (None, "auto", "none")
        if forced:
            only = None if choice == "required" else choice
            config.structured_output_config = family.forced_config(tools, only, parallel=parallel)
        elif tools:  # free text, but a call that opens is constrained to the tools' schemas
            config.structured_output_config = family.guided_config(tools, parallel=parallel)
        elif params.json_schema is not None:
            config.structured_output_config = ov_genai.StructuredOutputConfig(
                json_schema=json.dumps(params.json_schema)
            )
        stop = params.stop
        if not self._renderer.native_tools and any(m["role"] == "tool" for m in messages):
            stop = (*stop, TOOL_RESPONSE_CLOSE)  # small models echo the result's closing tag: end there
            config.stop_strings = set(stop)
            config.include_stop_str_in_output = True
        reasoning = ReasoningTags() if self._renderer.reasons else None
        return _Prepared(input_ids, config, stop, tools, forced, family, parallel, reasoning, rendered.reasoning_inside)

    def _config(self, params: GenerationParams, room: int) -> ov_genai.GenerationConfig:
        base = self._base_config
        config = ov_genai.GenerationConfig()
        for name in (
            "eos_token_id",
            "stop_token_ids",
            "do_sample",
            "temperature",
            "top_p",
            "top_k",
            "repetition_penalty",
        ):
            setattr(config, name, getattr(base, name))
        wanted = params.max_new_tokens
        if wanted is None:
            wanted = base.max_new_tokens if 0 < base.max_new_tokens < 2**31 else DEFAULT_MAX_NEW_TOKENS
        config.max_new_tokens = max(1, min(wanted, room))
        config.apply_chat_template = False
        if params.temperature is not None:
            config.do_sample = params.temperature > 0
            if params.temperature > 0:
                config.temperature = params.temperature
        if params.top_p is not None:
            config.top_p = params.top_p
        if params.top_k is not None:
            config.top_k = params.top_k or _TOP_K_NONE
        if params.repetition_penalty is not None:
            config.repetition_penalty = params.repetition_penalty
        if params.presence_penalty is not None:
            config.presence_penalty = params.presence_penalty
        if params.frequency_penalty is not None:
            config.frequency_penalty = params.frequency_penalty
        if params.seed is not None:
            config.rng_seed = params.seed
        if params.min_new_tokens:
            config.min_new_tokens = min(params.min_new_tokens, config.max_new_tokens)
        if params.stop:
            config.stop_strings = set(params.stop)
            config.include_stop_str_in_output = True  # we cut on text ourselves, across token boundaries
        check_request_knobs(self.speculation, params.num_assistant_tokens, params.assistant_confidence_threshold)
        if self.speculation is not None:
            self.speculation.apply(config, params.num_assistant_tokens, params.assistant_confidence_threshold)
        try:
            config.validate()
        except Exception as e:
            raise InvalidParameterError(f"Invalid generation parameters: {e}") from None
        return config


def _deadline(timeout: float | None) -> tuple[float, float] | None:
    """``(monotonic deadline, timeout)`` of a call with ``timeout`` seconds; None: no limit."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidParameterError(f"timeout must be a number of seconds > 0 (or None), got {timeout!r}.")
    return time.monotonic() + timeout, timeout


def _guess_context_window(base: ov_genai.GenerationConfig) -> int:
    if 0 < base.max_length < 2**31 - 1:
        return int(base.max_length)
    return 2048


# ---- loading -------------------------------------------------------------------------------------


def _load_genai(
    path: Path,
    device: str,
    properties: Mapping[str, Any],
    scheduler_config: Mapping[str, Any] | None,
    name: str,
    speculation: Speculation | None = None,
) -> tuple[BatchScheduler, ov_genai.Tokenizer, ov_genai.GenerationConfig]:
    # openvino-genai's own LLMPipeline defaults on CPU ("latency oriented"): a prompt is prefilled in one
    # step, and the KV cache of a prefix seen before (the system prompt, a chat's earlier turns) is reused
    sc = ov_genai.SchedulerConfig()
    sc.max_num_batched_tokens = 2**64 - 1
    sc.enable_prefix_caching = True
    for key, value in (scheduler_config or {}).items():
        if not hasattr(sc, key):
            raise InvalidParameterError(
                f"Unknown scheduler_config option {key!r}; known: {[k for k in dir(sc) if not k.startswith('_')]}."
            )
        setattr(sc, key, value)
    try:
        extra = speculation.pipeline_properties() if speculation else {}  # draft_model(...) / prompt_lookup
        try:
            pipe = ov_genai.ContinuousBatchingPipeline(str(path), sc, device, {**properties, **extra})
        except Exception as e:
            if "CACHE_DIR" not in properties:
                raise
            # another process may be writing the same compiled blob: load once without the cache
            log.warning("loading %s with the compiled-model cache failed (%s); retrying without it", name, e)
            uncached = {k: v for k, v in properties.items() if k != "CACHE_DIR"}
            pipe = ov_genai.ContinuousBatchingPipeline(str(path), sc, device, {**uncached, **extra})
    except Exception as e:
        raise OpenVINOLLMError(
            f"openvino-genai could not load {path} on {device}{_draft_note(speculation)}. Check that it is an LLM "
            "in OpenVINO IR or GGUF "
            f"form for a supported architecture (or try backend='optimum'). OpenVINO said: {e}"
        ) from e
    tokenizer = pipe.get_tokenizer()
    return BatchScheduler(pipe, tokenizer, name), tokenizer, pipe.get_config()


def _draft_note(speculation: Speculation | None) -> str:
    return f" with the draft model {speculation.draft_path}" if speculation and speculation.draft_path else ""


def _load_optimum(
    path: Path, device: str, properties: Mapping[str, Any]
) -> tuple[Any, ov_genai.Tokenizer, ov_genai.GenerationConfig]:
    from .optimum_backend import load_optimum_backend

    return load_optimum_backend(path, device, properties)


_engines: dict[tuple[Any, ...], Engine] = {}
_engines_lock = threading.Lock()


def _forget(engine: Engine) -> None:
    with _engines_lock:
        for key in [k for k, v in _engines.items() if v is engine]:
            del _engines[key]


def load_engine(
    model: str | Path | None = None,
    *,
    device: str = "AUTO",
    weight_format: str | None = None,
    ov_config: Mapping[str, Any] | None = None,
    backend: Backend = "auto",
    cache_dir: str | Path | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
    trust_remote_code: bool = False,
    draft_model: str | Path | None = None,
    draft_device: str | None = None,
    draft_ov_config: Mapping[str, Any] | None = None,
    prompt_lookup: bool = False,
    num_assistant_tokens: int | None = None,
    assistant_confidence_threshold: float | None = None,
    max_ngram_size: int | None = None,
    **export_options: Any,
) -> Engine:
    """Resolve ``model`` (IR folder, .gguf, HF folder, hub id, or None for the default), load it once.

    Objects asking for the same model, device, backend and options share one :class:`Engine`.
    ``export_options`` (``group_size``, ``ratio``, ``sym``, ``awq``, ``scale_estimation``,
    ``dataset``) tune weight compression when the model is exported.

    Speculative decoding (genai backend; greedy output stays the same): ``draft_model`` (any model
    reference, of the same tokenizer family) on ``draft_device`` (default: ``device``) with
    ``draft_ov_config`` (default: ``ov_config``) proposes ``num_assistant_tokens`` tokens per step
    (default 5), or as many as it is ``assistant_confidence_threshold``-confident of; or
    ``prompt_lookup=True`` copies them from the prompt (``max_ngram_size``, default 3). Requests may
    override both knobs (:class:`~openvino_llm.types.GenerationParams`).
    """
    from ..devices import check_device, compile_properties
    from ..models import resolve_model

    if backend not in ("auto", "genai", "optimum"):
        raise InvalidParameterError(f"backend={backend!r} is unknown; use 'auto', 'genai' or 'optimum'.")
    device = check_device(device)
    properties = compile_properties(ov_config, cache_dir)
    speculation = make_speculation(
        draft=draft_model is not None,
        prompt_lookup=prompt_lookup,
        num_assistant_tokens=num_assistant_tokens,
        assistant_confidence_threshold=assistant_confidence_threshold,
        max_ngram_size=max_ngram_size,
    )
    if speculation is not None and backend == "optimum":
        raise InvalidParameterError("Speculative decoding runs on openvino-genai: use backend='auto' or 'genai'.")
    if draft_model is None and (draft_device is not None or draft_ov_config is not None):
        raise InvalidParameterError("draft_device / draft_ov_config need a draft_model.")
    if draft_model is not None:
        draft_device = check_device(draft_device) if draft_device is not None else device
        draft_properties = compile_properties(ov_config if draft_ov_config is None else draft_ov_config, cache_dir)
    compression = None
    if weight_format is not None or export_options:
        from ..models import CompressionOptions

        compression = CompressionOptions(weight_format=weight_format, **export_options)
    resolved = resolve_model(
        model,
        weight_format=weight_format,
        compression=compression,
        cache_dir=cache_dir,
        trust_remote_code=trust_remote_code,
    )
    if speculation is not None and draft_model is not None:
        draft = resolve_model(draft_model, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
        speculation = speculation.with_draft(draft.path, draft.name, draft_device or device, draft_properties)
    key = (
        str(resolved.path),
        device,
        backend,
        json.dumps(properties, sort_keys=True, default=str),
        json.dumps(dict(scheduler_config or {}), sort_keys=True, default=str),
        speculation.key() if speculation else "",
    )
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            if speculation is not None and speculation.draft_path is not None:  # before compiling anything
                check_same_tokenizer(resolved.path, speculation.draft_path, resolved.name, speculation.draft_name or "")
            context = None
            try:
                from ..models import read_model_config

                context = read_model_config(resolved).context_window
            except Exception:
                log.debug("no context window in the model config of %s", resolved.path, exc_info=True)
            engine = Engine(
                resolved.path,
                name=resolved.name,
                device=device,
                properties=properties,
                context_window=context,
                scheduler_config=scheduler_config,
                backend=backend,
                speculation=speculation,
            )
            _engines[key] = engine
    return engine


@atexit.register
def _close_all() -> None:
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine._scheduler.close(timeout=2.0)


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "Engine", "load_engine"]
