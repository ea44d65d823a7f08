"""RerankModel on a MiniLM cross-encoder: real OpenVINO scores compared with sentence-transformers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tests._cross_encoder import cached_cross_encoder

from openvino_llm.errors import DeviceNotAvailableError, InvalidParameterError, ModelNotFoundError
from openvino_llm.retrieval.rerank import RerankModel

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are an excellent source of potassium.",
    "The Eiffel tower was built for the 1889 World's Fair.",
    "Lyon is known for its cuisine.",
    "",
    " ".join(f"Paragraph {i} describes the rivers and mountains of Europe." for i in range(80)),  # > 512 tokens
]
SHORT = DOCS[:5]  # the long paragraph pads every batch to 512 tokens: keep it to the tests that need it
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # exact comparison: this CPU would otherwise run in bf16


@pytest.fixture(scope="session")
def cross_encoder_dir(minilm_dir: Path) -> Path:
    pytest.importorskip("torch", reason="building the test cross-encoder needs torch")
    return cached_cross_encoder(minilm_dir)


@pytest.fixture(scope="session")
def reranker(cross_encoder_dir: Path, cache_dir: Path) -> RerankModel:
    return RerankModel(cross_encoder_dir, device="CPU", ov_config=F32, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def reference_scores(cross_encoder_dir: Path) -> np.ndarray:
    """sentence-transformers' CrossEncoder scores on the same folder, with the sigmoid made explicit.

    TextRerankPipeline applies a sigmoid to a one-label model's logit, so compare like with like.
    """
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import torch

    model = sentence_transformers.CrossEncoder(str(cross_encoder_dir), device="cpu", activation_fn=torch.nn.Sigmoid())
    return np.asarray(model.predict([(QUERY, d) for d in DOCS]), dtype=np.float64)


def test_scores_match_sentence_transformers(reranker: RerankModel, reference_scores: np.ndarray) -> None:
    ranking = reranker.rerank(QUERY, DOCS)
    assert sorted(i for i, _ in ranking) == list(range(len(DOCS)))
    assert all(isinstance(i, int) and isinstance(s, float) for i, s in ranking)
    ours = np.zeros(len(DOCS))
    for index, score in ranking:
        ours[index] = score
    np.testing.assert_allclose(ours, reference_scores, atol=1e-4)
    # Best first, and the same order as the reference (its scores are well separated).
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    assert np.diff(np.sort(reference_scores)).min() > 1e-3
    assert [i for i, _ in ranking] == list(np.argsort(-reference_scores))


def test_default_precision_is_close(cross_encoder_dir: Path, cache_dir: Path, reference_scores: np.ndarray) -> None:
    default = RerankModel(cross_encoder_dir, device="CPU", cache_dir=cache_dir)
    scores = dict(default.rerank(QUERY, DOCS))
    np.testing.assert_allclose([scores[i] for i in range(len(DOCS))], reference_scores, atol=1e-2)


def test_top_n(cross_encoder_dir: Path, cache_dir: Path, reranker: RerankModel) -> None:
    full = reranker.rerank(QUERY, SHORT)
    assert reranker.rerank(QUERY, SHORT, top_n=2) == full[:2]
    assert reranker.rerank(QUERY, SHORT, top_n=100) == full
    top2 = RerankModel(cross_encoder_dir, device="CPU", ov_config=F32, cache_dir=cache_dir, top_n=2)
    assert top2._shared is reranker._shared  # top_n is applied after inference: same pipeline
    assert top2.rerank(QUERY, SHORT) == full[:2]
    assert top2.rerank(QUERY, SHORT, top_n=4) == full[:4]  # a per-call top_n wins


def test_batches_merge_into_one_ranking(cross_encoder_dir: Path, cache_dir: Path, reranker: RerankModel) -> None:
    small = RerankModel(cross_encoder_dir, device="CPU", ov_config=F32, cache_dir=cache_dir, batch_size=2)
    full, batched = reranker.rerank(QUERY, SHORT), small.rerank(QUERY, SHORT)
    assert [i for i, _ in batched] == [i for i, _ in full]
    np.testing.assert_allclose([s for _, s in batched], [s for _, s in full], atol=1e-4)


def test_max_length_truncates(cross_encoder_dir: Path, cache_dir: Path, reranker: RerankModel) -> None:
    short = RerankModel(cross_encoder_dir, device="CPU", ov_config=F32, cache_dir=cache_dir, max_length=16)
    long_doc = DOCS[-1]
    # Truncated to 16 tokens, the long paragraph is scored like its first few words.
    head = " ".join(long_doc.split()[:12])
    truncated, full_length, head_only = (
        short.rerank(QUERY, [long_doc])[0][1],
        reranker.rerank(QUERY, [long_doc])[0][1],
        short.rerank(QUERY, [head])[0][1],
    )
    assert abs(truncated - head_only) < 1e-4
    assert abs(truncated - full_length) > 1e-3


async def test_async_matches_sync(reranker: RerankModel) -> None:
    results = await asyncio.gather(*(reranker.arerank(QUERY, SHORT[:k]) for k in (2, 3, 5)))
    for k, ranking in zip((2, 3, 5), results, strict=True):
        assert ranking == reranker.rerank(QUERY, SHORT[:k])
    assert await reranker.arerank(QUERY, SHORT, top_n=1) == reranker.rerank(QUERY, SHORT)[:1]
    assert await reranker.arerank(QUERY, []) == []


def test_empty_documents(reranker: RerankModel) -> None:
    assert reranker.rerank(QUERY, []) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((QUERY, "one document"), r"documents must be a list of strings"),
        ((QUERY, ["ok", 7]), r"documents\[1\] must be a string, got int"),
        ((None, ["ok"]), r"query must be a string"),
        ((QUERY, ["ok"], 0), r"top_n must be a positive integer or None, got 0"),
    ],
)
def test_bad_input(reranker: RerankModel, args: tuple, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        reranker.rerank(*args)


async def test_async_bad_input(reranker: RerankModel) -> None:
    with pytest.raises(InvalidParameterError, match="documents must be a list of strings"):
        await reranker.arerank(QUERY, "one document")  # type: ignore[arg-type]


def test_no_default_reranker(cache_dir: Path) -> None:
    with pytest.raises(InvalidParameterError, match="no default reranker ships"):
        RerankModel(cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"top_n": 0}, InvalidParameterError, "top_n must be a positive integer"),
        ({"batch_size": "8"}, InvalidParameterError, "batch_size must be a positive integer"),
        ({"max_length": 0}, InvalidParameterError, "max_length must be a positive integer"),
        ({"device": "TPU"}, DeviceNotAvailableError, "Available devices"),
    ],
)
def test_bad_options(cross_encoder_dir: Path, cache_dir: Path, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RerankModel(cross_encoder_dir, cache_dir=cache_dir, **kwargs)


def test_refuses_models_that_are_not_cross_encoders(
    minilm_dir: Path, tiny_model: Path, reranker: RerankModel, cache_dir: Path
) -> None:
    from openvino_llm.retrieval.embeddings import EmbeddingModel

    embedding_ir = EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir).path
    with pytest.raises(ModelNotFoundError, match=r"without classification logits.*not a cross-encoder"):
        RerankModel(embedding_ir, device="CPU", cache_dir=cache_dir)
    with pytest.raises(ModelNotFoundError, match="is a text-generation model, not a cross-encoder"):
        RerankModel(tiny_model, device="CPU", cache_dir=cache_dir)
    with pytest.raises(ModelNotFoundError, match=r"output has shape \[\?,1\], not a text-embedding encoder"):
        EmbeddingModel(reranker.path, device="CPU", cache_dir=cache_dir)
