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


class GenerationTimeoutError(GenerationCancelledError, TimeoutError):
    """The generation did not finish within the caller's ``timeout`` and was cancelled."""


class OutputTruncatedError(OpenVINOLLMError, ValueError):
    """Constrained output (a JSON schema or a forced tool call) was cut at the token limit, incomplete.

    The text is not valid JSON; raise the token limit (``max_tokens`` / ``max_new_tokens``).
    ``output`` holds the text generated so far.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


__all__ = [
    "ContextLengthExceededError",
    "DeviceNotAvailableError",
    "ExportError",
    "GenerationCancelledError",
    "GenerationTimeoutError",
    "InvalidParameterError",
    "ModelNotFoundError",
    "OpenVINOLLMError",
    "OutputTruncatedError",
]
