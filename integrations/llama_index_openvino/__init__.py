"""LlamaIndex integrations for openvino-llm: the OpenVINO LLM, embeddings and reranker."""

from .base import OpenVINO
from .embeddings import OpenVINOEmbedding
from .rerank import OpenVINORerank

__all__ = ["OpenVINO", "OpenVINOEmbedding", "OpenVINORerank"]
