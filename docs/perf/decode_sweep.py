"""Decode speed of OpenVINO configurations against llama-cpp-python, interleaved, from each engine's own timers.

    python docs/perf/decode_sweep.py SYSTEMS.json [--rounds 4] [--tokens 128]

SYSTEMS.json maps a label to ``{"path": ..., "ov_config": {...}}`` (an IR folder or .gguf run by
openvino-genai's continuous-batching ``LLMPipeline``) or ``{"llama_cpp": "file.gguf"}``. TPOT comes
from openvino-genai's PerfMetrics and from llama.cpp's token arrival times: no detokenizer hold-back,
no Python wrapper, only the engines. Every system decodes exactly ``--tokens`` tokens (EOS ignored),
greedy, one system after the other, in reversed order every other round. Example:

    {"llama.cpp Q4_1": {"llama_cpp": "SmolLM2-135M-Instruct.Q4_1.gguf"},
     "genai GGUF": {"path": "SmolLM2-135M-Instruct.Q4_1.gguf"},
     "int4 g192 sym, KV f16": {"path": "int4-ir", "ov_config": {"KV_CACHE_PRECISION": "f16"}}}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import openvino_genai

PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a short story about a robot who learns to paint. Make it vivid."},
]

Run = Callable[[], tuple[float, float]]  # -> (TPOT ms, TTFT ms)


def openvino_system(path: str, ov_config: dict[str, str], tokens: int) -> Run:
    pipe = openvino_genai.LLMPipeline(path, "CPU", scheduler_config=openvino_genai.SchedulerConfig(), **ov_config)
    config = openvino_genai.GenerationConfig(max_new_tokens=tokens, ignore_eos=True, do_sample=False)
    history = openvino_genai.ChatHistory(PROMPT)

    def run() -> tuple[float, float]:
        metrics = pipe.generate(history, config).perf_metrics
        return metrics.get_tpot().mean, metrics.get_ttft().mean

    return run


def llama_cpp_system(gguf: str, tokens: int) -> Run:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_threads=2, verbose=False)

    def run() -> tuple[float, float]:
        start, arrivals = time.perf_counter(), []
        for _ in llm.create_chat_completion(PROMPT, max_tokens=tokens, temperature=0, stream=True):
            arrivals.append(time.perf_counter())
        # chunk 0 is the role, chunk 1 the first token; the last may be the finish marker
        return (arrivals[-1] - arrivals[1]) / (len(arrivals) - 2) * 1000, (arrivals[1] - start) * 1000

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("systems", type=Path, help="JSON file: label -> system (see the module docstring)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128)
    args = p.parse_args()
    runs: dict[str, Run] = {}
    for label, spec in json.loads(args.systems.read_text()).items():
        if "llama_cpp" in spec:
            runs[label] = llama_cpp_system(spec["llama_cpp"], args.tokens)
        else:
            runs[label] = openvino_system(spec["path"], spec.get("ov_config", {}), args.tokens)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    for run in runs.values():
        run()  # warm-up
    for r in range(args.rounds):
        for label in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            results[label].append(runs[label]())
    first = next(iter(results))
    base = statistics.median(t for t, _ in results[first])
    print(f"| system | TPOT ms | decode tok/s | TTFT ms | decode vs {first} |")
    print("|---|---:|---:|---:|---:|")
    for label, samples in results.items():
        tpot = statistics.median(t for t, _ in samples)
        ttft = statistics.median(t for _, t in samples)
        print(f"| {label} | {tpot:.2f} | {1000 / tpot:.1f} | {ttft:.1f} | {base / tpot:.2f}x |")


if __name__ == "__main__":
    main()
