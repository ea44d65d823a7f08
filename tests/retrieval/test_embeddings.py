"""EmbeddingModel on all-MiniLM-L6-v2: real OpenVINO inference compared with sentence-transformers."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from openvino_llm.errors import DeviceNotAvailableError, InvalidParameterError, ModelNotFoundError
from openvino_llm.retrieval.embeddings import EmbeddingModel

TEXTS = [
    "Paris is the capital and largest city of France.",
    "Bananas are an excellent source of potassium.",
    "OpenVINO is a toolkit for optimizing and deploying AI inference on Intel hardware.",
    "The mitochondria is the powerhouse of the cell.",
    "",
    # Longer than MiniLM's max_seq_length (256 tokens): truncated the way sentence-transformers does.
    " ".join(f"sentence {i} talks about rivers, mountains and the weather in spring." for i in range(40)),
]


def _unit(v: object) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _cosines(a: object, b: object) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    return (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


@pytest.fixture(scope="session")
def model(minilm_dir: Path, cache_dir: Path) -> EmbeddingModel:
    return EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def sentence_transformer(minilm_dir: Path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")


def test_settings_come_from_the_sentence_transformers_config(model: EmbeddingModel) -> None:
    assert model.pooling == "mean"  # 1_Pooling/config.json: pooling_mode_mean_tokens
    assert model.max_length == 256  # sentence_bert_config.json: max_seq_length
    assert model.normalize is True


def test_matches_sentence_transformers(model: EmbeddingModel, sentence_transformer) -> None:
    ours = model.embed_documents(TEXTS)
    reference = sentence_transformer.encode(TEXTS, normalize_embeddings=True)
    assert len(ours) == len(TEXTS)
    assert all(isinstance(v, list) and all(isinstance(x, float) for x in v) for v in ours)
    cosines = _cosines(ours, reference)
    assert (cosines > 0.99).all(), cosines
    assert model.dimension == sentence_transformer.get_embedding_dimension() == 384


def test_retrieves_the_relevant_text(model: EmbeddingModel) -> None:
    docs = np.asarray(model.embed_documents(TEXTS[:4]))
    for query, expected in [
        ("What is the capital of France?", 0),
        ("Which fruit contains potassium?", 1),
        ("How do I run neural networks fast on Intel CPUs?", 2),
        ("What produces energy in a cell?", 3),
    ]:
        assert int(np.argmax(docs @ np.asarray(model.embed_query(query)))) == expected, query


def test_normalization_honoured(model: EmbeddingModel, minilm_dir: Path, cache_dir: Path) -> None:
    normalized = np.asarray(model.embed_documents(TEXTS[:4]))
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-5)

    raw_model = EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir, normalize=False)
    raw = np.asarray(raw_model.embed_documents(TEXTS[:4]))
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-2), norms  # mean-pooled MiniLM vectors are not unit length
    np.testing.assert_allclose(raw / norms[:, None], normalized, atol=2e-3)  # same direction


def test_cls_pooling_is_the_first_token(minilm_dir: Path, cache_dir: Path, sentence_transformer) -> None:
    cls_model = EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir, pooling="cls")
    texts = TEXTS[:3]
    ours = cls_model.embed_documents(texts)
    tokens = sentence_transformer.encode(texts, output_value="token_embeddings")
    reference = [_unit(t[0]) for t in tokens]
    assert (_cosines(ours, reference) > 0.99).all()
    mean = sentence_transformer.encode(texts, normalize_embeddings=True)
    assert (_cosines(ours, mean) < 0.98).all()  # and it is really a different pooling


def test_query_and_document_instructions(model: EmbeddingModel, minilm_dir: Path, cache_dir: Path) -> None:
    text = "Where is the Eiffel tower?"
    # Without instructions a query is embedded like a document.
    np.testing.assert_allclose(model.embed_query(text), model.embed_documents([text])[0], atol=1e-3)

    instructed = EmbeddingModel(
        minilm_dir, device="CPU", cache_dir=cache_dir, query_instruction="query: ", embed_instruction="passage: "
    )
    query, doc = instructed.embed_query(text), instructed.embed_documents([text])[0]
    assert _cosines(query, doc) < 0.999  # the two sides now differ
    expected_query, expected_doc = model.embed_documents(["query: " + text, "passage: " + text])
    assert _cosines(query, expected_query) > 0.999
    assert _cosines(doc, expected_doc) > 0.999


def test_batching_keeps_order_and_values(model: EmbeddingModel, minilm_dir: Path, cache_dir: Path) -> None:
    texts = [f"Document number {i} is about {topic}." for i, topic in enumerate(["cats", "cars", "rain"] * 5)]
    small = EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir, batch_size=4)
    assert small.batch_size == 4 and len(texts) > small.batch_size
    batched = small.embed_documents(texts)
    assert len(batched) == len(texts)
    one_by_one = [model.embed_documents([t])[0] for t in texts]
    assert (_cosines(batched, one_by_one) > 0.999).all()


def test_pipelines_are_shared(model: EmbeddingModel, minilm_dir: Path, cache_dir: Path) -> None:
    same = EmbeddingModel(str(minilm_dir), device="cpu", cache_dir=cache_dir)
    assert same._shared is model._shared
    other = EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir, normalize=False)
    assert other._shared is not model._shared


def test_default_model_is_minilm(model: EmbeddingModel, cache_dir: Path) -> None:
    default = EmbeddingModel(device="CPU", cache_dir=cache_dir)
    assert default.model_name == "all-MiniLM-L6-v2"
    assert default.pooling == "mean" and default.max_length == 256
    assert default._shared is model._shared  # same export, same pipeline


def test_concurrent_calls_from_threads(model: EmbeddingModel) -> None:
    expected = [model.embed_documents([t])[0] for t in TEXTS[:4]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: model.embed_documents([t])[0], TEXTS[:4] * 3))
    assert (_cosines(results, expected * 3) > 0.9999).all()


async def test_async_matches_sync_and_does_not_block_the_loop(model: EmbeddingModel) -> None:
    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS[:4] * 16)]
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.001)

    async def embed() -> list[list[float]]:
        nonlocal done
        try:
            return await model.aembed_documents(texts)
        finally:
            done = True

    vectors, _ = await asyncio.gather(embed(), ticker())
    assert ticks > 2  # the loop kept running while the model worked
    assert (_cosines(vectors, model.embed_documents(texts)) > 0.9999).all()
    queries = await asyncio.gather(*(model.aembed_query(t) for t in TEXTS[:3]))
    for query, text in zip(queries, TEXTS[:3], strict=True):
        assert _cosines(query, model.embed_query(text)) > 0.9999


async def test_async_empty_and_bad_input(model: EmbeddingModel) -> None:
    assert await model.aembed_documents([]) == []
    with pytest.raises(InvalidParameterError, match="list of strings"):
        await model.aembed_documents("one text")  # type: ignore[arg-type]


def test_empty_list(model: EmbeddingModel) -> None:
    assert model.embed_documents([]) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.embed_documents("just a string"), r"list of strings.*embed_documents\(\[\"...\"\]\)"),
        (lambda m: m.embed_documents(["ok", 3]), r"texts\[1\] must be a string, got int"),
        (lambda m: m.embed_documents([None]), r"texts\[0\] must be a string"),
        (lambda m: m.embed_query(["a list"]), r"text must be a string, got list"),
        (lambda m: m.embed_query(None), r"text must be a string"),
    ],
)
def test_bad_input(model: EmbeddingModel, call, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        call(model)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pooling": "max"}, InvalidParameterError, "pooling must be one of cls, mean, last_token"),
        ({"batch_size": 0}, InvalidParameterError, "batch_size must be a positive integer"),
        ({"max_length": -5}, InvalidParameterError, "max_length must be a positive integer or None"),
        ({"normalize": "yes"}, InvalidParameterError, "normalize must be True or False"),
        ({"query_instruction": 3}, InvalidParameterError, "query_instruction must be a string"),
        ({"device": "TPU"}, DeviceNotAvailableError, "Available devices"),
        ({"ov_config": ["PERFORMANCE_HINT"]}, InvalidParameterError, "ov_config must be a mapping"),
    ],
)
def test_bad_options(minilm_dir: Path, cache_dir: Path, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        EmbeddingModel(minilm_dir, cache_dir=cache_dir, **kwargs)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        EmbeddingModel(tmp_path / "nowhere", device="CPU", cache_dir=tmp_path)


def _ir_copy_with_pooling(ir: Path, target: Path, pooling_config: dict, max_seq_length: int) -> Path:
    """The exported IR (files linked, not copied) plus a sentence-transformers config of our choosing."""
    target.mkdir()
    for f in ir.iterdir():
        (target / f.name).symlink_to(f)
    (target / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return target


def test_settings_read_from_an_ir_folder(model: EmbeddingModel, tmp_path: Path, sentence_transformer) -> None:
    folder = _ir_copy_with_pooling(model.path, tmp_path / "ir", {"pooling_mode": "cls"}, 8)
    cls_model = EmbeddingModel(folder, device="CPU", cache_dir=tmp_path)
    assert (cls_model.pooling, cls_model.max_length) == ("cls", 8)
    long_text = TEXTS[2]
    tokens = sentence_transformer.encode([long_text], output_value="token_embeddings")[0]
    first = cls_model.embed_documents([long_text])[0]
    assert _cosines(first, _unit(tokens[0])) < 0.999  # 8 tokens of context change the CLS vector...
    truncated = EmbeddingModel(folder, device="CPU", cache_dir=tmp_path, max_length=512)
    assert _cosines(truncated.embed_documents([long_text])[0], _unit(tokens[0])) > 0.99  # ...the full text does not


def test_unsupported_pooling_in_the_config(model: EmbeddingModel, tmp_path: Path) -> None:
    folder = _ir_copy_with_pooling(model.path, tmp_path / "ir", {"pooling_mode_max_tokens": True}, 256)
    with pytest.raises(InvalidParameterError, match=r"pools with 'max'.*Pass pooling="):
        EmbeddingModel(folder, device="CPU", cache_dir=tmp_path)
    overridden = EmbeddingModel(folder, device="CPU", cache_dir=tmp_path, pooling="mean")
    np.testing.assert_allclose(overridden.embed_documents(TEXTS[:2]), model.embed_documents(TEXTS[:2]), atol=1e-5)


def test_refuses_models_that_are_not_embedding_encoders(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="is a text-generation model, not a text-embedding encoder"):
        EmbeddingModel(tiny_model, device="CPU", cache_dir=tmp_path)
