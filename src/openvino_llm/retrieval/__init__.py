"""Embedding and reranking models on openvino-genai's TextEmbeddingPipeline / TextRerankPipeline."""

from .embeddings import EmbeddingModel
from .rerank import RerankModel

__all__ = ["EmbeddingModel", "RerankModel"]
