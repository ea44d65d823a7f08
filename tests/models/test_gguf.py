"""GGUF files of every type: loaded directly where openvino-genai reads them exactly, else re-exported
(exact dequantization, each weight to the nearest OpenVINO format, the GGUF's own tokenizer), no torch.

Types tested on real files: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (the tiny Llama's weights,
quantized by gguf-py), Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (random valid blocks: gguf-py cannot quantize
K-quants), SmolLM2-135M Q4_1 and the Qwen2.5-Coder-0.5B Q4_K_M file (Q5_0, Q8_0, Q6_K, Q4_K mixed).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai
import pytest
from tests._shared import EXACT
from tests.models._gguf_files import dequantized_copy, write_random_gguf, write_tiny_gguf

from openvino_llm import GenerationParams, load_engine
from openvino_llm.errors import InvalidParameterError
from openvino_llm.models import CompressionOptions, read_model_config, resolve_model
from openvino_llm.models.gguf import DIRECT_TYPES, NEAREST_FORMAT, gguf_sampling_defaults, read_gguf

pytestmark = pytest.mark.slow

TINY_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
K_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

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
def gguf_files(tiny_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small GGUF per type: the tiny Llama's real weights, or a random wider Llama for K-quants."""
    folder = tmp_path_factory.mktemp("gguf")
    files = {q: write_tiny_gguf(tiny_hf_dir, folder / f"tiny.{q}.gguf", q) for q in TINY_TYPES}
    for q in K_TYPES:
        roles = dict.fromkeys(("attn", "ffn", "ffn_down", "embd", "output"), q)
        files[q] = write_random_gguf(folder / f"random.{q}.gguf", tiny_hf_dir, roles)
    return files


def _ids(text: str, tokenizer: Path | str) -> np.ndarray:
    ids = openvino_genai.Tokenizer(str(tokenizer)).encode(text, add_special_tokens=False).input_ids.data
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


def _direct_ir(gguf: Path, folder: Path) -> Path:
    """The model openvino-genai builds when it loads ``gguf`` directly, saved as IR."""
    folder.mkdir()
    (folder / gguf.name).symlink_to(gguf)
    openvino_genai.LLMPipeline(str(folder / gguf.name), "CPU", enable_save_ov_model=True)
    return folder / "openvino_model.xml"


def _weight_types(xml: Path) -> set[str]:
    """Element types of the model's large constants (the weights)."""
    model = ov.Core().read_model(str(xml))
    return {
        op.get_output_element_type(0).get_type_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant"
        and op.get_output_size()
        and op.get_output_partial_shape(0).is_static
        and np.prod(op.get_output_shape(0)) >= 4096
    }


def _int8_weight_ranks(xml: Path) -> set[int]:
    """Ranks of the model's large 8-bit constants: 2 per channel, 3 in groups (blocks of 32)."""
    model = ov.Core().read_model(str(xml))
    return {
        len(op.get_output_shape(0))
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant"
        and op.get_output_element_type(0).get_type_name() in ("u8", "i8")
        and np.prod(op.get_output_shape(0)) >= 4096
    }


def _perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    targets = ids[0, 1:]
    scores = logits[:-1].astype(np.float64)
    top = scores.max(-1, keepdims=True)
    log_norm = np.log(np.exp(scores - top).sum(-1)) + top[:, 0]
    return float(np.exp((log_norm - scores[np.arange(len(targets)), targets]).mean()))


# --- which files load directly ------------------------------------------------------------------


@pytest.mark.parametrize("qtype", DIRECT_TYPES)
def test_types_openvino_genai_reads_exactly_load_directly(
    qtype: str, gguf_files: dict[str, Path], tmp_path: Path
) -> None:
    resolved = resolve_model(gguf_files[qtype], cache_dir=tmp_path)
    assert (resolved.kind, resolved.path) == ("gguf", gguf_files[qtype])
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("qtype", [q for q in (*TINY_TYPES, *K_TYPES) if q not in DIRECT_TYPES])
def test_every_other_type_is_reexported_to_its_nearest_format(
    qtype: str, gguf_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="openvino_llm"):
        resolved = resolve_model(gguf_files[qtype], cache_dir=tmp_path)
    assert resolved.kind == "ir" and resolved.path.parent == tmp_path / "exports"
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]  # one line: what and why
    fmt = NEAREST_FORMAT[qtype]
    assert qtype in line and f"{fmt} ({qtype})" in line
    # the weights are in that format: int8 as openvino-genai's exact reading of Q8_0 blocks, int4 by NNCF
    expected = {"int8": {"i8", "u8"}, "int4": {"u4", "i4"}, "fp16": {"f16"}}[fmt]
    assert expected & _weight_types(resolved.path / "openvino_model.xml")
    pipe = openvino_genai.LLMPipeline(str(resolved.path), "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = config.min_new_tokens = 4
    assert pipe.generate(["Hello"], config).texts[0]
    # the second load is the cache entry, with no log line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="openvino_llm"):
        assert resolve_model(gguf_files[qtype], cache_dir=tmp_path).path == resolved.path
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("qtype", ["BF16", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
def test_reexport_holds_the_exactly_dequantized_weights(
    qtype: str, gguf_files: dict[str, Path], tmp_path: Path
) -> None:
    """fp16 re-export == openvino-genai reading the weights dequantized by gguf-py (as F16, which it reads exactly)."""
    resolved = resolve_model(gguf_files[qtype], weight_format="fp16", cache_dir=tmp_path / "cache")
    reference = _direct_ir(dequantized_copy(gguf_files[qtype], tmp_path / "ref.gguf"), tmp_path / "direct")
    ids = np.arange(3, 60, dtype=np.int64)[None]
    ours, theirs = _logits(resolved.path / "openvino_model.xml", ids), _logits(reference, ids)
    assert np.abs(ours - theirs).max() <= 1e-3 * np.abs(theirs).max() + 1e-4
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


@pytest.mark.parametrize(
    ("qtype", "share_of_int4_error"),
    # Q5_0: the tiny model's real weights. Q4_K: random blocks (gguf-py cannot quantize K-quants) whose per-32 scales
    # vary wildly along a row, the worst case for one int8 scale per channel: only "closer than int4" holds there.
    [("Q5_0", 0.5), ("Q4_K", 1.0)],
)
def test_auto_int8_keeps_the_4_to_8_bit_weights_almost_exactly(
    qtype: str, share_of_int4_error: float, gguf_files: dict[str, Path], tmp_path: Path
) -> None:
    """Q5_0 and Q4_K -> int8 per channel: next to the exactly dequantized weights, far closer than the int4 step.

    Q4_K goes to int8, not int4: OpenVINO's int4 groups cannot hold its 6-bit per-32 scales and minimums (on the
    real Qwen2.5-Coder files int4 cost 1-6 % perplexity against llama.cpp, int8 none: docs/PERFORMANCE.md). A file
    of only such types is compressed per channel (faster to decode than 8-bit blocks of 32, as exact there).
    """
    auto = resolve_model(gguf_files[qtype], cache_dir=tmp_path / "cache")
    xml = auto.path / "openvino_model.xml"
    assert not _weight_types(xml) & {"u4", "i4"}
    assert _int8_weight_ranks(xml) == {2}
    reference = _direct_ir(dequantized_copy(gguf_files[qtype], tmp_path / "ref.gguf"), tmp_path / "direct")
    ids = np.arange(3, 60, dtype=np.int64)[None]
    ours, theirs = _logits(auto.path / "openvino_model.xml", ids), _logits(reference, ids)
    int4 = resolve_model(gguf_files[qtype], weight_format="int4", cache_dir=tmp_path / "cache")
    coarse = _logits(int4.path / "openvino_model.xml", ids)
    error, int4_error = np.abs(ours - theirs).mean(), np.abs(coarse - theirs).mean()
    assert np.abs(ours - theirs).max() <= 0.02 * np.abs(theirs).max()
    assert error < share_of_int4_error * int4_error  # closer than the int4 step
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() >= (coarse.argmax(-1) == theirs.argmax(-1)).mean()


def test_a_type_nothing_reads_is_refused_before_any_work(tiny_hf_dir: Path, tmp_path: Path) -> None:
    roles = dict.fromkeys(("attn", "ffn", "ffn_down", "embd", "output"), "Q8_0") | {"ffn": "IQ4_NL"}
    path = write_random_gguf(tmp_path / "iq.gguf", tiny_hf_dir, roles)
    for weight_format in (None, "int8"):
        with pytest.raises(InvalidParameterError, match=r"IQ4_NL tensors.*F16, Q8_0, Q4_0 \(loaded directly\).*Q4_K"):
            resolve_model(path, weight_format=weight_format, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "exports").exists()


# --- the GGUF's own tokenizer -------------------------------------------------------------------

TEXTS = (
    PASSAGE,
    "def f(x):\n    return x**2  # 12345, 3.14 ünïcödé 日本語 \t tabs   and  spaces\n\n\n",
    '<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{"a": 6}\n</tool_call>',
    "I'LL say it's DON'T we've 2024-12-02",
)


def test_tokenizer_from_the_metadata_equals_openvino_genais_reading(
    smollm2_gguf: Path, gguf_files: dict[str, Path], tmp_path: Path
) -> None:
    for source in (smollm2_gguf, gguf_files["Q4_1"]):
        resolved = resolve_model(source, weight_format="fp16", cache_dir=tmp_path / "cache")
        ours, theirs = openvino_genai.Tokenizer(str(resolved.path)), openvino_genai.Tokenizer(str(source))
        for text in TEXTS:
            ids = ours.encode(text, add_special_tokens=False).input_ids.data[0].tolist()
            assert ids == theirs.encode(text, add_special_tokens=False).input_ids.data[0].tolist()
            assert ours.decode(ids) == theirs.decode(ids)
        assert (ours.get_eos_token_id(), ours.get_bos_token_id()) == (
            theirs.get_eos_token_id(),
            theirs.get_bos_token_id(),
        )
        assert ours.chat_template == theirs.chat_template
        assert read_model_config(resolved).generation_defaults["eos_token_id"] == [theirs.get_eos_token_id()]


def test_smollm2_q4_1_is_reexported_and_more_exact_than_the_direct_reading(smollm2_gguf: Path, tmp_path: Path) -> None:
    auto = resolve_model(smollm2_gguf)  # the session cache: the engine tests share this export
    assert auto.kind == "ir" and auto.name == smollm2_gguf.stem
    ids = _ids(PASSAGE, auto.path)
    assert np.array_equal(ids, _ids(PASSAGE, smollm2_gguf))  # the re-export tokenizes exactly like the GGUF
    ppl = {
        "auto": _perplexity(_logits(auto.path / "openvino_model.xml", ids), ids),
        "direct": _perplexity(_logits(_direct_ir(smollm2_gguf, tmp_path / "direct"), ids), ids),
    }
    # Q4_1 -> Q8_0 blocks keeps the weights; the direct reading rounds every block minimum (~30 % worse, measured)
    assert ppl["auto"] < ppl["direct"] * 0.9, ppl
    config, gguf_config = read_model_config(auto), read_model_config(resolve_model(smollm2_gguf, weight_format="fp16"))
    assert (
        config.chat_template == read_gguf(smollm2_gguf).metadata["tokenizer.chat_template"] == gguf_config.chat_template
    )
    engine = load_engine(smollm2_gguf, device="CPU", ov_config=EXACT)  # a 135M model's answer: exact precision only
    assert engine.path == auto.path
    out = engine.generate("What is the capital of France?", GenerationParams(temperature=0, max_new_tokens=40))
    assert "Paris" in out.text
    assert out.finish_reason == "stop"  # the chat template and EOS from the GGUF end the answer


def test_bad_reexport_options_fail_before_any_work(smollm2_gguf: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InvalidParameterError, match=r"group_size 128 does not divide .*576, 1536.*use 32, 64"):
        resolve_model(smollm2_gguf, compression=CompressionOptions("int4", group_size=128), cache_dir=cache)
    with pytest.raises(InvalidParameterError, match="only be used for text-generation"):
        resolve_model(smollm2_gguf, weight_format="int8", task="feature-extraction", cache_dir=cache)
    assert not cache.exists()
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "openvino_llm.cli", "export", str(smollm2_gguf), str(out)]
    proc = subprocess.run([*cli, "--weight-format", "int4", "--group-size", "100"], capture_output=True, text=True)
    assert proc.returncode != 0 and "group_size 100 does not divide" in proc.stderr
    assert not out.exists()


def test_reexport_needs_no_torch(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "optimum", "accelerate"):
            sys.modules[name] = None  # make the import fail as if not installed
        from openvino_llm.models import resolve_model
        print(resolve_model({str(gguf_files["Q4_K"])!r}, cache_dir={str(tmp_path)!r}).kind)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "ir"  # after NNCF's progress bar


def test_a_mixed_file_gets_each_tensor_its_nearest_format(tiny_hf_dir: Path, tmp_path: Path) -> None:
    roles = {"attn": "Q5_K", "ffn": "Q4_K", "ffn_down": "Q6_K", "embd": "Q8_0", "output": "Q4_0"}
    resolved = resolve_model(write_random_gguf(tmp_path / "mixed.gguf", tiny_hf_dir, roles), cache_dir=tmp_path)
    types = _weight_types(resolved.path / "openvino_model.xml")
    assert types & {"u8", "i8"} and types & {"u4", "i4"}  # int8 blocks and int4 side by side
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = config.min_new_tokens = 4
    assert openvino_genai.LLMPipeline(str(resolved.path), "CPU").generate(["Hello"], config).texts[0]


def test_sampling_defaults_from_the_header() -> None:
    meta = {
        "general.sampling.temp": 0.7,
        "general.sampling.top_p": 0.8,
        "general.sampling.top_k": 20,
        "general.sampling.min_p": 0.05,  # not a generation-config key of ours
        "general.name": "x",
    }
    assert gguf_sampling_defaults(meta) == {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
    assert gguf_sampling_defaults({"general.sampling.temp": "hot"}) == {}
