"""LangChain integration of openvino-llm.

``from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings, OpenVINORerank``
"""

from langchain_openvino.chat_models import ChatOpenVINO
from langchain_openvino.embeddings import OpenVINOEmbeddings
from langchain_openvino.rerank import OpenVINORerank

__all__ = ["ChatOpenVINO", "OpenVINOEmbeddings", "OpenVINORerank"]
