"""OpenVINOEmbedding: a LlamaIndex embedding model over openvino-llm's EmbeddingModel (translation only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE, BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator

from openvino_llm.retrieval.embeddings import EmbeddingModel


class OpenVINOEmbedding(BaseEmbedding):
    """Local OpenVINO text embeddings for LlamaIndex (indexes, retrievers, ingestion pipelines).

    Install::

        pip install "openvino-llm[llama-index,export]"

    Setup: ``model`` is an OpenVINO IR folder, a Hugging Face embedding checkpoint folder or hub id
    (exported to OpenVINO once and cached), or ``None`` for all-MiniLM-L6-v2. Pooling and the token
    limit follow the model's sentence-transformers configuration unless set here. ``embed_batch_size``
    texts go through the model per inference call. Objects with the same arguments share one loaded
    model.

    Embed::

        from llama_index_openvino import OpenVINOEmbedding

        embed_model = OpenVINOEmbedding(device="CPU", embed_batch_size=16)
        vector = embed_model.get_text_embedding("Paris is the capital of France.")
        query = embed_model.get_query_embedding("What is the capital of France?")
        print(len(vector), embed_model.similarity(vector, query))

    In an index::

        from llama_index.core import Document, VectorStoreIndex

        index = VectorStoreIndex.from_documents(
            [Document(text="Paris is the capital of France."), Document(text="Bananas are yellow.")],
            embed_model=embed_model,
        )
        print(index.as_retriever(similarity_top_k=1).retrieve("French capital")[0].text)

    Errors are openvino-llm's own (``openvino_llm.errors``): a bad argument or input raises
    ``InvalidParameterError``.
    """

    model: str | None = Field(
        default=None, description="OpenVINO IR folder, Hugging Face folder or hub id; None: all-MiniLM-L6-v2."
    )
    device: str = Field(default="AUTO", description='OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ...')
    ov_config: dict[str, Any] | None = Field(default=None, description="OpenVINO compile properties.")
    cache_dir: str | None = Field(default=None, description="openvino-llm cache folder (exports, compiled models).")
    pooling: str | None = Field(
        default=None, description='"cls", "mean" or "last_token"; None: the model\'s own pooling, else "mean".'
    )
    normalize: bool = Field(default=True, description="L2-normalise the vectors.")
    max_length: int | None = Field(default=None, description="Truncate texts to this many tokens; None: the model's.")
    query_instruction: str | None = Field(default=None, description="Text put before every query.")
    text_instruction: str | None = Field(default=None, description="Text put before every document text.")

    _model: EmbeddingModel = PrivateAttr()

    @field_validator("model", "cache_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, embed_batch_size=embed_batch_size, **kwargs)
        # Built after pydantic validation so the core's errors reach the caller unwrapped.
        self._model = EmbeddingModel(
            self.model,
            device=self.device,
            ov_config=self.ov_config,
            cache_dir=self.cache_dir,
            pooling=self.pooling,  # type: ignore[arg-type]  # the core validates it
            normalize=self.normalize,
            max_length=self.max_length,
            batch_size=self.embed_batch_size,
            query_instruction=self.query_instruction,
            embed_instruction=self.text_instruction,
        )
        if "model_name" not in kwargs:
            self.model_name = self._model.model_name

    @classmethod
    def class_name(cls) -> str:
        return "OpenVINOEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._model.embed_query(query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._model.embed_documents([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._model.embed_documents(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._model.aembed_query(query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._model.aembed_documents([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._model.aembed_documents(texts)


__all__ = ["OpenVINOEmbedding"]
