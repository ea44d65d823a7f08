"""OpenVINOEmbeddings: LangChain's standard embeddings suites and use in a vector store, on MiniLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_openvino import OpenVINOEmbeddings
from openvino_llm.errors import InvalidParameterError
from openvino_llm.retrieval.embeddings import EmbeddingModel

TEXTS = [
    "Paris is the capital and largest city of France.",
    "Bananas are an excellent source of potassium.",
    "OpenVINO is a toolkit for optimizing and deploying AI inference on Intel hardware.",
]


class _Params:
    """The suites read their model arguments from a property: fill it from the session fixtures."""

    _params: dict[str, Any]

    @pytest.fixture(autouse=True)
    def _model_folder(self, minilm_dir: Path, cache_dir: Path) -> None:
        self._params = {"model": str(minilm_dir), "device": "CPU", "cache_dir": str(cache_dir)}

    @property
    def embeddings_class(self) -> type[Embeddings]:
        return OpenVINOEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return dict(self._params)


class TestOpenVINOEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    pass


class TestOpenVINOEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    pass


@pytest.fixture(scope="module")
def embeddings(minilm_dir: Path, cache_dir: Path) -> OpenVINOEmbeddings:
    return OpenVINOEmbeddings(model=minilm_dir, device="CPU", cache_dir=cache_dir)


def test_same_vectors_as_the_core(embeddings: OpenVINOEmbeddings, minilm_dir: Path, cache_dir: Path) -> None:
    core = EmbeddingModel(minilm_dir, device="CPU", cache_dir=cache_dir)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), core.embed_documents(TEXTS), atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[0]), core.embed_query(TEXTS[0]), atol=1e-5)


async def test_async_same_as_sync(embeddings: OpenVINOEmbeddings) -> None:
    np.testing.assert_allclose(await embeddings.aembed_documents(TEXTS), embeddings.embed_documents(TEXTS), atol=1e-5)
    np.testing.assert_allclose(await embeddings.aembed_query("hi"), embeddings.embed_query("hi"), atol=1e-5)
    assert await embeddings.aembed_documents([]) == []


def test_options_reach_the_model(minilm_dir: Path, cache_dir: Path, embeddings: OpenVINOEmbeddings) -> None:
    raw = OpenVINOEmbeddings(model=minilm_dir, device="CPU", cache_dir=cache_dir, normalize=False, batch_size=2)
    vectors = np.asarray(raw.embed_documents(TEXTS))  # 3 texts in batches of 2
    norms = np.linalg.norm(vectors, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-2)
    np.testing.assert_allclose(vectors / norms[:, None], embeddings.embed_documents(TEXTS), atol=2e-3)


def test_in_a_vector_store(embeddings: OpenVINOEmbeddings) -> None:
    store = InMemoryVectorStore.from_texts(TEXTS, embeddings, metadatas=[{"i": i} for i in range(len(TEXTS))])
    assert store.similarity_search("Which fruit has potassium?", k=1)[0].metadata == {"i": 1}
    assert store.similarity_search("Where is the French capital?", k=1)[0].metadata == {"i": 0}


def test_core_errors_pass_through(minilm_dir: Path, cache_dir: Path, embeddings: OpenVINOEmbeddings) -> None:
    with pytest.raises(InvalidParameterError, match="pooling must be one of"):
        OpenVINOEmbeddings(model=minilm_dir, cache_dir=cache_dir, pooling="max")
    with pytest.raises(InvalidParameterError, match="list of strings"):
        embeddings.embed_documents("not a list")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"texts\[0\] must be a string"):
        embeddings.embed_documents([1])  # type: ignore[list-item]


def test_unknown_argument_is_rejected() -> None:
    with pytest.raises(ValueError, match="pooling_mode"):
        OpenVINOEmbeddings(pooling_mode="mean")  # type: ignore[call-arg]
