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
import concurrent.futures
import contextlib
import datetime as _dt
import importlib.metadata
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError, OpenVINOLLMError
from ..types import Message
from .peers import PEERS
from .report import ratios, render_markdown, summarize, targets, write_outputs
from .served import SERVED, served
from .systems import (
    OURS,
    Runner,
    Sample,
    System,
    SystemContext,
    Unavailable,
    chat_openvino,
    core_engine,
    lc_messages,
    speculative_label,
    speculative_system,
    system_label,
    system_name,
)

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
_CODE_TO_EDIT = '''import csv
from dataclasses import dataclass


@dataclass
class Record:
    name: str
    city: str
    amount: float


def parse_line(row: list[str]) -> Record:
    """One CSV row as a Record."""
    name, city, amount = row
    return Record(name.strip(), city.strip(), float(amount))


def read_records(path: str) -> list[Record]:
    """Every record of the CSV file at path, skipping the header."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return [parse_line(row) for row in reader if row]


def total_by_city(records: list[Record]) -> dict[str, float]:
    """The sum of the amounts per city."""
    totals: dict[str, float] = {}
    for record in records:
        totals[record.city] = totals.get(record.city, 0.0) + record.amount
    return totals


def report(path: str) -> str:
    """One line per city, largest total first."""
    totals = total_by_city(read_records(path))
    lines = [f"{city}: {amount:.2f}" for city, amount in sorted(totals.items(), key=lambda kv: -kv[1])]
    return "\\n".join(lines)
'''
#: The prompt set: a short question, a long context with a question about it (the defaults), code
#: generation (``code``: where a draft model helps most) and editing code given in the prompt (``edit``:
#: copy-heavy, where prompt lookup helps).
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
    "code": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": "Write a Python function moving_average(values, window) that returns the moving averages "
            "of a list of numbers, with type hints, a docstring, input validation and three doctest examples.",
        },
    ],
    "edit": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": "Rename the function parse_line to parse_record everywhere in this file and return the "
            "whole file, otherwise unchanged, in one code block.\n\n```python\n" + _CODE_TO_EDIT + "```",
        },
    ],
}
DEFAULT_PROMPTS = ("short", "long")

QUICK_SYSTEMS = ("core-engine", "langchain-stream")
#: Every system by name: our paths, the served paths, then the peers.
SYSTEMS = {**OURS, **SERVED, **PEERS}
#: What ``--systems`` measures by default: our in-process paths and the single-process server (Ray is opt-in:
#: it starts a local cluster per system).
DEFAULT_SYSTEMS = (*OURS, "server-stream")


# ---- the benchmark --------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    """What ``openvino-llm bench`` measures (the command-line options, validated)."""

    model: str | None = None
    weight_formats: tuple[str | None, ...] = (None,)
    device: str = "CPU"
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    peers: tuple[str, ...] = tuple(PEERS)
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
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
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    #: speculative decoding: a draft model (any model reference; a GGUF is re-exported to draft_weight_format)
    draft_model: str | None = None
    draft_weight_format: str | None = None
    #: prompt lookup (``engine-lookup`` systems)
    prompt_lookup: bool = False
    #: the speculative systems' knobs: one system per number of assistant tokens and per confidence threshold
    assistant_tokens: tuple[int, ...] = (5,)
    confidence: tuple[float, ...] = ()

    def speculative(self) -> dict[str, System]:
        """The speculative systems these options ask for, by label (``engine-draft k=5``, ...)."""
        modes = (["draft"] if self.draft_model else []) + (["lookup"] if self.prompt_lookup else [])
        out = {}
        for mode in modes:
            for k in self.assistant_tokens:
                out[speculative_label(mode, k)] = speculative_system(mode, k)
            for c in self.confidence if mode == "draft" else ():
                out[speculative_label(mode, confidence=c)] = speculative_system(mode, confidence=c)
        return out


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
    for dist in (
        "openvino",
        "openvino-genai",
        "langchain-core",
        "llama-index-core",
        *(p for peer in PEERS.values() for p in peer.packages),
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def _probe_load(
    system: str, model_path: Path, model_kind: str, opts: BenchOptions, compiled_dir: Path, streams: int = 0
) -> dict[str, Any]:
    """Load ``system`` in a fresh process, run one request (then ``streams`` more); load time and peak RSS."""
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
        str(opts.max_new_tokens if streams else min(opts.max_new_tokens, 16)),
        *(["--ov-config", _ov_config_text(opts.ov_config)] if opts.ov_config else []),
        *(["--probe-streams", str(streams)] if streams else []),
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


#: Systems that take requests from several threads at once (continuous batching); the others serialize them.
CONCURRENT_SYSTEMS = ("core-engine", "langchain-stream", "llamaindex-stream_chat")


def _run_probe(
    system: str,
    model: str,
    kind: str,
    device: str,
    compiled_dir: str,
    max_new_tokens: int,
    ov_config: dict[str, str],
    streams: int = 0,
) -> int:
    ctx = SystemContext(
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
        run = SYSTEMS[system].build(ctx)
        load_ms = (time.perf_counter() - t0) * 1000
        ctx.count_tokens = lambda text: len(text.split())  # no second model in this process: RSS is the system's own
        sample = run(PROMPTS["short"])
    except Unavailable as e:
        print(json.dumps({"status": e.status, "error": str(e)}))
        return 0
    result: dict[str, Any] = {
        "status": "ok",
        "load_ms": round(load_ms, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "output_tokens": sample.output_tokens,
    }
    if streams:  # then N requests: at once where the system batches them, else one after another
        prompts = [fresh(PROMPTS["short"]) for _ in range(streams)]
        if system in CONCURRENT_SYSTEMS:
            with concurrent.futures.ThreadPoolExecutor(streams) as pool:
                list(pool.map(run, prompts))
        else:
            for messages in prompts:
                run(messages)
        result["peak_rss_streams_mb"] = round(_peak_rss_mb(), 1)
        result["streams_at_once"] = system in CONCURRENT_SYSTEMS
    print(json.dumps(result))
    return 0


def _load_table(opts: BenchOptions, targets: list[tuple[str, Path, str]], work: Path) -> list[dict[str, Any]]:
    """Cold (empty compiled-model cache) then warm loads of each system, each in a fresh process, interleaved.

    The warm probe then runs 8 more requests (not in ``--quick``): peak RSS under 8 streams.
    """
    rows = {label: {"system": label} for label, _, _ in targets}
    for phase in ("cold", "warm"):
        streams = 8 if phase == "warm" and not opts.quick else 0
        for label, path, kind in targets:
            compiled = work / f"compiled-{label.replace(' ', '_')}"
            result = _probe_load(system_name(label), path, kind, opts, compiled, streams)
            row = rows[label]
            if result.get("status") != "ok":
                row.setdefault("status", result.get("status"))
                row.setdefault("error", result.get("error"))
                continue
            row[f"load_{phase}_ms"] = result["load_ms"]
            row["peak_rss_mb"] = max(row.get("peak_rss_mb", 0.0), result["peak_rss_mb"])
            if "peak_rss_streams_mb" in result:
                row["peak_rss_8_mb"] = result["peak_rss_streams_mb"]
                row["streams_at_once"] = result["streams_at_once"]
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


def _astream_fns(ctx: SystemContext, names: Sequence[str]) -> dict[str, Callable[[list[Message]], Any]]:
    """Async streams yielding (text, output_tokens or 0), for the concurrency measurement."""
    fns: dict[str, Callable[[list[Message]], Any]] = {}
    params = ctx.params()
    if "core-engine" in names:
        fns["core-engine.astream"] = _engine_astream(core_engine(ctx), params)
    if any(n.startswith("langchain") for n in names):
        with contextlib.suppress(Unavailable):
            chat = chat_openvino(ctx)

            async def chat_stream(messages: list[Message]) -> Any:
                async for chunk in chat.astream(lc_messages(messages)):
                    yield chunk.content, (chunk.usage_metadata or {}).get("output_tokens", 0)

            fns["ChatOpenVINO.astream"] = chat_stream
    for name in names:
        if name in SERVED:
            with contextlib.suppress(Unavailable):
                fns[f"{name}.astream"] = _engine_astream(served(ctx, name).engine, params)
    return fns


def _engine_astream(engine: Any, params: Any) -> Callable[[list[Message]], Any]:
    """``engine.astream`` (local or remote: one interface) as (text, output_tokens or 0) pairs."""

    async def stream(messages: list[Message]) -> Any:
        async for chunk in engine.astream(messages, params):
            yield chunk.text, chunk.usage.output_tokens if chunk.usage else 0

    return stream


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


def _concurrency(ctx: SystemContext, opts: BenchOptions, names: Sequence[str]) -> list[dict[str, Any]]:
    """N parallel astream requests on one engine against the same N one after another, interleaved."""
    fns = _astream_fns(ctx, names)
    messages = PROMPTS["short"]
    rounds = 1 if opts.quick else max(1, opts.runs)  # one parallel run is noisy: a median over --runs rounds
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
    ctxs: dict[str | None, SystemContext] = {}
    try:
        draft_path = _resolve_draft(opts)  # a GGUF draft without --draft-weight-format is refused before any export
        speculative = opts.speculative()
        resolved = {fmt: _resolve(opts, fmt) for fmt in opts.weight_formats}
        main_fmt = opts.weight_formats[0]
        main_model = resolved[main_fmt]
        n_fmt = len(opts.weight_formats)
        status: dict[str, dict[str, str]] = {}
        runners: dict[str, Runner] = {}
        load_targets: list[tuple[str, Path, str]] = []
        source_gguf = _source_gguf(opts)
        source_checkpoint = _source_checkpoint(opts)
        for fmt in opts.weight_formats:
            ctx = SystemContext(
                resolved[fmt].path,
                resolved[fmt].kind,
                opts.device,
                work / f"compiled-{fmt}",
                opts.max_new_tokens,
                ov_config=dict(opts.ov_config),
                source_gguf=source_gguf,
                source_checkpoint=source_checkpoint,
                draft_path=draft_path,
            )
            ctxs[fmt] = ctx
            names = [n for n in opts.systems if fmt == main_fmt or n in ("genai-raw", "core-engine")]
            if fmt == main_fmt:
                names += [*speculative, *opts.peers]
            for name in names:
                label = name if name in PEERS else system_label(name, fmt, n_fmt)  # a peer runs once, on its own format
                try:
                    runners[label] = (speculative[name] if name in speculative else SYSTEMS[name]).build(ctx)
                    status[label] = {"status": "ok"}
                    if name == "llama-cpp-python" and source_gguf is not None and not opts.quick:
                        load_targets.append((label, source_gguf, "gguf"))
                    elif name == "transformers-torch" and not opts.quick:  # it loads the source, not the IR
                        source = (source_checkpoint, "checkpoint") if source_checkpoint else (source_gguf, "gguf")
                        load_targets.append((label, source[0], source[1]))  # type: ignore[arg-type]
                    elif name in ("genai-raw", "core-engine") or (name in PEERS and not opts.quick):
                        load_targets.append((label, ctx.model_path, ctx.model_kind))
                except Unavailable as e:
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
            for prompt in opts.prompts:
                messages = PROMPTS[prompt]
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
        requests = (opts.warmup + opts.runs) * len(opts.prompts)
        for label, errors in failures.items():
            ok = any(key[0] == label for key in samples)
            status[label] = {
                "status": "ok" if ok else "failed",
                "error": f"{len(errors)} of {requests} requests failed; first: {errors[0]}",
            }
        single = [
            {"system": label, "prompt": prompt, **summarize(samples[(label, prompt)])}
            for label in runners
            for prompt in opts.prompts
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
            "systems": [
                {"system": label, "description": _describe(label, speculative), **st} for label, st in status.items()
            ],
            "single_stream": single,
            "concurrency": concurrency,
            "load": load,
        }
        results["ratios"] = ratios(results)
        results["targets"] = targets(results)
        write_outputs(results, opts.out)
        return results
    finally:
        for ctx in ctxs.values():
            ctx.cleanup.close()  # stops the served systems' servers
        shutil.rmtree(work, ignore_errors=True)


def _source_gguf(opts: BenchOptions) -> Path | None:
    """The .gguf file MODEL names (a path, or an embedded model such as the default), whatever formats are measured."""
    from ..models.embedded import DEFAULT_MODELS

    name = DEFAULT_MODELS["text-generation"] if opts.model is None or opts.model.lower() == "default" else opts.model
    return _gguf_file(name, opts.cache_dir)


def _gguf_file(name: str, cache_dir: Path | None) -> Path | None:
    """The .gguf file ``name`` is (a path, or an embedded model's assembled file), else None."""
    from ..models import embedded_model_path, is_gguf_file
    from ..models.embedded import embedded_model

    if embedded_model(name) is not None:
        path = embedded_model_path(name, cache_dir)[0]
        return path if is_gguf_file(path) else None
    return Path(name).expanduser().resolve() if is_gguf_file(name) else None


def _resolve_draft(opts: BenchOptions) -> Path | None:
    """The draft model's IR folder (exported once into the cache when it is a GGUF or a checkpoint)."""
    if opts.draft_model is None:
        return None
    from ..models import resolve_model

    fmt = opts.draft_weight_format
    if fmt is None and _gguf_file(opts.draft_model, opts.cache_dir) is not None:
        raise InvalidParameterError(
            f"The draft model {opts.draft_model} is a GGUF file, which openvino-genai cannot load as a draft: add "
            "--draft-weight-format int8 (or int4, fp16) to re-export it once into the cache."
        )
    return resolve_model(opts.draft_model, weight_format=fmt, cache_dir=opts.cache_dir).path


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
    from ..models import CompressionOptions, resolve_model

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
    if set(opts.systems) != set(DEFAULT_SYSTEMS):
        parts += ["--systems", ",".join(opts.systems)]
    if opts.prompts != DEFAULT_PROMPTS:
        parts += ["--prompts", ",".join(opts.prompts)]
    if opts.draft_model is not None:
        parts += ["--draft-model", str(opts.draft_model)]
    if opts.draft_weight_format is not None:
        parts += ["--draft-weight-format", opts.draft_weight_format]
    if opts.prompt_lookup:
        parts.append("--prompt-lookup")
    if opts.draft_model is not None or opts.prompt_lookup:
        parts += ["--assistant-tokens", ",".join(map(str, opts.assistant_tokens))]
        if opts.confidence:
            parts += ["--confidence", ",".join(f"{c:g}" for c in opts.confidence)]
    parts += ["--max-new-tokens", str(opts.max_new_tokens), "--runs", str(opts.runs)]
    if opts.warmup != 1:
        parts += ["--warmup", str(opts.warmup)]
    if opts.cache_dir is not None:
        parts += ["--cache-dir", str(opts.cache_dir)]
    if not opts.load_probes:
        parts.append("--no-load-probes")
    return " ".join([*parts, "--out", str(opts.out)])


def _describe(label: str, speculative: dict[str, System]) -> str:
    name = system_name(label)
    systems = {**SYSTEMS, **speculative}
    return systems[name].description if name in systems else name


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
        help=f"comma list of our paths {[*OURS, *SERVED]} or 'all' (default {','.join(DEFAULT_SYSTEMS)}; "
        f"quick: {','.join(QUICK_SYSTEMS)})",
    )
    p.add_argument(
        "--prompts",
        default=None,
        help=f"comma list of {list(PROMPTS)} (default {','.join(DEFAULT_PROMPTS)}): code generation suits a draft "
        "model, edit (code given in the prompt) prompt lookup",
    )
    p.add_argument(
        "--draft-model",
        default=None,
        help="speculative decoding: a draft model of the same tokenizer (adds engine-draft systems)",
    )
    p.add_argument(
        "--draft-weight-format", default=None, help="export the draft model to this format (needed for a GGUF draft)"
    )
    p.add_argument("--prompt-lookup", action="store_true", help="adds engine-lookup systems (prompt lookup decoding)")
    p.add_argument(
        "--assistant-tokens", default="5", help="speculative systems: comma list of num_assistant_tokens (default 5)"
    )
    p.add_argument(
        "--confidence", default=None, help="draft systems: comma list of assistant_confidence_threshold values too"
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default ./bench-results)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 run, 16 tokens, core engine + ChatOpenVINO")
    p.add_argument("--max-new-tokens", type=int, default=None, help="output tokens per request (default 128; quick 16)")
    p.add_argument("--runs", type=int, default=None, help="measured runs after warm-up (default 5; quick 1)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs, not measured (default 1)")
    if add_cache_dir:
        p.add_argument("--cache-dir", type=Path, default=None, help="openvino-llm cache folder (exports)")
    p.add_argument("--no-load-probes", action="store_true", help="skip the load-time/RSS subprocesses")
    for hidden in ("--probe", "--probe-kind", "--probe-compiled-dir", "--probe-streams"):
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
    opts = BenchOptions(
        model=args.model,
        weight_formats=formats,
        device=args.device,
        concurrency=_int_list(args.concurrency or ("1,2" if quick else "1,2,4,8"), "--concurrency"),
        peers=_names(args.peers or ("none" if quick else "all"), tuple(PEERS), "peer(s)"),
        systems=_names(
            args.systems or ",".join(QUICK_SYSTEMS if quick else DEFAULT_SYSTEMS), (*OURS, *SERVED), "system(s)"
        ),
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
        prompts=_names(args.prompts or ",".join(DEFAULT_PROMPTS), tuple(PROMPTS), "prompt(s)") or DEFAULT_PROMPTS,
        draft_model=args.draft_model,
        draft_weight_format=args.draft_weight_format,
        prompt_lookup=bool(args.prompt_lookup),
        assistant_tokens=_int_list(args.assistant_tokens, "--assistant-tokens") or (5,),
        confidence=_confidences(args.confidence),
    )
    if opts.draft_model is None and (opts.draft_weight_format or opts.confidence):
        raise InvalidParameterError("--draft-weight-format and --confidence need a --draft-model.")
    return opts


def _confidences(text: str | None) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in (text or "").split(",") if x.strip())
    except ValueError:
        raise InvalidParameterError(
            f"--confidence takes numbers between 0 and 1 such as 0.3,0.5, got {text!r}."
        ) from None
    if any(not 0 < c < 1 for c in values):
        raise InvalidParameterError(f"--confidence values must lie between 0 and 1 (exclusive), got {text!r}.")
    return values


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
            int(args.probe_streams or 0),
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
    "PROMPTS",
    "SYSTEMS",
    "BenchOptions",
    "build_parser",
    "command_line",
    "fresh",
    "main",
    "options_from_args",
    "run_bench",
    "run_from_args",
]

if __name__ == "__main__":
    sys.exit(main())
