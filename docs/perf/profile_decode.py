"""Where a decode step's time goes: OpenVINO's per-node profile of a stateful LLM IR on CPU.

    python docs/perf/profile_decode.py MODEL_DIR_OR_XML [KEY=VALUE ...]

Compiles the model with ``PERF_COUNT`` (plus any OpenVINO properties given), runs a 40-token prefill
and 128 single-token decode steps, and prints the time per step by node type and the most expensive
fully connected layers. To profile what openvino-genai builds from a GGUF, save it first:
``openvino_genai.LLMPipeline("model.gguf", "CPU", enable_save_ov_model=True)`` writes
``openvino_model.xml`` next to the file.
"""

from __future__ import annotations

import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov


def main() -> None:
    model = Path(sys.argv[1])
    xml = model / "openvino_model.xml" if model.is_dir() else model
    config = {"PERF_COUNT": "YES", **dict(arg.split("=", 1) for arg in sys.argv[2:])}
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    keys = ("INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION", "DYNAMIC_QUANTIZATION_GROUP_SIZE")
    print({k: str(compiled.get_property(k)) for k in keys})
    request = compiled.create_infer_request()

    def step(ids: np.ndarray, past: int) -> int:
        n = ids.shape[1]
        request.infer(
            {
                "input_ids": ids,
                "attention_mask": np.ones((1, past + n), np.int64),
                "position_ids": np.arange(past, past + n, dtype=np.int64)[None],
                "beam_idx": np.zeros(1, np.int32),
            }
        )
        return int(request.get_output_tensor(0).data[0, -1].argmax())

    prompt = np.random.default_rng(0).integers(100, 20000, (1, 40)).astype(np.int64)
    token, past = step(prompt, 0), prompt.shape[1]
    by_type: collections.Counter[tuple[str, str]] = collections.Counter()
    by_fc: collections.Counter[str] = collections.Counter()
    walls, counted = [], 0
    for i in range(128):
        start = time.perf_counter()
        token = step(np.array([[token]], np.int64), past)
        walls.append((time.perf_counter() - start) * 1000)
        past += 1
        if i < 8:  # warm-up steps
            continue
        counted += 1
        for node in request.profiling_info:
            ms = node.real_time.total_seconds() * 1000
            by_type[(node.node_type, node.exec_type)] += ms
            if node.node_type.startswith("FullyConnected"):
                by_fc[node.node_name] += ms
    in_nodes = sum(by_type.values()) / counted
    print(f"decode step: median {statistics.median(walls):.2f} ms wall, {in_nodes:.2f} ms in nodes")
    print("| node type | kernel | ms per step |\n|---|---|---:|")
    for (kind, kernel), ms in by_type.most_common(8):
        print(f"| {kind} | {kernel} | {ms / counted:.3f} |")
    n_fc = sum(1 for node in request.profiling_info if node.node_type.startswith("FullyConnected"))
    print(f"\n{n_fc} fully connected layers per step; the most expensive:")
    for name, ms in by_fc.most_common(3):
        print(f"- {name}: {ms / counted:.3f} ms")


if __name__ == "__main__":
    main()
