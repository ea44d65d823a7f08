"""OpenVINORerank: a LlamaIndex node postprocessor over openvino-llm's RerankModel (translation only)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from openvino_llm.errors import InvalidParameterError
from openvino_llm.retrieval.rerank import RerankModel

dispatcher = get_dispatcher(__name__)


class OpenVINORerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a local OpenVINO cross-encoder.

    Returns the best ``top_n`` nodes, best first, each ``NodeWithScore.score`` set to the
    cross-encoder's probability that the node answers the query; the nodes themselves (text,
    metadata, relationships) are unchanged. With ``keep_retrieval_score=True`` the retriever's score
    is kept in ``node.metadata["retrieval_score"]``. Nodes are scored on their text with the metadata
    an embedding sees (``MetadataMode.EMBED``), as LlamaIndex's own rerankers do.

    Install::

        pip install "openvino-llm[llama-index,export]"

    Setup: no reranker ships with openvino-llm; ``model`` is a cross-encoder checkpoint (Hugging Face
    folder or hub id, exported once and cached) or its OpenVINO IR folder.

    Rerank::

        from llama_index.core.schema import NodeWithScore, TextNode
        from llama_index_openvino import OpenVINORerank

        reranker = OpenVINORerank(model="cross-encoder/ms-marco-MiniLM-L-6-v2", top_n=1)
        nodes = [NodeWithScore(node=TextNode(text=t)) for t in ["Bananas are yellow.", "Paris is in France."]]
        best = reranker.postprocess_nodes(nodes, query_str="What is the capital of France?")
        print(best[0].score, best[0].text)

    In a query engine (any index)::

        query_engine = index.as_query_engine(similarity_top_k=10, node_postprocessors=[reranker])

    Errors are openvino-llm's own (``openvino_llm.errors``): a bad argument or input raises
    ``InvalidParameterError``.
    """

    model: str | None = Field(
        default=None, description="Cross-encoder: OpenVINO IR folder, Hugging Face folder or hub id (required)."
    )
    top_n: int | None = Field(
        default=2, description="Number of nodes to return (LlamaIndex rerankers' usual default of 2); None: all."
    )
    device: str = Field(default="AUTO", description='OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ...')
    ov_config: dict[str, Any] | None = Field(default=None, description="OpenVINO compile properties.")
    cache_dir: str | None = Field(default=None, description="openvino-llm cache folder (exports, compiled models).")
    max_length: int | None = Field(default=None, description="Truncate query + text pairs to this many tokens.")
    batch_size: int = Field(default=32, description="Query + text pairs per inference call.")
    keep_retrieval_score: bool = Field(
        default=False, description='Keep the retriever\'s score in node.metadata["retrieval_score"].'
    )

    _model: RerankModel = PrivateAttr()

    @field_validator("model", "cache_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def __init__(self, model: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        # Built after pydantic validation so the core's errors (e.g. no model given) reach the caller unwrapped.
        self._model = RerankModel(
            self.model,
            device=self.device,
            ov_config=self.ov_config,
            cache_dir=self.cache_dir,
            top_n=self.top_n,
            max_length=self.max_length,
            batch_size=self.batch_size,
        )

    @classmethod
    def class_name(cls) -> str:
        return "OpenVINORerank"

    def _inputs(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[QueryBundle, list[str]]:
        if query_bundle is None:
            raise InvalidParameterError(
                "OpenVINORerank needs the query: call postprocess_nodes(nodes, query_str=...) or pass a query_bundle."
            )
        for i, node in enumerate(nodes):
            if not isinstance(node, NodeWithScore):
                raise InvalidParameterError(
                    f"nodes[{i}] must be a NodeWithScore, got {type(node).__name__}: {node!r:.80}."
                )
        return query_bundle, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

    def _top_n(self, nodes: list[NodeWithScore]) -> int | None:
        # The current field value (it may have been changed since construction); None means all.
        return self.top_n if self.top_n is not None else (len(nodes) or None)

    def _reranked(self, nodes: list[NodeWithScore], ranking: list[tuple[int, float]]) -> list[NodeWithScore]:
        out = []
        for index, score in ranking:
            node = nodes[index]
            if self.keep_retrieval_score:
                node.node.metadata["retrieval_score"] = node.score
            out.append(NodeWithScore(node=node.node, score=score))
        return out

    @contextmanager
    def _events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle
    ) -> Iterator[Callable[[list[NodeWithScore]], list[NodeWithScore]]]:
        """LlamaIndex's rerank instrumentation around one rerank: yields ``done(new_nodes)``."""
        result: list[NodeWithScore] = []

        def done(new_nodes: list[NodeWithScore]) -> list[NodeWithScore]:
            result.extend(new_nodes)
            return new_nodes

        top_n = self.top_n or len(nodes)
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model))
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            yield done
            event.on_end(payload={EventPayload.NODES: result})
        dispatcher.event(ReRankEndEvent(nodes=result))

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        bundle, texts = self._inputs(nodes, query_bundle)
        with self._events(nodes, bundle) as done:
            ranking = self._model.rerank(bundle.query_str, texts, top_n=self._top_n(nodes))
            return done(self._reranked(nodes, ranking))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        bundle, texts = self._inputs(nodes, query_bundle)
        with self._events(nodes, bundle) as done:
            return done(
                self._reranked(nodes, await self._model.arerank(bundle.query_str, texts, top_n=self._top_n(nodes)))
            )


__all__ = ["OpenVINORerank"]
