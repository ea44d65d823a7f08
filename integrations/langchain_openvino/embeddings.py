"""OpenVINOEmbeddings: LangChain embeddings over openvino-llm's EmbeddingModel (translation only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr

from openvino_llm.retrieval.embeddings import EmbeddingModel


class OpenVINOEmbeddings(BaseModel, Embeddings):
    """Local OpenVINO text embeddings for LangChain (vector stores, retrievers, semantic caches).

    Install::

        pip install "openvino-llm[langchain,export]"

    Setup: ``model`` is an OpenVINO IR folder, a Hugging Face embedding checkpoint folder or hub id
    (exported to OpenVINO once and cached), or ``None`` for all-MiniLM-L6-v2. Pooling and the token
    limit follow the model's sentence-transformers configuration unless set here. Objects with the
    same arguments share one loaded model.

    Embed::

        from langchain_openvino import OpenVINOEmbeddings

        embeddings = OpenVINOEmbeddings(device="CPU")
        vectors = embeddings.embed_documents(["Paris is the capital of France.", "Bananas are yellow."])
        query = embeddings.embed_query("What is the capital of France?")
        print(len(vectors), len(query))  # 2 384

    Async (runs in a worker thread; the event loop keeps going)::

        vectors = await embeddings.aembed_documents(["one", "two"])
        query = await embeddings.aembed_query("three")

    In a vector store::

        from langchain_core.vectorstores import InMemoryVectorStore

        store = InMemoryVectorStore.from_texts(["Paris is in France.", "Bananas are yellow."], embeddings)
        print(store.similarity_search("French capital", k=1)[0].page_content)  # Paris is in France.

    Errors are openvino-llm's own (``openvino_llm.errors``): a bad argument or input raises
    ``InvalidParameterError``.
    """

    model: str | Path | None = None
    """OpenVINO IR folder, Hugging Face folder or hub id; None for the default all-MiniLM-L6-v2."""
    device: str = "AUTO"
    """OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ..."""
    ov_config: dict[str, Any] | None = None
    """OpenVINO properties passed when compiling the model."""
    cache_dir: str | Path | None = None
    """openvino-llm cache folder (exports, compiled models); None: $OPENVINO_LLM_CACHE or ~/.cache/openvino-llm."""
    pooling: str | None = None
    """"cls", "mean" or "last_token"; None: the model's sentence-transformers pooling, else "mean"."""
    normalize: bool = True
    """L2-normalise the vectors (a dot product is then the cosine similarity)."""
    max_length: int | None = None
    """Truncate texts to this many tokens; None: the model's max_seq_length."""
    batch_size: int = 32
    """Texts per inference call in embed_documents."""
    query_instruction: str | None = None
    """Text put before every query (e.g. "query: " for E5 models)."""
    embed_instruction: str | None = None
    """Text put before every document (e.g. "passage: ")."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _model: EmbeddingModel = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Built here rather than in a validator so the core's errors reach the caller unwrapped.
        self._model = EmbeddingModel(
            self.model,
            device=self.device,
            ov_config=self.ov_config,
            cache_dir=self.cache_dir,
            pooling=self.pooling,  # type: ignore[arg-type]  # the core validates it
            normalize=self.normalize,
            max_length=self.max_length,
            batch_size=self.batch_size,
            query_instruction=self.query_instruction,
            embed_instruction=self.embed_instruction,
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed search documents."""
        return self._model.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query."""
        return self._model.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed search documents without blocking the event loop."""
        return await self._model.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a search query without blocking the event loop."""
        return await self._model.aembed_query(text)


__all__ = ["OpenVINOEmbeddings"]
