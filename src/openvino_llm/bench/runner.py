"""``openvino-llm bench``: measure our stack against raw openvino-genai and the usual alternatives.

Every system answers the same prompts (a short and a long one, greedy, a fixed ``max_new_tokens``)
and is timed from the caller's side the same way: TTFT is the time to the first non-empty piece of
text, TPOT the time per output token after it, decode tokens/s its inverse, end-to-end latency the
whole call. Runs interleave the systems (A B C, C B A, ...) so machine noise hits all of them alike;
read the results as ratios. Load time (without and with the compiled-model cache) and peak RSS are
measured in a fresh subprocess per system. Framework imports are lazy: a peer that is not installed
is reported as "not installed", one that fails as "failed" with its error.

    >>> from openvino_llm.bench.runner import main
    >>> main(["path/to/model.gguf", "--quick", "--out", "bench-out"])  # doctest: +SKIP
    0

Results: ``bench.json``, ``bench.md`` (tables) and ``bench.png`` (chart) in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import importlib.metadata
import itertools
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError, OpenVINOLLMError
from ..types import GenerationParams, Message

SYSTEM_PROMPT = "You are a helpful assistant."
_LONG_CONTEXT = (
    "Notes on the history of the bicycle. The first two-wheeled, rider-propelled machine was the "
    "draisine, built by Karl Drais in Mannheim in 1817. It had no pedals: the rider pushed against the "
    "ground with his feet. In the 1860s French makers such as Pierre Michaux fitted pedals and cranks to "
    "the front wheel, creating the velocipede, nicknamed the boneshaker for its iron tyres and wooden "
    "frame. To go faster with direct drive, makers enlarged the front wheel, and by the 1870s the "
    "high-wheeler or penny-farthing, with a front wheel up to one and a half metres across, was popular "
    "with young men who accepted the risk of falling head first. In 1885 John Kemp Starley built the "
    "Rover safety bicycle in Coventry: two wheels of similar size, a chain driving the rear wheel and a "
    "diamond-shaped frame. John Boyd Dunlop's pneumatic tyre of 1888 made the ride comfortable, and the "
    "bicycle boom of the 1890s followed. Bicycles gave cheap personal transport to workers, helped women "
    "gain independence of movement and influenced clothing reform. Derailleur gears spread in the 20th "
    "century, aluminium and later carbon fibre frames made racing bicycles lighter, and mountain bikes "
    "appeared in California in the 1970s. Today more than a billion bicycles exist, and cities build "
    "protected lanes because cycling is healthy, quiet, and produces no exhaust."
)
#: The fixed prompt set: a short question and a long context with a question about it.
PROMPTS: dict[str, list[Message]] = {
    "short": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Write a short story about a robot who learns to paint."},
    ],
    "long": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": _LONG_CONTEXT + "\n\nUsing these notes, write a detailed essay on the history of the bicycle.",
        },
    ],
}

#: Peers measured when installed: name -> (pip package, what it runs).
PEERS: dict[str, tuple[str, str]] = {
    "langchain-huggingface": ("langchain-huggingface", 'HuggingFacePipeline(backend="openvino") + ChatHuggingFace'),
    "llama-index-openvino-genai": ("llama-index-llms-openvino-genai", "OpenVINOGenAILLM.stream_chat"),
    "llama-cpp-python": ("llama-cpp-python", "llama_cpp.Llama.create_chat_completion(stream=True)"),
    "transformers-torch": ("transformers torch", "transformers generate on PyTorch (CPU) + TextIteratorStreamer"),
}
#: Our own paths, always measured (adapters only when their framework is installed).
OURS: dict[str, str] = {
    "genai-raw": "openvino_genai.LLMPipeline.generate + streamer (raw)",
    "core-engine": "openvino_llm Engine.stream",
    "langchain-stream": "ChatOpenVINO.stream",
    "langchain-astream": "ChatOpenVINO.astream",
    "llamaindex-stream_chat": "LlamaIndex OpenVINO.stream_chat",
}
QUICK_SYSTEMS = ("core-engine", "langchain-stream")


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
class _Ctx:
    """What every system builder needs: the resolved model, device, compiled-model cache, output length."""

    model_path: Path
    model_kind: str  # "ir" | "gguf"
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

    @property
    def properties(self) -> dict[str, Any]:
        return {"CACHE_DIR": str(self.compiled_dir), **self.ov_config}

    def params(self) -> GenerationParams:
        return GenerationParams(temperature=0.0, max_new_tokens=self.max_new_tokens)


class _Unavailable(Exception):
    """A system that cannot run here: ``status`` is "not installed" or "not applicable"."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


Runner = Callable[[list[Message]], Sample]


class _Clock:
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


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise _Unavailable("not installed", f"pip install {package} ({e})") from None


# ---- our paths ------------------------------------------------------------------------------------


def _build_genai_raw(ctx: _Ctx) -> Runner:
    import openvino_genai as ov_genai

    pipe = ov_genai.LLMPipeline(str(ctx.model_path), ctx.device, **ctx.properties)
    config = pipe.get_generation_config()
    config.max_new_tokens = ctx.max_new_tokens
    config.do_sample = False

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()

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


def _core_engine(ctx: _Ctx) -> Any:
    from ..engine.engine import load_engine

    return load_engine(ctx.model_path, device=ctx.device, ov_config=ctx.properties)


def _build_core_engine(ctx: _Ctx) -> Runner:
    engine = _core_engine(ctx)
    params = ctx.params()

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        final = None
        for chunk in engine.stream(messages, params):
            clock.text(chunk.text)
            if chunk.is_final:
                final = chunk
        assert final is not None and final.usage is not None and final.timing is not None
        internal = {k: v for k, v in final.timing.as_dict().items() if k != "load_ms"}
        return clock.sample(final.usage.output_tokens, final.usage.input_tokens, internal)

    return run


def _chat_openvino(ctx: _Ctx) -> Any:
    mod = _require("langchain_openvino", "openvino-llm[langchain]")
    return mod.ChatOpenVINO(
        model=str(ctx.model_path),
        device=ctx.device,
        ov_config=ctx.properties,
        temperature=0.0,
        max_tokens=ctx.max_new_tokens,
    )


def _lc_messages(messages: list[Message]) -> list[tuple[str, str]]:
    return [("human" if m["role"] == "user" else m["role"], m["content"]) for m in messages]


def _lc_tokens(usage: Any) -> tuple[int, int | None]:
    if not usage:
        raise OpenVINOLLMError("ChatOpenVINO's last chunk carried no usage_metadata.")
    return int(usage["output_tokens"]), int(usage["input_tokens"])


def _build_langchain_stream(ctx: _Ctx) -> Runner:
    chat = _chat_openvino(ctx)

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        usage = None
        for chunk in chat.stream(_lc_messages(messages)):
            clock.text(chunk.content)  # type: ignore[arg-type]
            usage = chunk.usage_metadata or usage
        return clock.sample(*_lc_tokens(usage))

    return run


def _build_langchain_astream(ctx: _Ctx) -> Runner:
    chat = _chat_openvino(ctx)

    async def one(messages: list[Message]) -> Sample:
        clock = _Clock()
        usage = None
        async for chunk in chat.astream(_lc_messages(messages)):
            clock.text(chunk.content)  # type: ignore[arg-type]
            usage = chunk.usage_metadata or usage
        return clock.sample(*_lc_tokens(usage))

    return lambda messages: ctx.loop.run_until_complete(one(messages))


def _build_llamaindex_stream_chat(ctx: _Ctx) -> Runner:
    mod = _require("llama_index_openvino", "openvino-llm[llama-index]")
    from llama_index.core.llms import ChatMessage

    llm = mod.OpenVINO(
        model=str(ctx.model_path),
        device=ctx.device,
        ov_config=ctx.properties,
        temperature=0.0,
        max_new_tokens=ctx.max_new_tokens,
    )

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        last = None
        for part in llm.stream_chat([ChatMessage(role=m["role"], content=m["content"]) for m in messages]):
            clock.text(part.delta)
            last = part
        extra = last.additional_kwargs if last is not None else {}
        if "completion_tokens" not in extra:
            raise OpenVINOLLMError("OpenVINO.stream_chat's last response carried no completion_tokens.")
        return clock.sample(extra["completion_tokens"], extra.get("prompt_tokens"))

    return run


# ---- peers ----------------------------------------------------------------------------------------


def _count(ctx: _Ctx, text: str) -> int:
    """Output tokens of a peer that does not report them: its text encoded with the model's own tokenizer."""
    if ctx.count_tokens is None:
        ctx.count_tokens = _core_engine(ctx).count_tokens
    return ctx.count_tokens(text)


def _build_langchain_huggingface(ctx: _Ctx) -> Runner:
    lch = _require("langchain_huggingface", "langchain-huggingface")
    if ctx.model_kind != "ir":
        raise _Unavailable(
            "not applicable",
            "HuggingFacePipeline(backend='openvino') loads an OpenVINO IR / Hugging Face folder, not a GGUF file",
        )
    llm = lch.HuggingFacePipeline.from_model_id(
        model_id=str(ctx.model_path),
        task="text-generation",
        backend="openvino",
        model_kwargs={"device": ctx.device, "ov_config": ctx.properties},
        pipeline_kwargs={"max_new_tokens": ctx.max_new_tokens, "do_sample": False},
    )
    chat = lch.ChatHuggingFace(llm=llm, model_id=str(ctx.model_path))

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        parts = []
        for chunk in chat.stream(_lc_messages(messages)):
            clock.text(chunk.content)  # type: ignore[arg-type]
            parts.append(str(chunk.content))
        return clock.sample(_count(ctx, "".join(parts)))

    return run


def _build_llama_index_openvino_genai(ctx: _Ctx) -> Runner:
    mod = _require("llama_index.llms.openvino_genai", "llama-index-llms-openvino-genai")
    from llama_index.core.llms import ChatMessage

    llm = mod.OpenVINOGenAILLM(model_path=str(ctx.model_path), device=ctx.device, config=ctx.properties)
    llm.config.max_new_tokens = ctx.max_new_tokens
    llm.config.do_sample = False
    llm.config.apply_chat_template = False  # it renders the chat template itself; openvino-genai would apply it again

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        parts = []
        for part in llm.stream_chat([ChatMessage(role=m["role"], content=m["content"]) for m in messages]):
            clock.text(part.delta)
            parts.append(part.delta or "")
        return clock.sample(_count(ctx, "".join(parts)))

    return run


def _build_llama_cpp(ctx: _Ctx) -> Runner:
    llama_cpp = _require("llama_cpp", "llama-cpp-python")
    gguf = ctx.source_gguf or (ctx.model_path if ctx.model_kind == "gguf" else None)
    if gguf is None:
        raise _Unavailable("not applicable", "llama-cpp-python runs GGUF files; MODEL is not one")
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        n = 0
        for part in llm.create_chat_completion(
            messages=list(messages),
            max_tokens=ctx.max_new_tokens,
            temperature=0.0,
            stream=True,  # type: ignore[arg-type]
        ):
            text = part["choices"][0]["delta"].get("content")  # type: ignore[index]
            if text:
                clock.text(text)
                n += 1  # llama.cpp streams one token per chunk
        return clock.sample(n)

    return run


def _build_transformers_torch(ctx: _Ctx) -> Runner:
    torch = _require("torch", "torch")
    transformers = _require("transformers", "transformers")
    if ctx.source_checkpoint is not None:
        where: dict[str, Any] = {"pretrained_model_name_or_path": str(ctx.source_checkpoint)}
    elif ctx.source_gguf is not None:  # transformers dequantizes a GGUF (needs the gguf package)
        where = {"pretrained_model_name_or_path": str(ctx.source_gguf.parent), "gguf_file": ctx.source_gguf.name}
    else:
        raise _Unavailable("not applicable", "transformers needs the Hugging Face checkpoint or GGUF; MODEL is an IR")
    tokenizer = transformers.AutoTokenizer.from_pretrained(**where)
    model = transformers.AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    model.eval()
    torch.set_num_threads(os.cpu_count() or 1)
    eos = model.generation_config.eos_token_id

    def run(messages: list[Message]) -> Sample:
        clock = _Clock()
        prompt = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {"max_new_tokens": ctx.max_new_tokens, "do_sample": False, "streamer": streamer}
        worker = threading.Thread(
            target=model.generate, kwargs={**inputs, **kwargs, "eos_token_id": eos, "pad_token_id": eos}
        )
        worker.start()
        parts = []
        for text in streamer:
            clock.text(text)
            parts.append(text)
        worker.join()
        return clock.sample(_count(ctx, "".join(parts)))

    return run


BUILDERS: dict[str, Callable[[_Ctx], Runner]] = {
    "genai-raw": _build_genai_raw,
    "core-engine": _build_core_engine,
    "langchain-stream": _build_langchain_stream,
    "langchain-astream": _build_langchain_astream,
    "llamaindex-stream_chat": _build_llamaindex_stream_chat,
    "langchain-huggingface": _build_langchain_huggingface,
    "llama-index-openvino-genai": _build_llama_index_openvino_genai,
    "llama-cpp-python": _build_llama_cpp,
    "transformers-torch": _build_transformers_torch,
}


# ---- statistics -----------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    """Median and p90 (nearest rank) of ``values``."""
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 3), "p90": round(p90, 3)}


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Median/p90 of TTFT, TPOT, decode tokens/s, end-to-end latency and output tokens of ``samples``."""
    return {
        "runs": len(samples),
        "ttft_ms": _stats([s.ttft_ms for s in samples]),
        "tpot_ms": _stats([s.tpot_ms for s in samples]),
        "decode_tps": _stats([s.decode_tps for s in samples]),
        "e2e_ms": _stats([s.total_ms for s in samples]),
        "output_tokens": _stats([s.output_tokens for s in samples]),
        "caller_cpu_per_token_ms": _stats([s.caller_cpu_per_token_ms for s in samples]),
        "caller_cpu_ttft_ms": _stats([s.caller_cpu_ttft_ms for s in samples]),
        "input_tokens": samples[0].input_tokens,
        "internal": {
            k: round(statistics.median(s.internal[k] for s in samples), 3) for k in (samples[0].internal or {})
        },
    }


# ---- the benchmark --------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    """What ``openvino-llm bench`` measures (the command-line options, validated)."""

    model: str | None = None
    weight_formats: tuple[str | None, ...] = (None,)
    device: str = "CPU"
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    peers: tuple[str, ...] = tuple(PEERS)
    systems: tuple[str, ...] = tuple(OURS)
    out: Path = Path("bench-results")
    quick: bool = False
    max_new_tokens: int = 128
    runs: int = 5
    warmup: int = 1
    cache_dir: Path | None = None
    load_probes: bool = True
    group_size: int | None = None
    sym: bool = False
    #: OpenVINO properties for every OpenVINO path (ours and the openvino-genai peers), e.g. KV_CACHE_PRECISION
    ov_config: dict[str, str] = field(default_factory=dict)


def _int_list(text: str, what: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidParameterError(
            f"{what} must be a comma-separated list of integers such as 1,2,4,8, got {text!r}."
        ) from None
    if not values or any(v < 1 for v in values):
        raise InvalidParameterError(f"{what} must list integers >= 1 such as 1,2,4,8, got {text!r}.")
    return values


def _names(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    if text.strip().lower() in ("all", ""):
        return tuple(known)
    if text.strip().lower() == "none":
        return ()
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidParameterError(f"Unknown {what} {unknown}; choose from {list(known)}, 'all' or 'none'.")
    return names


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("openvino", "openvino-genai", "langchain-core", "llama-index-core", *(p for p, _ in PEERS.values())):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def _label(name: str, fmt: str | None, n_formats: int) -> str:
    return f"{name} [{fmt or 'default'}]" if n_formats > 1 else name


def _probe_load(
    system: str, model_path: Path, model_kind: str, opts: BenchOptions, compiled_dir: Path
) -> dict[str, Any]:
    """Load ``system`` in a fresh process, run one request; load time and peak RSS of that process."""
    cmd = [
        sys.executable,
        "-m",
        "openvino_llm.bench.runner",
        "--probe",
        system,
        str(model_path),
        "--probe-kind",
        model_kind,
        "--device",
        opts.device,
        "--probe-compiled-dir",
        str(compiled_dir),
        "--max-new-tokens",
        str(min(opts.max_new_tokens, 16)),
        *(["--ov-config", _ov_config_text(opts.ov_config)] if opts.ov_config else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"status": "failed", "error": " | ".join(tail) or f"exit code {proc.returncode}"}
    return json.loads(lines[-1])


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux: ``VmHWM`` of /proc/self/status. ``getrusage().ru_maxrss`` would be wrong in a subprocess: it
    keeps the parent's peak across fork + exec, so every probe would report at least the parent's RSS.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _run_probe(
    system: str, model: str, kind: str, device: str, compiled_dir: str, max_new_tokens: int, ov_config: dict[str, str]
) -> int:
    ctx = _Ctx(
        Path(model),
        kind,
        device,
        Path(compiled_dir),
        max_new_tokens,
        ov_config=ov_config,
        source_gguf=Path(model) if kind == "gguf" else None,
        source_checkpoint=Path(model) if kind == "checkpoint" else None,
    )
    try:
        t0 = time.perf_counter()
        run = BUILDERS[system](ctx)
        load_ms = (time.perf_counter() - t0) * 1000
        ctx.count_tokens = lambda text: len(text.split())  # no second model in this process: RSS is the system's own
        sample = run(PROMPTS["short"])
    except _Unavailable as e:
        print(json.dumps({"status": e.status, "error": str(e)}))
        return 0
    rss_mb = _peak_rss_mb()
    print(
        json.dumps(
            {
                "status": "ok",
                "load_ms": round(load_ms, 1),
                "peak_rss_mb": round(rss_mb, 1),
                "output_tokens": sample.output_tokens,
            }
        )
    )
    return 0


def _load_table(opts: BenchOptions, targets: list[tuple[str, Path, str]], work: Path) -> list[dict[str, Any]]:
    """Cold (empty compiled-model cache) then warm loads of each system, each in a fresh process, interleaved."""
    rows = {label: {"system": label} for label, _, _ in targets}
    for phase in ("cold", "warm"):
        for label, path, kind in targets:
            name = label.split(" [")[0]
            result = _probe_load(name, path, kind, opts, work / f"compiled-{label.replace(' ', '_')}")
            row = rows[label]
            if result.get("status") != "ok":
                row.setdefault("status", result.get("status"))
                row.setdefault("error", result.get("error"))
                continue
            row[f"load_{phase}_ms"] = result["load_ms"]
            row["peak_rss_mb"] = max(row.get("peak_rss_mb", 0.0), result["peak_rss_mb"])
            row.setdefault("status", "ok")
    return list(rows.values())


async def _timed_astream(
    stream: Callable[[list[Message]], Any], messages: list[Message], t0: float
) -> tuple[float, float, int]:
    """(ttft_ms, end_ms, output_tokens) of one ``astream`` request, both times measured from ``t0``."""
    first = 0.0
    tokens = 0
    async for text, n in stream(messages):
        if text and not first:
            first = time.perf_counter()
        tokens = n or tokens
    end = time.perf_counter()
    return ((first or end) - t0) * 1000, (end - t0) * 1000, tokens


def _astream_fns(ctx: _Ctx, names: Sequence[str]) -> dict[str, Callable[[list[Message]], Any]]:
    """Async streams yielding (text, output_tokens or 0), for the concurrency measurement."""
    fns: dict[str, Callable[[list[Message]], Any]] = {}
    params = ctx.params()
    if "core-engine" in names:
        engine = _core_engine(ctx)

        async def engine_stream(messages: list[Message]) -> Any:
            async for chunk in engine.astream(messages, params):
                yield chunk.text, chunk.usage.output_tokens if chunk.usage else 0

        fns["core-engine.astream"] = engine_stream
    if any(n.startswith("langchain") for n in names):
        with contextlib.suppress(_Unavailable):
            chat = _chat_openvino(ctx)

            async def chat_stream(messages: list[Message]) -> Any:
                async for chunk in chat.astream(_lc_messages(messages)):
                    yield chunk.content, (chunk.usage_metadata or {}).get("output_tokens", 0)

            fns["ChatOpenVINO.astream"] = chat_stream
    return fns


_request_numbers = itertools.count(1)


def fresh(messages: list[Message]) -> list[Message]:
    """``messages`` with a request number before the last message's text.

    Every request differs from all earlier ones right after the shared system prompt, so no
    system answers from a KV cache of a previous run (openvino-genai's prefix caching, llama.cpp's
    prompt reuse): TTFT always includes the prefill of the question (and of the long context).
    """
    *head, last = messages
    number = f"{next(_request_numbers):04d}"  # fixed width: the same number of tokens every time
    return [*head, {**last, "content": f"({number}) {last['content']}"}]  # type: ignore[typeddict-item]


def _concurrency(ctx: _Ctx, opts: BenchOptions, names: Sequence[str]) -> list[dict[str, Any]]:
    """N parallel astream requests on one engine against the same N one after another, interleaved."""
    fns = _astream_fns(ctx, names)
    messages = PROMPTS["short"]
    rounds = 1 if opts.quick else max(1, min(opts.runs, 3))
    raw: dict[tuple[str, int, str], list[tuple[float, list[tuple[float, float, int]]]]] = {}

    async def parallel(fn: Any, n: int) -> tuple[float, list[tuple[float, float, int]]]:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_timed_astream(fn, fresh(messages), t0) for _ in range(n)))
        return (time.perf_counter() - t0) * 1000, list(results)

    async def sequential(fn: Any, n: int) -> tuple[float, list[tuple[float, float, int]]]:
        t0 = time.perf_counter()
        results = []
        for _ in range(n):
            t = time.perf_counter()
            ttft, end, tokens = await _timed_astream(fn, fresh(messages), t)
            results.append((ttft, end, tokens))
        return (time.perf_counter() - t0) * 1000, results

    for fn in fns.values():  # warm-up
        ctx.loop.run_until_complete(parallel(fn, 1))
    for r in range(rounds):
        for n in opts.concurrency:
            for label, fn in fns.items():
                modes = (("parallel", parallel), ("sequential", sequential))
                for mode, run in modes if r % 2 == 0 else modes[::-1]:
                    raw.setdefault((label, n, mode), []).append(ctx.loop.run_until_complete(run(fn, n)))
    rows = []
    for label in fns:
        for n in opts.concurrency:
            row: dict[str, Any] = {"system": label, "n": n}
            for mode in ("parallel", "sequential"):
                rounds_ = raw[(label, n, mode)]
                tps = [sum(t for _, _, t in res) / (wall / 1000) for wall, res in rounds_]
                row[mode] = {
                    "aggregate_tps": round(statistics.median(tps), 2),
                    "ttft_ms_median": round(statistics.median(x[0] for _, res in rounds_ for x in res), 1),
                    "wall_ms": round(statistics.median(wall for wall, _ in rounds_), 1),
                    "output_tokens": sum(t for _, _, t in rounds_[0][1]),
                }
            seq = row["sequential"]["aggregate_tps"]
            row["speedup"] = round(row["parallel"]["aggregate_tps"] / seq, 3) if seq else None
            rows.append(row)
    return rows


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the benchmark described by ``opts``; write bench.json/.md/.png to ``opts.out``; return the results."""

    opts.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="openvino-llm-bench-"))
    try:
        resolved = {fmt: _resolve(opts, fmt) for fmt in opts.weight_formats}
        main_fmt = opts.weight_formats[0]
        main_model = resolved[main_fmt]
        n_fmt = len(opts.weight_formats)
        status: dict[str, dict[str, str]] = {}
        runners: dict[str, Runner] = {}
        ctxs: dict[str | None, _Ctx] = {}
        load_targets: list[tuple[str, Path, str]] = []
        source_gguf = _source_gguf(opts)
        source_checkpoint = _source_checkpoint(opts)
        for fmt in opts.weight_formats:
            ctx = _Ctx(
                resolved[fmt].path,
                resolved[fmt].kind,
                opts.device,
                work / f"compiled-{fmt}",
                opts.max_new_tokens,
                ov_config=dict(opts.ov_config),
                source_gguf=source_gguf,
                source_checkpoint=source_checkpoint,
            )
            ctxs[fmt] = ctx
            names = [n for n in opts.systems if fmt == main_fmt or n in ("genai-raw", "core-engine")]
            if fmt == main_fmt:
                names += list(opts.peers)
            for name in names:
                label = name if name in PEERS else _label(name, fmt, n_fmt)  # a peer runs once, on its own format
                try:
                    runners[label] = BUILDERS[name](ctx)
                    status[label] = {"status": "ok"}
                    if name == "llama-cpp-python" and source_gguf is not None and not opts.quick:
                        load_targets.append((label, source_gguf, "gguf"))
                    elif name == "transformers-torch" and not opts.quick:  # it loads the source, not the IR
                        source = (source_checkpoint, "checkpoint") if source_checkpoint else (source_gguf, "gguf")
                        load_targets.append((label, source[0], source[1]))  # type: ignore[arg-type]
                    elif name in ("genai-raw", "core-engine") or (name in PEERS and not opts.quick):
                        load_targets.append((label, ctx.model_path, ctx.model_kind))
                except _Unavailable as e:
                    status[label] = {"status": e.status, "error": str(e)}
                except Exception as e:  # a failing system is reported, never dropped
                    status[label] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
        if not runners:
            raise OpenVINOLLMError(f"No system could run: {status}")

        # single stream, interleaved: warm-up rounds first, then measured rounds with alternating order
        samples: dict[tuple[str, str], list[Sample]] = {}
        failures: dict[str, list[str]] = {}
        order = list(runners)
        for r in range(opts.warmup + opts.runs):
            for prompt, messages in PROMPTS.items():
                for label in order if r % 2 == 0 else order[::-1]:
                    if status[label]["status"] != "ok":
                        continue
                    try:
                        sample = runners[label](fresh(messages))
                    except Exception as e:  # counted and reported; the system keeps its turn in later rounds
                        failures.setdefault(label, []).append(f"{type(e).__name__}: {e}"[:300])
                        continue
                    if r >= opts.warmup:
                        samples.setdefault((label, prompt), []).append(sample)
        requests = (opts.warmup + opts.runs) * len(PROMPTS)
        for label, errors in failures.items():
            ok = any(key[0] == label for key in samples)
            status[label] = {
                "status": "ok" if ok else "failed",
                "error": f"{len(errors)} of {requests} requests failed; first: {errors[0]}",
            }
        single = [
            {"system": label, "prompt": prompt, **summarize(samples[(label, prompt)])}
            for label in runners
            for prompt in PROMPTS
            if status[label]["status"] == "ok" and (label, prompt) in samples
        ]

        concurrency = _concurrency(ctxs[main_fmt], opts, opts.systems) if opts.concurrency else []
        if opts.load_probes:
            if opts.quick:
                load_targets = [t for t in load_targets if t[0].startswith("core-engine")]
            load = _load_table(opts, load_targets, work)
        else:
            load = []
        sizes = {
            str(opts.weight_formats[i] or "default"): _disk_size(resolved[f].path)
            for i, f in enumerate(opts.weight_formats)
        }
        results: dict[str, Any] = {
            "meta": {
                "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "cpu": _cpu_name(),
                "cores": os.cpu_count(),
                "command": command_line(opts),
                "model": main_model.name,
                "model_path": str(main_model.path),
                "model_kind": main_model.kind,
                "weight_formats": [f or "default" for f in opts.weight_formats],
                "model_size_bytes": sizes,
                "device": opts.device,
                "ov_config": dict(opts.ov_config),
                "max_new_tokens": opts.max_new_tokens,
                "runs": opts.runs,
                "warmup": opts.warmup,
                "quick": opts.quick,
                "versions": _versions(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            },
            "systems": [{"system": label, "description": _describe(label), **st} for label, st in status.items()],
            "single_stream": single,
            "concurrency": concurrency,
            "load": load,
        }
        results["ratios"] = ratios(results)
        results["targets"] = targets(results)
        write_outputs(results, opts.out)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _source_gguf(opts: BenchOptions) -> Path | None:
    """The .gguf file MODEL names (the default model is one), whatever weight formats are measured."""
    from ..models.export import is_gguf_file
    from ..models.resolve import resolve_model

    if opts.model is None:
        resolved = resolve_model(None)
        return resolved.path if resolved.kind == "gguf" else None
    return Path(opts.model).expanduser().resolve() if is_gguf_file(opts.model) else None


def _source_checkpoint(opts: BenchOptions) -> Path | None:
    """The Hugging Face checkpoint folder MODEL names, if it is one (not an IR folder, not a hub id)."""
    if opts.model is None:
        return None
    path = Path(opts.model).expanduser()
    if path.is_dir() and (path / "config.json").is_file() and not (path / "openvino_model.xml").is_file():
        return path.resolve()
    return None


def _parse_ov_config(text: str | None) -> dict[str, str]:
    """``"KV_CACHE_PRECISION=f16,NUM_STREAMS=1"`` -> a dict (``InvalidParameterError`` on a malformed item)."""
    config: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidParameterError(
                f"--ov-config takes KEY=VALUE pairs separated by commas, e.g. KV_CACHE_PRECISION=f16; got {item!r}."
            )
        config[key.strip()] = value.strip()
    return config


def _ov_config_text(config: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items())


def _resolve(opts: BenchOptions, fmt: str | None) -> Any:
    from ..models.export import CompressionOptions
    from ..models.resolve import resolve_model

    compression = None
    if fmt is not None and fmt.startswith("int4") and (opts.group_size is not None or opts.sym):
        compression = CompressionOptions(weight_format=fmt, group_size=opts.group_size, sym=opts.sym)
    return resolve_model(opts.model, weight_format=fmt, compression=compression, cache_dir=opts.cache_dir)


def command_line(opts: BenchOptions) -> str:
    """The ``openvino-llm bench`` command that reproduces ``opts`` (recorded with the results)."""
    parts = ["openvino-llm", "bench"]
    if opts.model is not None:
        parts.append(str(opts.model))
    if opts.weight_formats != (None,):
        parts += ["--weight-format", ",".join(f or "default" for f in opts.weight_formats)]
    if opts.group_size is not None:
        parts += ["--group-size", str(opts.group_size)]
    if opts.sym:
        parts.append("--sym")
    if opts.ov_config:
        parts += ["--ov-config", _ov_config_text(opts.ov_config)]
    if opts.device != "CPU":
        parts += ["--device", opts.device]
    if opts.quick:
        parts.append("--quick")
    parts += ["--concurrency", ",".join(map(str, opts.concurrency)) or "none"]
    parts += ["--peers", ",".join(opts.peers) or "none"]
    if set(opts.systems) != set(OURS):
        parts += ["--systems", ",".join(opts.systems)]
    parts += ["--max-new-tokens", str(opts.max_new_tokens), "--runs", str(opts.runs)]
    if opts.warmup != 1:
        parts += ["--warmup", str(opts.warmup)]
    if opts.cache_dir is not None:
        parts += ["--cache-dir", str(opts.cache_dir)]
    if not opts.load_probes:
        parts.append("--no-load-probes")
    return " ".join([*parts, "--out", str(opts.out)])


def _describe(label: str) -> str:
    name = label.split(" [")[0]
    return OURS.get(name) or PEERS.get(name, ("", name))[1]


# ---- ratios and targets ---------------------------------------------------------------------------


def _name(label: str) -> str:
    """The system name of a label (``"core-engine [int4]"`` -> ``"core-engine"``)."""
    return label.split(" [")[0]


def _find(rows: list[dict[str, Any]], system: str, prompt: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["system"] == system and r["prompt"] == prompt), None)


def _delta(row: dict[str, Any], base: dict[str, Any], key: str) -> float:
    return round(row[key]["median"] - base[key]["median"], 4)


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each system against raw openvino-genai (and the adapters against the core engine), per prompt."""
    rows = results["single_stream"]
    out = []
    for row in rows:
        fmt = row["system"][len(row["system"].split(" [")[0]) :]
        name = row["system"].split(" [")[0]
        for base_name in ("genai-raw", "core-engine"):
            base = _find(rows, base_name + fmt, row["prompt"])
            if base is None or name in ("genai-raw", base_name) or (base_name == "core-engine" and name in PEERS):
                continue
            b_tpot, tpot = base["tpot_ms"]["median"], row["tpot_ms"]["median"]
            out.append(
                {
                    "system": row["system"],
                    "baseline": base["system"],
                    "prompt": row["prompt"],
                    "ttft_delta_ms": round(row["ttft_ms"]["median"] - base["ttft_ms"]["median"], 2),
                    "ttft_ratio": round(row["ttft_ms"]["median"] / base["ttft_ms"]["median"], 3)
                    if base["ttft_ms"]["median"]
                    else None,
                    "decode_time_delta_pct": round((tpot / b_tpot - 1) * 100, 2) if b_tpot else None,
                    "decode_tps_ratio": round(row["decode_tps"]["median"] / base["decode_tps"]["median"], 3)
                    if base["decode_tps"]["median"]
                    else None,
                    # the calling thread's extra CPU (per token; before the first text): what a wrapper itself
                    # costs, far less noisy than wall time. Only against the core engine: raw openvino-genai
                    # runs inference on the calling thread too.
                    "caller_cpu_delta_ms_per_token": _delta(row, base, "caller_cpu_per_token_ms")
                    if base_name == "core-engine"
                    else None,
                    "caller_cpu_ttft_delta_ms": _delta(row, base, "caller_cpu_ttft_ms")
                    if base_name == "core-engine"
                    else None,
                }
            )
    return out


def _versus_llama_cpp(rows: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(our system, decode tok/s ratio, TTFT ratio) against llama-cpp-python, worst prompt, for each format."""
    out = []
    for row in rows:
        if _name(row["system"]) not in ("genai-raw", "core-engine") or row["prompt"] != next(iter(PROMPTS)):
            continue
        pairs = [(_find(rows, row["system"], p), _find(rows, "llama-cpp-python", p)) for p in PROMPTS]
        pairs = [(a, b) for a, b in pairs if a and b and b["decode_tps"]["median"] and b["ttft_ms"]["median"]]
        if pairs:
            tps = min(a["decode_tps"]["median"] / b["decode_tps"]["median"] for a, b in pairs)
            ttft = max(a["ttft_ms"]["median"] / b["ttft_ms"]["median"] for a, b in pairs)
            out.append((row["system"], tps, ttft))
    return out


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets, each "met", "missed" or "not measured" (with why) from this run's numbers."""
    out: list[dict[str, str]] = []
    status = {_name(s["system"]): s for s in results["systems"]}
    rat = results["ratios"]

    def add(target: str, verdict: str, detail: str) -> None:
        out.append({"target": target, "verdict": verdict, "detail": detail})

    name = "adapters add <= 2% decode time and <= 5 ms TTFT over raw openvino-genai"
    adapters = [r for r in rat if r["baseline"].startswith("genai-raw") and r["system"].split(" [")[0] in OURS]
    if adapters:
        worst_pct = max(r["decode_time_delta_pct"] or 0.0 for r in adapters)
        worst_ms = max(r["ttft_delta_ms"] for r in adapters)
        ok = worst_pct <= 2.0 and worst_ms <= 5.0
        add(
            f"{name} (wall clock)",
            "met" if ok else "missed",
            f"worst: {worst_pct:+.1f}% decode time, {worst_ms:+.1f} ms TTFT",
        )
    else:
        add(f"{name} (wall clock)", "not measured", "needs genai-raw and an adapter")
    on_engine = [r for r in rat if r["baseline"].startswith("core-engine")]
    raw_tpots = [r["tpot_ms"]["median"] for r in results["single_stream"] if r["system"].startswith("genai-raw")]
    if on_engine and raw_tpots:
        per_token = max(r["caller_cpu_delta_ms_per_token"] for r in on_engine)
        before_first = max(r["caller_cpu_ttft_delta_ms"] for r in on_engine)
        share = per_token / min(raw_tpots)
        add(
            f"{name} (the adapter layer's own CPU on the calling thread, over the core engine)",
            "met" if share <= 0.02 and before_first <= 5.0 else "missed",
            f"worst: {per_token:+.3f} ms/token = {share * 100:.2f}% of raw TPOT {min(raw_tpots):.1f} ms; "
            f"{before_first:+.2f} ms before the first token",
        )
    else:
        add(f"{name} (adapter CPU over the core engine)", "not measured", "needs genai-raw, core-engine and an adapter")

    versus_llama = _versus_llama_cpp(results["single_stream"])
    if versus_llama:
        best = max(versus_llama, key=lambda v: (v[1] >= 1 and v[2] <= 1.5, v[1]))
        add(
            "decode tok/s >= llama-cpp-python's, TTFT <= 1.5x its",
            "met" if best[1] >= 1 and best[2] <= 1.5 else "missed",
            "; ".join(f"{label}/llama.cpp: decode {tps:.2f}x, TTFT {ttft:.2f}x" for label, tps, ttft in versus_llama)
            + " (worst prompt each)",
        )
    else:
        add(
            "decode tok/s >= llama-cpp-python's, TTFT <= 1.5x its",
            "not measured",
            status.get("llama-cpp-python", {}).get("error", "llama-cpp-python not in --peers"),
        )

    conc = [r for r in results["concurrency"] if r["system"] == "ChatOpenVINO.astream" and r["n"] == 8]
    if conc:
        s = conc[0]["speedup"]
        add(
            "8 concurrent ChatOpenVINO.astream >= 4x aggregate tok/s of 8 sequential",
            "met" if s >= 4 else "missed",
            f"{s:.2f}x",
        )
    else:
        add(
            "8 concurrent ChatOpenVINO.astream >= 4x aggregate tok/s of 8 sequential",
            "not measured",
            "no N=8 ChatOpenVINO run",
        )

    hf_target = (
        ">= 1.2x HuggingFacePipeline(backend='openvino') single-stream decode (ChatOpenVINO.stream vs ChatHuggingFace)"
    )
    rows = results["single_stream"]
    pairs = [
        (ours, peer)
        for p in PROMPTS
        for ours in [next((r for r in rows if _name(r["system"]) == "langchain-stream" and r["prompt"] == p), None)]
        for peer in [
            next((r for r in rows if _name(r["system"]) == "langchain-huggingface" and r["prompt"] == p), None)
        ]
        if ours and peer and peer["decode_tps"]["median"]
    ]
    if pairs:
        x = min(a["decode_tps"]["median"] / b["decode_tps"]["median"] for a, b in pairs)
        add(hf_target, "met" if x >= 1.2 else "missed", f"{x:.2f}x (worst prompt)")
    else:
        why = status.get("langchain-huggingface", {}).get("error", "needs langchain-huggingface and langchain-stream")
        add(hf_target, "not measured", why)

    fmts = results["meta"]["weight_formats"]
    if "fp16" in fmts and "int4" in fmts:
        sizes = results["meta"]["model_size_bytes"]
        rows = results["single_stream"]
        speed = [(_find(rows, "core-engine [int4]", p), _find(rows, "core-engine [fp16]", p)) for p in PROMPTS]
        x = min(a["decode_tps"]["median"] / b["decode_tps"]["median"] for a, b in speed if a and b)
        size = sizes["int4"] / sizes["fp16"]
        add(
            "int4 decodes >= 1.3x fp16, size <= 0.35x",
            "met" if x >= 1.3 and size <= 0.35 else "missed",
            f"decode {x:.2f}x, size {size:.2f}x",
        )
    else:
        add(
            "int4 decodes >= 1.3x fp16, size <= 0.35x",
            "not measured",
            "needs --weight-format fp16,int4 on a Hugging Face checkpoint or a GGUF file",
        )
    return out


# ---- outputs --------------------------------------------------------------------------------------


def _fmt(stat: dict[str, float]) -> str:
    return f"{stat['median']:.1f} / {stat['p90']:.1f}"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(status: Any, error: str | None) -> str:
    text = f"{status}: {error}" if error else str(status)
    return " ".join(text.split()).replace("|", "/")


def render_markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables."""
    meta = results["meta"]
    lines = [
        f"# openvino-llm bench: {meta['model']}",
        "",
        f"- Date: {meta['date']}; CPU: {meta['cpu']} ({meta['cores']} cores); device {meta['device']}; "
        f"1-min load average at the end: {meta['load_avg_1m']}",
        f"- Command: `{meta['command']}`",
        f"- Model: `{meta['model_path']}` ({meta['model_kind']}), size on disk: "
        + ", ".join(f"{k}: {v / 1e6:.1f} MB" for k, v in meta["model_size_bytes"].items()),
        f"- Greedy, max_new_tokens={meta['max_new_tokens']}, {meta['runs']} measured run(s) after "
        f"{meta['warmup']} warm-up, systems interleaved; values are median / p90.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "## Single stream",
        "",
        "| system | prompt | in tok | out tok | TTFT ms | TPOT ms | decode tok/s | end-to-end ms "
        "| caller CPU ms/token |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["single_stream"]:
        lines.append(
            f"| {r['system']} | {r['prompt']} | {r['input_tokens'] if r['input_tokens'] is not None else '-'} | "
            f"{r['output_tokens']['median']:.0f} | {_fmt(r['ttft_ms'])} | {_fmt(r['tpot_ms'])} | "
            f"{_fmt(r['decode_tps'])} | {_fmt(r['e2e_ms'])} | {r['caller_cpu_per_token_ms']['median']:.3f} |"
        )
    lines += [
        "",
        "## Against the baseline (medians)",
        "",
        "| system | baseline | prompt | TTFT delta ms | decode time delta | decode tok/s ratio "
        "| caller CPU delta ms/token | caller CPU delta before 1st token ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["ratios"]:
        pct = "-" if r["decode_time_delta_pct"] is None else f"{r['decode_time_delta_pct']:+.1f}%"
        lines.append(
            f"| {r['system']} | {r['baseline']} | {r['prompt']} | {r['ttft_delta_ms']:+.1f} | {pct} "
            f"| {r['decode_tps_ratio']} | {_num(r['caller_cpu_delta_ms_per_token'], '+.3f')} "
            f"| {_num(r['caller_cpu_ttft_delta_ms'], '+.2f')} |"
        )
    if results["concurrency"]:
        lines += [
            "",
            "## Concurrency (short prompt, N requests on one engine)",
            "",
            "| system | N | parallel agg tok/s | sequential agg tok/s | speedup "
            "| TTFT ms parallel | TTFT ms sequential |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["concurrency"]:
            p, s = r["parallel"], r["sequential"]
            lines.append(
                f"| {r['system']} | {r['n']} | {p['aggregate_tps']:.1f} | {s['aggregate_tps']:.1f} | "
                f"{r['speedup']}x | {p['ttft_ms_median']:.0f} | {s['ttft_ms_median']:.0f} |"
            )
    if results["load"]:
        lines += [
            "",
            "## Load time and memory (each in a fresh process)",
            "",
            "| system | load, empty compiled cache ms | load, warm compiled cache ms | peak RSS MB | status |",
            "|---|---:|---:|---:|---|",
        ]
        for r in results["load"]:
            lines.append(
                f"| {r['system']} | {r.get('load_cold_ms', '-')} | {r.get('load_warm_ms', '-')} | "
                f"{r.get('peak_rss_mb', '-')} | {_cell(r.get('status'), r.get('error'))} |"
            )
    lines += ["", "## Systems", "", "| system | what | status |", "|---|---|---|"]
    for s in results["systems"]:
        lines.append(f"| {s['system']} | {s['description']} | {_cell(s['status'], s.get('error'))} |")
    lines += ["", "## Targets", "", "| target | verdict | detail |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['verdict']} | {t['detail']} |")
    return "\n".join(lines) + "\n"


def render_chart(results: dict[str, Any], path: Path) -> bool:
    """Decode tokens/s, TTFT and concurrency speedup as a PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = results["single_stream"]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    prompts = list(PROMPTS)
    panels = 3 if results["concurrency"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    width = 0.8 / max(1, len(prompts))
    for ax, key, title in (
        (axes[0], "decode_tps", "decode tokens/s (median)"),
        (axes[1], "ttft_ms", "TTFT ms (median)"),
    ):
        for i, prompt in enumerate(prompts):
            values = [(_find(rows, s, prompt) or {}).get(key, {}).get("median", 0.0) for s in systems]
            ax.barh([y + i * width for y in range(len(systems))], values, height=width, label=prompt)
        ax.set_yticks([y + width * (len(prompts) - 1) / 2 for y in range(len(systems))], systems, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.legend(fontsize=8)
    if results["concurrency"]:
        ax = axes[2]
        for label in dict.fromkeys(r["system"] for r in results["concurrency"]):
            pts = [r for r in results["concurrency"] if r["system"] == label]
            ax.plot(
                [r["n"] for r in pts],
                [r["parallel"]["aggregate_tps"] for r in pts],
                marker="o",
                label=f"{label} parallel",
            )
            ax.plot(
                [r["n"] for r in pts],
                [r["sequential"]["aggregate_tps"] for r in pts],
                marker="x",
                ls="--",
                label=f"{label} sequential",
            )
        ax.set_xlabel("requests N")
        ax.set_title("aggregate tokens/s")
        ax.legend(fontsize=7)
    fig.suptitle(f"{results['meta']['model']} on {results['meta']['cpu']} ({results['meta']['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` (when matplotlib is installed) into ``out``."""
    results["meta"]["chart"] = render_chart(results, out / "bench.png")
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(render_markdown(results))


# ---- command line ---------------------------------------------------------------------------------


def build_parser(
    parser: argparse.ArgumentParser | None = None, *, add_cache_dir: bool = True
) -> argparse.ArgumentParser:
    """The ``bench`` options, added to ``parser`` when given (the ``openvino-llm bench`` subcommand's parser).

    ``add_cache_dir=False`` when the caller's parser already has ``--cache-dir``.
    """
    p = parser or argparse.ArgumentParser(prog="openvino-llm bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "model", nargs="?", default=None, help="IR folder, .gguf, HF folder or hub id (default: SmolLM2-135M GGUF)"
    )
    p.add_argument(
        "--weight-format", default=None, help="comma list, e.g. fp16,int8,int4 (Hugging Face checkpoints, GGUF files)"
    )
    p.add_argument("--group-size", type=int, default=None, help="int4 group size when exporting (default 128)")
    p.add_argument("--sym", action="store_true", help="int4: symmetric quantization (no zero point)")
    p.add_argument("--ov-config", default=None, help="OpenVINO properties KEY=VALUE,... e.g. KV_CACHE_PRECISION=f16")
    p.add_argument("--device", default="CPU", help="OpenVINO device (default CPU)")
    p.add_argument(
        "--concurrency",
        default=None,
        help="comma list of parallel request counts, or none (default 1,2,4,8; quick 1,2)",
    )
    p.add_argument(
        "--peers", default=None, help=f"comma list of {list(PEERS)}, 'all' or 'none' (default all; quick none)"
    )
    p.add_argument(
        "--systems",
        default=None,
        help=f"comma list of our paths {list(OURS)} (default all; quick: {','.join(QUICK_SYSTEMS)})",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default ./bench-results)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 run, 16 tokens, core engine + ChatOpenVINO")
    p.add_argument("--max-new-tokens", type=int, default=None, help="output tokens per request (default 128; quick 16)")
    p.add_argument("--runs", type=int, default=None, help="measured runs after warm-up (default 5; quick 1)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs, not measured (default 1)")
    if add_cache_dir:
        p.add_argument("--cache-dir", type=Path, default=None, help="openvino-llm cache folder (exports)")
    p.add_argument("--no-load-probes", action="store_true", help="skip the load-time/RSS subprocesses")
    for hidden in ("--probe", "--probe-kind", "--probe-compiled-dir"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    return p


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """Validate parsed arguments into :class:`BenchOptions` (raises InvalidParameterError on bad input)."""
    quick = bool(args.quick)
    max_new = args.max_new_tokens if args.max_new_tokens is not None else (16 if quick else 128)
    runs = args.runs if args.runs is not None else (1 if quick else 5)
    if max_new < 2:
        raise InvalidParameterError(f"--max-new-tokens must be >= 2 (TPOT needs two tokens), got {max_new}.")
    if runs < 1 or args.warmup < 0:
        raise InvalidParameterError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {args.warmup}.")
    formats: tuple[str | None, ...] = (None,)
    if args.weight_format:
        names = [f.strip() for f in args.weight_format.split(",") if f.strip()]
        # "default" = the model as it is (what command_line() records for None)
        formats = tuple(None if f.lower() == "default" else f for f in names) or (None,)
    return BenchOptions(
        model=args.model,
        weight_formats=formats,
        device=args.device,
        concurrency=_int_list(args.concurrency or ("1,2" if quick else "1,2,4,8"), "--concurrency"),
        peers=_names(args.peers or ("none" if quick else "all"), tuple(PEERS), "peer(s)"),
        systems=_names(args.systems or (",".join(QUICK_SYSTEMS) if quick else "all"), tuple(OURS), "system(s)"),
        out=args.out,
        quick=quick,
        max_new_tokens=max_new,
        runs=runs,
        warmup=args.warmup,
        cache_dir=args.cache_dir,
        load_probes=not args.no_load_probes,
        group_size=args.group_size,
        sym=bool(args.sym),
        ov_config=_parse_ov_config(args.ov_config),
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``bench`` from parsed arguments; prints the markdown summary. Returns the exit code."""
    if args.probe:
        return _run_probe(
            args.probe,
            args.model,
            args.probe_kind,
            args.device,
            args.probe_compiled_dir,
            args.max_new_tokens or 16,
            _parse_ov_config(args.ov_config),
        )
    results = run_bench(options_from_args(args))
    print(render_markdown(results))
    print(f"Results written to {args.out}/bench.json, bench.md" + (", bench.png" if results["meta"]["chart"] else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``openvino-llm bench ...``: parse ``argv`` and run the benchmark. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run_from_args(args)
    except OpenVINOLLMError as e:
        print(f"openvino-llm bench: error: {e}", file=sys.stderr)
        return 2


__all__ = [
    "PEERS",
    "PROMPTS",
    "BenchOptions",
    "Sample",
    "build_parser",
    "command_line",
    "main",
    "run_bench",
    "summarize",
]

if __name__ == "__main__":
    sys.exit(main())
