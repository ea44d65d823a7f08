"""Constants shared by the core engine tests."""

from __future__ import annotations

#: Batched and single-request kernels give bit-identical greedy output only in full f32 without
#: dynamic activation quantization (bf16 / u8 KV cache / DQ round differently per batch shape).
EXACT = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}

MULTIPLY = {
    "name": "multiply",
    "description": "Multiply two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}
