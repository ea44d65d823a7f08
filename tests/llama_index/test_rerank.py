"""OpenVINORerank as a LlamaIndex node postprocessor, on a MiniLM cross-encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from tests._cross_encoder import cached_cross_encoder

from llama_index_openvino import OpenVINO, OpenVINOEmbedding, OpenVINORerank
from openvino_llm.errors import InvalidParameterError
from openvino_llm.retrieval.rerank import RerankModel

QUERY = "How tall is Mount Everest?"
TEXTS = [
    "The Eiffel Tower in Paris was finished in 1889 and is 330 metres tall.",
    "Bananas are yellow fruits that are rich in potassium.",
    "The Python programming language was created by Guido van Rossum.",
    "Mount Everest, 8849 metres high, is the highest mountain on Earth.",
    "Mitochondria produce most of the chemical energy in a cell.",
]


@pytest.fixture(scope="module")
def cross_encoder_dir(minilm_dir: Path) -> Path:
    pytest.importorskip("torch", reason="building the test cross-encoder needs torch")
    return cached_cross_encoder(minilm_dir)


@pytest.fixture(scope="module")
def core(cross_encoder_dir: Path, cache_dir: Path) -> RerankModel:
    return RerankModel(cross_encoder_dir, device="CPU", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def reranker(cross_encoder_dir: Path, cache_dir: Path) -> OpenVINORerank:
    return OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir)


def _nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"source": f"s{i}"}), score=0.1 * i)
        for i, t in enumerate(TEXTS)
    ]


def _expected(core: RerankModel, nodes: list[NodeWithScore], top_n: int | None) -> list[tuple[str, float]]:
    """(node id, score) the core gives on the text LlamaIndex rerankers score: content plus embed metadata."""
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert "source: s0" in texts[0]
    return [(nodes[i].node.node_id, s) for i, s in core.rerank(QUERY, texts, top_n=top_n)]


def test_postprocess_nodes(reranker: OpenVINORerank, core: RerankModel) -> None:
    assert reranker.top_n == 2  # LlamaIndex rerankers' usual default
    nodes = _nodes()
    result = reranker.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in result] == _expected(core, _nodes(), 2)
    by_id = {n.node.node_id: n.node for n in nodes}
    for n in result:
        assert n.node is by_id[n.node.node_id]  # the node itself, untouched
        assert n.node.metadata == {"source": "s" + n.node.node_id[1:]}
    assert [n.score for n in nodes] == [0.1 * i for i in range(len(TEXTS))]  # inputs keep their scores


def test_top_n(cross_encoder_dir: Path, cache_dir: Path, core: RerankModel) -> None:
    one = OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir, top_n=1)
    result = one.postprocess_nodes(_nodes(), QueryBundle(QUERY))
    assert [(n.node.node_id, n.score) for n in result] == _expected(core, _nodes(), 1)
    everything = OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir, top_n=None)
    result = everything.postprocess_nodes(_nodes(), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in result] == _expected(core, _nodes(), None)


def test_keep_retrieval_score(cross_encoder_dir: Path, cache_dir: Path) -> None:
    keeper = OpenVINORerank(model=cross_encoder_dir, device="CPU", cache_dir=cache_dir, keep_retrieval_score=True)
    nodes = _nodes()
    for n in keeper.postprocess_nodes(nodes, query_str=QUERY):
        i = int(n.node.node_id[1:])
        assert n.node.metadata == {"source": f"s{i}", "retrieval_score": pytest.approx(0.1 * i)}


async def test_async(reranker: OpenVINORerank, core: RerankModel) -> None:
    result = await reranker.apostprocess_nodes(_nodes(), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in result] == _expected(core, _nodes(), 2)
    assert await reranker.apostprocess_nodes([], query_str=QUERY) == []


def test_in_a_query_engine(
    reranker: OpenVINORerank, core: RerankModel, minilm_dir: Path, cache_dir: Path, tiny_model: Path
) -> None:
    embed_model = OpenVINOEmbedding(model=minilm_dir, device="CPU", cache_dir=cache_dir)
    index = VectorStoreIndex.from_documents([Document(text=t) for t in TEXTS], embed_model=embed_model)
    retriever = index.as_retriever(similarity_top_k=4)
    # A retriever query engine with the reranker as node postprocessor. NoText returns the nodes without
    # asking the LLM (LlamaIndex still wants one: the tiny model, never run).
    llm = OpenVINO(model=tiny_model, device="CPU", cache_dir=cache_dir, max_new_tokens=1)
    engine = RetrieverQueryEngine(retriever, response_synthesizer=NoText(llm=llm), node_postprocessors=[reranker])
    response = engine.query(QUERY)
    retrieved = retriever.retrieve(QUERY)
    assert len(retrieved) == 4 and len(response.source_nodes) == 2  # cut to the reranker's top_n
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    expected = [(retrieved[i].node.get_content(), s) for i, s in core.rerank(QUERY, texts, top_n=2)]
    assert [(n.node.get_content(), n.score) for n in response.source_nodes] == expected


def test_bad_input(reranker: OpenVINORerank) -> None:
    with pytest.raises(InvalidParameterError, match="needs the query"):
        reranker.postprocess_nodes(_nodes())
    with pytest.raises(InvalidParameterError, match=r"nodes\[0\] must be a NodeWithScore"):
        reranker.postprocess_nodes([TextNode(text="x")], query_str=QUERY)  # type: ignore[list-item]


def test_core_errors_pass_through(cross_encoder_dir: Path, cache_dir: Path) -> None:
    with pytest.raises(InvalidParameterError, match="no default reranker ships"):
        OpenVINORerank(cache_dir=cache_dir)
    with pytest.raises(InvalidParameterError, match="top_n must be a positive integer"):
        OpenVINORerank(model=cross_encoder_dir, cache_dir=cache_dir, top_n=0)
