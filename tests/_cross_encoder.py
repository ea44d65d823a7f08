"""Build a small cross-encoder (reranker) checkpoint from the all-MiniLM-L6-v2 weights, for tests.

No cross-encoder ships on PyPI, so the tests make one: the MiniLM encoder loaded as
``BertForSequenceClassification`` with one label, its classifier head drawn from a seeded
generator (wide enough that scores spread out). The head is random, so scores mean nothing
semantically, but they are the same on every build and a real model computes them: the tests
compare our OpenVINO scores with transformers / sentence-transformers on the same folder.

    from tests._cross_encoder import cached_cross_encoder
    folder = cached_cross_encoder(minilm_dir)   # built once into the test cache

Bump :data:`BUILDER_VERSION` when the recipe changes: it is part of the on-disk cache key.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

BUILDER_VERSION = "1"
SEED = 1234
HEAD_SCALE = 8.0  # classifier weights ~ N(0, (HEAD_SCALE / sqrt(hidden))^2): logits spread over a few units

REPO_ROOT = Path(__file__).resolve().parents[1]


def _test_cache_root() -> Path:
    # Same folder as tests/conftest.py's cache: $OPENVINO_LLM_TEST_CACHE or <repo>/.cache/test-cache.
    root = os.environ.get("OPENVINO_LLM_TEST_CACHE") or str(REPO_ROOT / ".cache" / "test-cache")
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_cross_encoder(minilm_dir: Path, target: Path) -> Path:
    """Write a one-label ``BertForSequenceClassification`` checkpoint (+ tokenizer) into ``target``."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=1)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        weight = model.classifier.weight
        weight.copy_(torch.randn(weight.shape, generator=generator) * HEAD_SCALE / weight.shape[1] ** 0.5)
        model.classifier.bias.zero_()
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(minilm_dir)).save_pretrained(str(target))
    return target


def cached_cross_encoder(minilm_dir: Path) -> Path:
    """The cross-encoder folder in the test cache, built on first use (safe across pytest processes)."""
    root = _test_cache_root()
    target = root / f"minilm-cross-encoder-v{BUILDER_VERSION}"
    marker = target / "CROSS_ENCODER_BUILDER_VERSION"
    if marker.exists():
        return target
    with FileLock(str(root / f"minilm-cross-encoder-v{BUILDER_VERSION}.lock")):
        if marker.exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-cross-encoder-", dir=root))
        try:
            build_cross_encoder(minilm_dir, tmp)
            (tmp / "CROSS_ENCODER_BUILDER_VERSION").write_text(BUILDER_VERSION)
            if target.exists():  # a half-written folder from an older crash
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
