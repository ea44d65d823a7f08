"""OpenVINORerank: a LangChain document compressor over openvino-llm's RerankModel (translation only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, PrivateAttr

from openvino_llm.errors import InvalidParameterError
from openvino_llm.retrieval.rerank import RerankModel


def _texts(documents: Sequence[Document]) -> list[str]:
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InvalidParameterError(
                f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}: {doc!r:.80}. "
                "Wrap text with Document(page_content=...)."
            )
    return [doc.page_content for doc in documents]


def _reranked(documents: Sequence[Document], ranking: list[tuple[int, float]]) -> list[Document]:
    """The ranked documents, best first: content, id and metadata kept, ``metadata["relevance_score"]`` added."""
    out = []
    for index, score in ranking:
        doc = documents[index]
        out.append(
            Document(page_content=doc.page_content, metadata={**doc.metadata, "relevance_score": score}, id=doc.id)
        )
    return out


class OpenVINORerank(BaseDocumentCompressor):
    """Rerank retrieved documents with a local OpenVINO cross-encoder.

    Each returned ``Document`` keeps its ``page_content``, ``id`` and ``metadata`` and gains
    ``metadata["relevance_score"]`` (the cross-encoder's probability that it answers the query).
    Documents come back best first, at most ``top_n`` of them.

    Install::

        pip install "openvino-llm[langchain,export]"

    Setup: no reranker ships with openvino-llm; ``model`` is a cross-encoder checkpoint (Hugging Face
    folder or hub id, exported once and cached) or its OpenVINO IR folder.

    Rerank::

        from langchain_core.documents import Document
        from langchain_openvino import OpenVINORerank

        reranker = OpenVINORerank(model="cross-encoder/ms-marco-MiniLM-L-6-v2", top_n=2)
        docs = [Document(page_content=t) for t in ["Bananas are yellow.", "Paris is the capital of France."]]
        for doc in reranker.compress_documents(docs, "What is the capital of France?"):
            print(doc.metadata["relevance_score"], doc.page_content)

    In a retriever (``pip install langchain-classic``; any base retriever, e.g. a vector store's)::

        from langchain_classic.retrievers import ContextualCompressionRetriever

        retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=store.as_retriever())

    Errors are openvino-llm's own (``openvino_llm.errors``): a bad argument or input raises
    ``InvalidParameterError``.
    """

    model: str | Path | None = None
    """Cross-encoder: OpenVINO IR folder, Hugging Face folder or hub id (required: no default ships)."""
    device: str = "AUTO"
    """OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ..."""
    ov_config: dict[str, Any] | None = None
    """OpenVINO properties passed when compiling the model."""
    cache_dir: str | Path | None = None
    """openvino-llm cache folder (exports, compiled models); None: $OPENVINO_LLM_CACHE or ~/.cache/openvino-llm."""
    top_n: int | None = 3
    """How many documents to return (LangChain rerankers' usual default of 3); None: all of them."""
    max_length: int | None = None
    """Truncate each query + document pair to this many tokens; None: the tokenizer's limit."""
    batch_size: int = 32
    """Query + document pairs per inference call."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)

    _model: RerankModel = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Built here rather than in a validator so the core's errors reach the caller unwrapped.
        self._model = RerankModel(
            self.model,
            device=self.device,
            ov_config=self.ov_config,
            cache_dir=self.cache_dir,
            top_n=self.top_n,
            max_length=self.max_length,
            batch_size=self.batch_size,
        )

    def _top_n(self, documents: Sequence[Document]) -> int | None:
        # The current field value (it may have been changed since construction); None means all.
        return self.top_n if self.top_n is not None else (len(documents) or None)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The documents reranked against ``query``, best first, at most ``top_n``."""
        return _reranked(documents, self._model.rerank(query, _texts(documents), top_n=self._top_n(documents)))

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` without blocking the event loop."""
        ranking = await self._model.arerank(query, _texts(documents), top_n=self._top_n(documents))
        return _reranked(documents, ranking)


__all__ = ["OpenVINORerank"]
