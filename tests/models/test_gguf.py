"""Re-exporting a GGUF file: exact dequantization, OpenVINO compression, the GGUF's own tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai
import pytest

from openvino_llm import GenerationParams, load_engine
from openvino_llm.errors import InvalidParameterError
from openvino_llm.models import read_model_config, resolve_model

# A fixed English passage: the models are compared on how well they predict it, token by token.
PASSAGE = (
    "The river runs through the middle of the old town. In the morning, fishermen push their boats into "
    "the water and the market opens on the square beside the bridge. Children walk to school along the "
    "bank, and by noon the cafes are full of people who have come to eat fresh fish and bread. In the "
    "evening the lights of the houses shine on the water, and the town grows quiet again until the next "
    "day begins. Visitors often say that the town feels like a place where time moves more slowly, and "
    "many of them come back every summer to walk along the river and watch the boats."
)


@pytest.fixture(scope="module")
def reexports(smollm2_gguf: Path, cache_dir: Path) -> dict[str, Path]:
    """SmolLM2's GGUF re-exported to fp16 and int8 IR folders (cached between local runs)."""
    return {fmt: resolve_model(smollm2_gguf, weight_format=fmt).path for fmt in ("fp16", "int8")}


def _token_ids(tokenizer_dir: Path | str) -> np.ndarray:
    ids = openvino_genai.Tokenizer(str(tokenizer_dir)).encode(PASSAGE, add_special_tokens=False).input_ids.data
    return np.asarray(ids, dtype=np.int64)


def _logits(xml: Path, ids: np.ndarray) -> np.ndarray:
    """Next-token logits at every position of ``ids`` (one forward pass, f32 inference)."""
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    n = ids.shape[1]
    request.infer(
        {
            "input_ids": ids,
            "attention_mask": np.ones((1, n), np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None],
            "beam_idx": np.zeros(1, np.int32),
        }
    )
    return request.get_output_tensor(0).data[0].copy()


def _perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    targets = ids[0, 1:]
    scores = logits[:-1].astype(np.float64)
    top = scores.max(-1, keepdims=True)
    log_norm = np.log(np.exp(scores - top).sum(-1)) + top[:, 0]
    return float(np.exp((log_norm - scores[np.arange(len(targets)), targets]).mean()))


def _direct_gguf_ir(gguf: Path, folder: Path) -> Path:
    """The model openvino-genai builds when it loads the .gguf directly, saved as IR."""
    folder.mkdir()
    (folder / gguf.name).symlink_to(gguf)
    openvino_genai.LLMPipeline(str(folder / gguf.name), "CPU", enable_save_ov_model=True)
    return folder / "openvino_model.xml"


def test_reexport_is_at_least_as_exact_as_reading_the_gguf_directly(
    reexports: dict[str, Path], smollm2_gguf: Path, tmp_path: Path
) -> None:
    ids = _token_ids(reexports["fp16"])
    assert np.array_equal(ids, _token_ids(smollm2_gguf))  # the re-export tokenizes exactly like the GGUF
    fp16 = _logits(reexports["fp16"] / "openvino_model.xml", ids)
    int8 = _logits(reexports["int8"] / "openvino_model.xml", ids)
    direct = _logits(_direct_gguf_ir(smollm2_gguf, tmp_path / "direct"), ids)
    ppl = {"fp16": _perplexity(fp16, ids), "int8": _perplexity(int8, ids), "direct": _perplexity(direct, ids)}
    # fp16 holds the GGUF's dequantized weights: it predicts the passage at least as well as the direct reading
    # (which rounds Q4_1's block minimum to an integer zero point: about 30 % higher perplexity when measured)
    assert ppl["fp16"] <= ppl["direct"] * 1.02, ppl
    # int8 (per channel) stays close to it
    assert abs(ppl["int8"] / ppl["fp16"] - 1) < 0.05, ppl
    assert (int8.argmax(-1) == fp16.argmax(-1)).mean() > 0.85


def test_reexport_keeps_the_gguf_tokenizer_and_chat_template(reexports: dict[str, Path], smollm2_gguf: Path) -> None:
    folder = reexports["int8"]
    assert not (folder / "tokenizer_config.json").exists()  # optimum's made-up tokenizer is not left behind
    assert not (folder / ".dequantized").exists()
    config = read_model_config(resolve_model(folder))
    gguf_config = read_model_config(resolve_model(smollm2_gguf))
    assert config.chat_template == gguf_config.chat_template
    assert config.generation_defaults["eos_token_id"] == gguf_config.generation_defaults["eos_token_id"]
    engine = load_engine(smollm2_gguf, weight_format="int8", device="CPU")
    assert engine.path == folder
    out = engine.generate("What is the capital of France?", GenerationParams(temperature=0, max_new_tokens=40))
    assert "Paris" in out.text
    assert out.finish_reason == "stop"  # the chat template and EOS from the GGUF end the answer


def test_bad_reexport_options_fail_before_any_work(smollm2_gguf: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InvalidParameterError, match=r"group_size 128 does not divide .*576, 1536.*use 32, 64"):
        resolve_model(smollm2_gguf, weight_format="int4", cache_dir=cache)
    with pytest.raises(InvalidParameterError, match="only be used for text-generation"):
        resolve_model(smollm2_gguf, weight_format="int8", task="feature-extraction", cache_dir=cache)
    assert not cache.exists()
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "openvino_llm.cli", "export", str(smollm2_gguf), str(out)]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--weight-format" in proc.stderr
    proc = subprocess.run([*cli, "--weight-format", "int4", "--group-size", "100"], capture_output=True, text=True)
    assert proc.returncode != 0 and "group_size 100 does not divide" in proc.stderr
    assert not out.exists()
