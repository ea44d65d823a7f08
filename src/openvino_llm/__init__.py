"""openvino-llm: local OpenVINO models as LLMs, embeddings and rerankers for LangChain and LlamaIndex.

>>> from openvino_llm import load_engine, GenerationParams
>>> engine = load_engine()  # Qwen2.5-Coder-0.5B-Instruct, the embedded default (or load_engine("smollm2-135m"))
>>> print(engine.generate("What is the capital of France?", GenerationParams(temperature=0)).text)
The capital of France is Paris.
"""

from .engine.engine import Engine, load_engine
from .errors import (
    ContextLengthExceededError,
    DeviceNotAvailableError,
    ExportError,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidParameterError,
    ModelNotFoundError,
    OpenVINOLLMError,
    OutputTruncatedError,
)
from .types import Chunk, Generation, GenerationParams, Message, Timing, ToolCall, ToolCallDelta, ToolSpec, Usage

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
    "GenerationTimeoutError",
    "InvalidParameterError",
    "Message",
    "ModelNotFoundError",
    "OpenVINOLLMError",
    "OutputTruncatedError",
    "Timing",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
    "load_engine",
]
