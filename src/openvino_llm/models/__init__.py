"""Where a model comes from and how it becomes something OpenVINO loads.

``resolve_model`` turns a reference (an IR folder, a ``.gguf`` file, a Hugging Face folder or hub
id, or nothing for an embedded default) into a :class:`ResolvedModel`; exports and compressions land
in the cache atomically.

    >>> from openvino_llm.models import resolve_model
    >>> resolve_model().kind  # doctest: +SKIP
    'gguf'
"""

from .resolve import ModelConfig, ResolvedModel, read_model_config, resolve_model

__all__ = ["ModelConfig", "ResolvedModel", "read_model_config", "resolve_model"]
