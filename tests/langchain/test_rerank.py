"""OpenVINORerank as a LangChain document compressor, on a MiniLM cross-encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from tests._cross_encoder import cached_cross_encoder

from langchain_openvino import OpenVINOEmbeddings, OpenVINORerank
from openvino_llm.errors import InvalidParameterError
from openvino_llm.retrieval.rerank import RerankModel

QUERY = "What is the capital of France?"
DOCS = [
    Document(page_content="Paris is the capital and largest city of France.", metadata={"source": "a"}, id="d0"),
    Document(page_content="Bananas are an excellent source of potassium.", metadata={"source": "b", "n": 1}),
    Document(page_content="The Eiffel tower was built for the 1889 World's Fair.", metadata={}, id="d2"),
    Document(page_content="Lyon is known for its cuisine.", metadata={"source": "d"}),
    Document(page_content="Mitochondria produce energy.", metadata={"source": "e"}),
]


@pytest.fixture(scope="module")
def cross_encoder_dir(minilm_dir: Path) -> Path:
    pytest.importorskip("torch", reason="building the test cross-encoder needs torch")
    return cached_cross_encoder(minilm_dir)


@pytest.fixture(scope="module")
def core_ranking(cross_encoder_dir: Path, cache_dir: Path) -> list[tuple[int, float]]:
    core = RerankModel(cross_encoder_dir, device="CPU", cache_dir=cache_dir)
    return core.rerank(QUERY, [d.page_content for d in DOCS])


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir: Path, cache_dir: Path) -> OpenVINORerank:
    return OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir)


def _check(result: list[Document], ranking: list[tuple[int, float]]) -> None:
    assert len(result) == len(ranking)
    for doc, (index, score) in zip(result, ranking, strict=True):
        original = DOCS[index]
        assert doc.page_content == original.page_content
        assert doc.id == original.id
        assert doc.metadata == {**original.metadata, "relevance_score": score}


def test_compress_documents(reranker: OpenVINORerank, core_ranking: list[tuple[int, float]]) -> None:
    assert reranker.top_n == 3  # LangChain rerankers' usual default
    result = list(reranker.compress_documents(DOCS, QUERY))
    _check(result, core_ranking[:3])
    scores = [d.metadata["relevance_score"] for d in result]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    assert all("relevance_score" not in d.metadata for d in DOCS)  # the inputs are untouched


def test_top_n(cross_encoder_dir: Path, cache_dir: Path, core_ranking: list[tuple[int, float]]) -> None:
    one = OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir, top_n=1)
    _check(list(one.compress_documents(DOCS, QUERY)), core_ranking[:1])
    everything = OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir, top_n=None)
    _check(list(everything.compress_documents(DOCS, QUERY)), core_ranking)
    one.top_n = 2  # a changed field takes effect on the next call
    _check(list(one.compress_documents(DOCS, QUERY)), core_ranking[:2])


async def test_acompress_documents(reranker: OpenVINORerank, core_ranking: list[tuple[int, float]]) -> None:
    _check(list(await reranker.acompress_documents(DOCS, QUERY)), core_ranking[:3])
    assert list(await reranker.acompress_documents([], QUERY)) == []


def test_empty(reranker: OpenVINORerank) -> None:
    assert list(reranker.compress_documents([], QUERY)) == []


def test_after_a_vector_store_retriever(reranker: OpenVINORerank, minilm_dir: Path, cache_dir: Path) -> None:
    embeddings = OpenVINOEmbeddings(model=minilm_dir, device="CPU", cache_dir=cache_dir)
    retriever = InMemoryVectorStore.from_documents(DOCS, embeddings).as_retriever(search_kwargs={"k": 4})
    chain = retriever | (lambda docs: reranker.compress_documents(docs, QUERY))
    retrieved = {d.page_content: d for d in retriever.invoke(QUERY)}
    result = chain.invoke(QUERY)
    assert len(result) == 3
    for doc in result:
        original = retrieved[doc.page_content]  # only retrieved documents, reordered
        assert doc.metadata == {**original.metadata, "relevance_score": doc.metadata["relevance_score"]}
    scores = [d.metadata["relevance_score"] for d in result]
    assert scores == sorted(scores, reverse=True)


def test_bad_input(reranker: OpenVINORerank) -> None:
    with pytest.raises(InvalidParameterError, match=r"documents\[1\] must be a langchain_core Document"):
        reranker.compress_documents([DOCS[0], "plain text"], QUERY)  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError, match="query must be a string"):
        reranker.compress_documents(DOCS, None)  # type: ignore[arg-type]


def test_core_errors_pass_through(cross_encoder_dir: Path, cache_dir: Path) -> None:
    with pytest.raises(InvalidParameterError, match="no default reranker ships"):
        OpenVINORerank(cache_dir=cache_dir)
    with pytest.raises(InvalidParameterError, match="top_n must be a positive integer"):
        OpenVINORerank(model=cross_encoder_dir, cache_dir=cache_dir, top_n=0)
