"""Turn a model reference into something OpenVINO can load: an IR folder or a .gguf file.

A reference is one of:

1. an OpenVINO IR folder (``openvino_model.xml`` + tokenizer/detokenizer): used as is, or
   compressed into the cache when a ``weight_format`` is given;
2. a ``.gguf`` file: used directly when openvino-genai reads its weights exactly (F16, Q8_0,
   Q4_0), else re-exported once into the cache (exact dequantization, each weight to the nearest
   OpenVINO format; see :mod:`.gguf` and :mod:`.gguf_export`); with a ``weight_format``, always
   re-exported to that format. No torch either way;
3. a Hugging Face checkpoint folder, or
4. a hub id such as ``HuggingFaceTB/SmolLM2-360M-Instruct``: exported with optimum-intel into the
   cache (once; later calls reuse the export);
5. the short name of an embedded model (``"qwen2.5-coder-0.5b"``, ``"smollm2-135m"``,
   ``"all-minilm-l6-v2"``), or ``None`` (``"default"``) for the default of the task:
   Qwen2.5-Coder-0.5B-Instruct for text generation, all-MiniLM-L6-v2 for embeddings.

    >>> from openvino_llm.models.resolve import resolve_model, read_model_config
    >>> resolved = resolve_model("smollm2-135m")  # doctest: +SKIP
    >>> resolved.kind, resolved.name  # doctest: +SKIP
    ('gguf', 'SmolLM2-135M-Instruct')
    >>> read_model_config(resolved).context_window  # doctest: +SKIP
    8192
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..devices import default_cache_dir
from ..errors import InvalidParameterError, ModelNotFoundError
from .cache import build_cached, cache_key, cached_entry, checked_entry, folder_fingerprint, package_versions
from .compress import check_ir_compression, compress_into
from .embedded import default_model_path, embedded_model, embedded_model_path
from .export import export_into, require_optimum_export
from .gguf import (
    NEAREST_FORMAT,
    all_int8,
    gguf_damage,
    gguf_sampling_defaults,
    plan_gguf,
    read_gguf,
    read_gguf_metadata,
)
from .gguf_export import check_gguf_export, reexport_gguf_into, require_gguf_export
from .hub import fetch_hub_snapshot, is_hub_id
from .ir import IR_MODEL_FILE, check_ir_folder, ir_damage
from .options import CompressionOptions, check_task, make_options

logger = logging.getLogger("openvino_llm")

ModelKind = Literal["ir", "gguf"]


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
        path, name = default_model_path(task, cache)
        source = "default"
    elif isinstance(model, str) and embedded_model(model) is not None and not Path(model).expanduser().exists():
        path, name = embedded_model_path(model, cache, task=task)
        source = model.strip().lower()
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
            if is_hub_id(text):
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
# GGUF and IR


def _resolve_gguf(
    path: Path, name: str, source: str, task: str, options: CompressionOptions, cache: Path
) -> ResolvedModel:
    """The GGUF file itself when openvino-genai reads it exactly, else its cached re-export."""
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
    auto = options.weight_format is None
    plan = plan_gguf(read_gguf(path)) if auto else None  # an unreadable tensor type is refused here
    if plan is not None and plan.direct:
        return ResolvedModel(path=path, kind="gguf", name=name, source=source)
    st = path.stat()
    key_parts: dict[str, Any] = {
        "source": {"gguf": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "task": task,
        "options": options.as_dict(),
        "route": "gguf-reexport",
        "versions": package_versions(),
    }
    if plan is not None:  # the automatic choice: a change of the per-type formats or of the route is a new export
        key_parts["formats"] = {t: NEAREST_FORMAT[t] for t in sorted(plan.types)}
        key_parts["int8"] = "per-channel" if all_int8(plan.types) else "blocks"
    display = name if auto else f"{name}-{options.weight_format}"
    key = cache_key(name, key_parts)
    found = cached_entry(cache, key)
    if found is not None:
        logger.debug("Using cached re-export %s", found)
        return ResolvedModel(path=checked_entry(found, task), kind="ir", name=display, source=source)
    header = check_gguf_export(path, task, options)  # before any work: types, architecture, tokenizer, group size
    require_gguf_export(header, options)
    meta = {"name": display, "source": str(path), "task": task, "options": options.as_dict()}

    def build(tmp: Path) -> Any:
        if plan is not None:
            logger.warning("%s.", plan.reason)  # one line: what was chosen and why (the re-export takes a while)
        else:
            logger.info("Re-exporting %s to %s into the cache ...", path.name, options.describe())
        return reexport_gguf_into(path, tmp, options, progress=None)

    entry, _ = build_cached(cache, key, meta, build)
    return ResolvedModel(path=checked_entry(entry, task), kind="ir", name=display, source=source)


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
    check_ir_compression(path, options)
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
        return compress_into(path, tmp, options, progress=None)

    entry, _ = build_cached(cache, key, meta, build)
    return ResolvedModel(
        path=checked_entry(entry, task), kind="ir", name=f"{name}-{options.weight_format}", source=source
    )


# --------------------------------------------------------------------------------------------
# Hugging Face folders and hub ids


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
        return export_into(
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
        return ResolvedModel(path=checked_entry(found, task), kind="ir", name=name, source=source)
    require_optimum_export()  # a clear "pip install openvino-llm[export]" before touching the cache
    entry, built = build_cached(cache, key, meta, build)
    if not built:
        logger.debug("Using cached export %s (built by another process)", entry)
    return ResolvedModel(path=checked_entry(entry, task), kind="ir", name=name, source=source)


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
        return ResolvedModel(path=checked_entry(found, task), kind="ir", name=model_id, source=model_id)
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


def _gguf_model_config(path: Path) -> ModelConfig:
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    context = meta.get(f"{arch}.context_length") if isinstance(arch, str) else None
    defaults: dict[str, Any] = {}
    eos = meta.get("tokenizer.ggml.eos_token_id")
    if isinstance(eos, int):
        defaults["eos_token_id"] = [eos]
    defaults.update(gguf_sampling_defaults(meta))
    template = meta.get("tokenizer.chat_template")
    return ModelConfig(
        context_window=int(context) if isinstance(context, int) and context > 0 else None,
        generation_defaults=defaults,
        architecture=arch if isinstance(arch, str) else None,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        chat_template=template if isinstance(template, str) else None,
    )


__all__ = [
    "ModelConfig",
    "ResolvedModel",
    "folder_display_name",
    "read_model_config",
    "resolve_model",
]
