"""OpenVINOEmbedding as a LlamaIndex embedding model, on all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler

from llama_index_openvino import OpenVINOEmbedding
from openvino_llm.errors import InvalidParameterError
from openvino_llm.retrieval.embeddings import EmbeddingModel

DOCS = [
    "The Eiffel Tower in Paris was finished in 1889 and is 330 metres tall.",
    "Bananas are yellow fruits that are rich in potassium.",
    "The Python programming language was created by Guido van Rossum.",
    "Mount Everest, 8849 metres high, is the highest mountain on Earth.",
    "Mitochondria produce most of the chemical energy in a cell.",
]


@pytest.fixture(scope="module")
def embed_model(minilm_dir: Path, cache_dir: Path) -> OpenVINOEmbedding:
    return OpenVINOEmbedding(model=minilm_dir, device="CPU", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def core(minilm_dir: Path, cache_dir: Path) -> EmbeddingModel:
    return EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir)


def test_same_vectors_as_the_core(embed_model: OpenVINOEmbedding, core: EmbeddingModel) -> None:
    assert embed_model.model_name == core.model_name
    np.testing.assert_allclose(embed_model.get_text_embedding_batch(DOCS), core.embed_documents(DOCS), atol=1e-5)
    np.testing.assert_allclose(embed_model.get_text_embedding(DOCS[0]), core.embed_documents(DOCS[:1])[0], atol=1e-5)
    np.testing.assert_allclose(embed_model.get_query_embedding("hi"), core.embed_query("hi"), atol=1e-5)


def test_vector_store_index_retrieves_the_right_document(embed_model: OpenVINOEmbedding) -> None:
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=1)
    for query, expected in [
        ("How tall is the Eiffel Tower?", 0),
        ("Which fruit has potassium?", 1),
        ("Who created Python?", 2),
        ("What is the highest mountain?", 3),
        ("Where does a cell get its energy?", 4),
    ]:
        assert retriever.retrieve(query)[0].node.get_content() == DOCS[expected], query


def test_embed_batch_size_honoured(minilm_dir: Path, cache_dir: Path, core: EmbeddingModel) -> None:
    debug = LlamaDebugHandler()
    small = OpenVINOEmbedding(
        model=minilm_dir,
        device="CPU",
        cache_dir=cache_dir,
        embed_batch_size=2,
        callback_manager=CallbackManager([debug]),
    )
    assert small.embed_batch_size == 2
    vectors = small.get_text_embedding_batch(DOCS)
    batches = [end.payload[EventPayload.CHUNKS] for _start, end in debug.get_event_pairs(CBEventType.EMBEDDING)]
    assert [len(b) for b in batches] == [2, 2, 1]  # 5 texts in batches of 2
    np.testing.assert_allclose(vectors, core.embed_documents(DOCS), atol=1e-3)


async def test_async_same_as_sync(embed_model: OpenVINOEmbedding) -> None:
    np.testing.assert_allclose(
        await embed_model.aget_text_embedding_batch(DOCS), embed_model.get_text_embedding_batch(DOCS), atol=1e-5
    )
    np.testing.assert_allclose(
        await embed_model.aget_text_embedding(DOCS[1]), embed_model.get_text_embedding(DOCS[1]), atol=1e-5
    )
    np.testing.assert_allclose(
        await embed_model.aget_query_embedding("energy"), embed_model.get_query_embedding("energy"), atol=1e-5
    )


def test_instructions_reach_the_model(minilm_dir: Path, cache_dir: Path, core: EmbeddingModel) -> None:
    instructed = OpenVINOEmbedding(
        model=minilm_dir, device="CPU", cache_dir=cache_dir, query_instruction="query: ", text_instruction="passage: "
    )
    query, text = instructed.get_query_embedding("tall towers"), instructed.get_text_embedding("tall towers")
    expected_query, expected_text = core.embed_documents(["query: tall towers", "passage: tall towers"])
    np.testing.assert_allclose(query, expected_query, atol=1e-3)
    np.testing.assert_allclose(text, expected_text, atol=1e-3)


def test_core_errors_pass_through(minilm_dir: Path, cache_dir: Path, embed_model: OpenVINOEmbedding) -> None:
    with pytest.raises(InvalidParameterError, match="pooling must be one of"):
        OpenVINOEmbedding(model=minilm_dir, cache_dir=cache_dir, pooling="max")
    with pytest.raises(InvalidParameterError, match=r"texts\[1\] must be a string"):
        embed_model.get_text_embedding_batch(["fine", 42])  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError, match="text must be a string"):
        embed_model.get_query_embedding(None)  # type: ignore[arg-type]
