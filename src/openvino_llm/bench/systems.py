"""The systems ``openvino-llm bench`` measures, and our own paths among them.

A system is a builder: given a :class:`SystemContext` (the resolved model, device, compiled-model
cache, output length) it loads what it measures and returns a :data:`Runner`, which answers one
chat and returns its :class:`Sample`, timed from the caller's side by a :class:`Clock`. A system
that cannot run here raises :class:`Unavailable`. Framework imports are lazy (:func:`require`).
Our paths: raw openvino-genai, the core engine, ChatOpenVINO (sync and async) and LlamaIndex's
OpenVINO; the peers are in :mod:`~openvino_llm.bench.peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OpenVINOLLMError
from ..types import GenerationParams, Message


@dataclass(frozen=True)
class Sample:
    """One timed request, measured from the caller's side."""

    ttft_ms: float
    total_ms: float
    output_tokens: int
    input_tokens: int | None = None
    internal: dict[str, float] | None = None  # the system's own timing (openvino-genai PerfMetrics)
    caller_cpu_ms: float = 0.0  # CPU time of the calling thread: the framework's own work per request
    caller_cpu_ttft_ms: float = 0.0  # the same, up to the first text: request preparation

    @property
    def caller_cpu_per_token_ms(self) -> float:
        return self.caller_cpu_ms / max(1, self.output_tokens)

    @property
    def tpot_ms(self) -> float:
        return (self.total_ms - self.ttft_ms) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0

    @property
    def decode_tps(self) -> float:
        return 1000.0 / self.tpot_ms if self.tpot_ms > 0 else 0.0


@dataclass
class SystemContext:
    """What every system builder needs: the resolved model, device, compiled-model cache, output length."""

    model_path: Path
    model_kind: str  # "ir" | "gguf" ("checkpoint" in a load probe of transformers)
    device: str
    compiled_dir: Path
    max_new_tokens: int
    count_tokens: Callable[[str], int] | None = None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    ov_config: dict[str, str] = field(default_factory=dict)
    #: the .gguf file the model came from (also when it was re-exported to IR): what llama.cpp runs
    source_gguf: Path | None = None
    #: the Hugging Face checkpoint folder the model came from, if any: what transformers runs
    source_checkpoint: Path | None = None
    #: the draft model's IR folder (``--draft-model``): what the ``engine-draft`` systems speculate with
    draft_path: Path | None = None
    #: servers started for the served systems (by system name), shared by their single-stream and concurrency runs
    servers: dict[str, Any] = field(default_factory=dict)
    #: what to stop when the run ends (the servers)
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        self.cleanup.callback(self._close_loop)  # runs last: the servers stop first

    def _close_loop(self) -> None:
        """Finish the async streams left open (their ``finally`` blocks run) and close the loop."""
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def properties(self) -> dict[str, Any]:
        return {"CACHE_DIR": str(self.compiled_dir), **self.ov_config}

    def params(self) -> GenerationParams:
        return GenerationParams(temperature=0.0, max_new_tokens=self.max_new_tokens)


def system_label(name: str, fmt: str | None, n_formats: int) -> str:
    """How a system is reported: its name, with the weight format when several are measured."""
    return f"{name} [{fmt or 'default'}]" if n_formats > 1 else name


def system_name(label: str) -> str:
    """The system name of a label (``"core-engine [int4]"`` -> ``"core-engine"``)."""
    return label.split(" [")[0]


class Unavailable(Exception):
    """A system that cannot run here: ``status`` is "not installed" or "not applicable"."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


Runner = Callable[[list[Message]], Sample]


@dataclass(frozen=True)
class System:
    """One system the bench can measure: what it runs, its builder, and for a peer its pip package(s)."""

    description: str
    build: Callable[[SystemContext], Runner]
    packages: tuple[str, ...] = ()


class Clock:
    """Caller-side timing of one streamed request."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = time.thread_time()
        self.thread = threading.get_ident()
        self.first = 0.0
        self.cpu_first = 0.0

    def text(self, piece: str | None) -> None:
        if piece and not self.first:
            self.first = time.perf_counter()
            if threading.get_ident() == self.thread:  # a streamer callback on another thread: unknown
                self.cpu_first = time.thread_time()

    def sample(
        self, output_tokens: int, input_tokens: int | None = None, internal: dict[str, float] | None = None
    ) -> Sample:
        end = time.perf_counter()
        cpu_end = time.thread_time()
        first = self.first or end
        cpu_ttft = ((self.cpu_first or cpu_end) - self.cpu0) * 1000
        return Sample(
            (first - self.t0) * 1000,
            (end - self.t0) * 1000,
            int(output_tokens),
            input_tokens,
            internal,
            (cpu_end - self.cpu0) * 1000,
            cpu_ttft,
        )


def require(module: str, package: str) -> Any:
    """Import ``module``, or raise :class:`Unavailable` ("not installed") naming the ``package`` to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Unavailable("not installed", f"pip install {package} ({e})") from None


def _build_genai_raw(ctx: SystemContext) -> Runner:
    import openvino_genai as ov_genai

    pipe = ov_genai.LLMPipeline(str(ctx.model_path), ctx.device, **ctx.properties)
    config = pipe.get_generation_config()
    config.max_new_tokens = ctx.max_new_tokens
    config.do_sample = False

    def run(messages: list[Message]) -> Sample:
        clock = Clock()

        def on_text(text: str) -> ov_genai.StreamingStatus:
            clock.text(text)
            return ov_genai.StreamingStatus.RUNNING

        result = pipe.generate(ov_genai.ChatHistory(list(messages)), config, on_text)
        m = result.perf_metrics
        internal = {
            "ttft_ms": m.get_ttft().mean,
            "tpot_ms": m.get_tpot().mean,
            "throughput_tps": m.get_throughput().mean,
        }
        return clock.sample(m.get_num_generated_tokens(), m.get_num_input_tokens(), internal)

    return run


def core_engine(ctx: SystemContext) -> Any:
    """The shared :class:`~openvino_llm.Engine` of ``ctx``'s model (loaded once per process)."""
    from ..engine import load_engine

    return load_engine(ctx.model_path, device=ctx.device, ov_config=ctx.properties)


def engine_sample(engine: Any, messages: list[Message], params: GenerationParams) -> Sample:
    """One request streamed through ``engine`` (local or remote, same interface), timed by a :class:`Clock`."""
    clock = Clock()
    final = None
    for chunk in engine.stream(messages, params):
        clock.text(chunk.text)
        if chunk.is_final:
            final = chunk
    assert final is not None and final.usage is not None
    timing = final.timing.as_dict() if final.timing is not None else {}
    internal = {k: v for k, v in timing.items() if k != "load_ms"} or None
    return clock.sample(final.usage.output_tokens, final.usage.input_tokens, internal)


def _build_core_engine(ctx: SystemContext) -> Runner:
    engine = core_engine(ctx)
    params = ctx.params()
    return lambda messages: engine_sample(engine, messages, params)


def chat_openvino(ctx: SystemContext) -> Any:
    """ChatOpenVINO on ``ctx``'s model, greedy, ``ctx.max_new_tokens`` (Unavailable without langchain)."""
    mod = require("langchain_openvino", "openvino-llm[langchain]")
    return mod.ChatOpenVINO(
        model=str(ctx.model_path),
        device=ctx.device,
        ov_config=ctx.properties,
        temperature=0.0,
        max_tokens=ctx.max_new_tokens,
    )


def lc_messages(messages: list[Message]) -> list[tuple[str, str]]:
    """``messages`` as LangChain (role, content) tuples."""
    return [("human" if m["role"] == "user" else m["role"], m["content"]) for m in messages]


def li_messages(messages: list[Message]) -> list[Any]:
    """``messages`` as LlamaIndex ``ChatMessage`` objects."""
    llms = require("llama_index.core.llms", "llama-index-core")
    return [llms.ChatMessage(role=m["role"], content=m["content"]) for m in messages]


def _lc_tokens(usage: Any) -> tuple[int, int | None]:
    if not usage:
        raise OpenVINOLLMError("ChatOpenVINO's last chunk carried no usage_metadata.")
    return int(usage["output_tokens"]), int(usage["input_tokens"])


def _build_langchain_stream(ctx: SystemContext) -> Runner:
    chat = chat_openvino(ctx)

    def run(messages: list[Message]) -> Sample:
        clock = Clock()
        usage = None
        for chunk in chat.stream(lc_messages(messages)):
            clock.text(chunk.content)  # type: ignore[arg-type]
            usage = chunk.usage_metadata or usage
        return clock.sample(*_lc_tokens(usage))

    return run


def _build_langchain_astream(ctx: SystemContext) -> Runner:
    chat = chat_openvino(ctx)

    async def one(messages: list[Message]) -> Sample:
        clock = Clock()
        usage = None
        async for chunk in chat.astream(lc_messages(messages)):
            clock.text(chunk.content)  # type: ignore[arg-type]
            usage = chunk.usage_metadata or usage
        return clock.sample(*_lc_tokens(usage))

    return lambda messages: ctx.loop.run_until_complete(one(messages))


def _build_llamaindex_stream_chat(ctx: SystemContext) -> Runner:
    mod = require("llama_index_openvino", "openvino-llm[llama-index]")
    llm = mod.OpenVINO(
        model=str(ctx.model_path),
        device=ctx.device,
        ov_config=ctx.properties,
        temperature=0.0,
        max_new_tokens=ctx.max_new_tokens,
    )

    def run(messages: list[Message]) -> Sample:
        clock = Clock()
        last = None
        for part in llm.stream_chat(li_messages(messages)):
            clock.text(part.delta)
            last = part
        extra = last.additional_kwargs if last is not None else {}
        if "completion_tokens" not in extra:
            raise OpenVINOLLMError("OpenVINO.stream_chat's last response carried no completion_tokens.")
        return clock.sample(extra["completion_tokens"], extra.get("prompt_tokens"))

    return run


def speculative_label(mode: str, assistant_tokens: int | None = None, confidence: float | None = None) -> str:
    """The label of a speculative system: ``engine-draft k=5``, ``engine-draft c=0.4``, ``engine-lookup k=5``."""
    knob = f"c={confidence:g}" if confidence is not None else f"k={assistant_tokens}"
    return f"engine-{mode} {knob}"


def speculative_system(mode: str, assistant_tokens: int | None = None, confidence: float | None = None) -> System:
    """The core engine speculating with the draft model (``mode="draft"``) or with prompt lookup (``"lookup"``).

    Every setting of the knobs is a request parameter of one engine per mode, so a sweep loads the
    model (and the draft) once.
    """
    knob = (
        f"assistant_confidence_threshold={confidence:g}"
        if confidence is not None
        else f"num_assistant_tokens={assistant_tokens}"
    )
    what = "draft model" if mode == "draft" else "prompt lookup"

    def build(ctx: SystemContext) -> Runner:
        from ..engine import load_engine

        if mode == "draft" and ctx.draft_path is None:
            raise Unavailable("not applicable", "no draft model: pass --draft-model")
        engine = load_engine(
            ctx.model_path,
            device=ctx.device,
            ov_config=ctx.properties,
            draft_model=ctx.draft_path if mode == "draft" else None,
            prompt_lookup=mode == "lookup",
        )
        params = GenerationParams(
            temperature=0.0,
            max_new_tokens=ctx.max_new_tokens,
            num_assistant_tokens=assistant_tokens if confidence is None else None,
            assistant_confidence_threshold=confidence,
        )
        return lambda messages: engine_sample(engine, messages, params)

    return System(f"openvino_llm Engine.stream, speculative decoding by {what}, {knob}", build)


#: Our own paths, always measured (adapters only when their framework is installed).
OURS: dict[str, System] = {
    "genai-raw": System("openvino_genai.LLMPipeline.generate + streamer (raw)", _build_genai_raw),
    "core-engine": System("openvino_llm Engine.stream", _build_core_engine),
    "langchain-stream": System("ChatOpenVINO.stream", _build_langchain_stream),
    "langchain-astream": System("ChatOpenVINO.astream", _build_langchain_astream),
    "llamaindex-stream_chat": System("LlamaIndex OpenVINO.stream_chat", _build_llamaindex_stream_chat),
}

__all__ = [
    "OURS",
    "Clock",
    "Runner",
    "Sample",
    "System",
    "SystemContext",
    "Unavailable",
    "chat_openvino",
    "core_engine",
    "engine_sample",
    "lc_messages",
    "li_messages",
    "require",
    "speculative_label",
    "speculative_system",
    "system_label",
    "system_name",
]
