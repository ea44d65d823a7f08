"""The exceptions openvino-llm raises. Catch :class:`OpenVINOLLMError` to catch them all.

Every message says what was wrong and how to fix it. The LangChain and LlamaIndex adapters
re-raise these unchanged.
"""

from __future__ import annotations


class OpenVINOLLMError(Exception):
    """Base class of every error raised by openvino-llm."""


class ModelNotFoundError(OpenVINOLLMError, FileNotFoundError):
    """The model reference does not name a usable model (missing path, unknown layout, no network)."""


class DeviceNotAvailableError(OpenVINOLLMError, ValueError):
    """The requested OpenVINO device does not exist on this machine."""


class ExportError(OpenVINOLLMError, RuntimeError):
    """Export or weight compression of a model failed; nothing was left in the cache."""


class InvalidParameterError(OpenVINOLLMError, ValueError):
    """A generation parameter, message, tool definition or option is invalid."""


class ContextLengthExceededError(InvalidParameterError):
    """The prompt (plus requested new tokens) does not fit the model's context window."""


class GenerationCancelledError(OpenVINOLLMError):
    """The generation was cancelled before it finished."""


__all__ = [
    "ContextLengthExceededError",
    "DeviceNotAvailableError",
    "ExportError",
    "GenerationCancelledError",
    "InvalidParameterError",
    "ModelNotFoundError",
    "OpenVINOLLMError",
]
