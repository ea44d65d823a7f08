"""LangChain integration of openvino-llm: ``from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings, OpenVINORerank``."""

from langchain_openvino.chat_models import ChatOpenVINO

__all__ = ["ChatOpenVINO"]
