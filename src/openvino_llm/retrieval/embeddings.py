"""Text embeddings on ``openvino_genai.TextEmbeddingPipeline``::

    from openvino_llm.retrieval.embeddings import EmbeddingModel

    model = EmbeddingModel()                      # the default all-MiniLM-L6-v2, exported once
    vectors = model.embed_documents(["OpenVINO runs models on Intel hardware.", "Cats purr."])
    query = model.embed_query("What runs models on Intel CPUs?")
    assert len(query) == model.dimension == 384

Pooling and the token limit come from the model's sentence-transformers configuration
(``modules.json`` → ``1_Pooling/config.json``, ``sentence_bert_config.json``) when it has one, so the
vectors match what ``SentenceTransformer`` computes on the same checkpoint. Two models built with the
same resolved folder, device and options share one loaded pipeline.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..devices import check_device, compile_properties
from ..errors import InvalidParameterError, ModelNotFoundError, OpenVINOLLMError

Pooling = Literal["cls", "mean", "last_token"]
POOLING_TYPES: tuple[str, ...] = ("cls", "mean", "last_token")

_T = TypeVar("_T")


# --- shared by embeddings and rerank -------------------------------------------------------------


class _SharedPipeline:
    """One loaded openvino-genai pipeline and the lock that serialises calls to it.

    The genai pipelines own a single infer request, so calls from several threads (``asyncio.to_thread``,
    two models sharing the pipeline) must take turns.
    """

    def __init__(self, pipeline: Any, **info: Any) -> None:
        self.pipeline = pipeline
        self.lock = threading.Lock()
        self.info: dict[str, Any] = info  # facts about the model, e.g. "dimension"

    def call(self, fn: Callable[[Any], _T]) -> _T:
        with self.lock:
            return fn(self.pipeline)


_PIPELINES: weakref.WeakValueDictionary[Hashable, _SharedPipeline] = weakref.WeakValueDictionary()
_PIPELINES_LOCK = threading.Lock()


def _shared_pipeline(key: Hashable, load: Callable[[], _SharedPipeline]) -> _SharedPipeline:
    """The live pipeline for ``key``, loading it with ``load()`` when no model holds one any more."""
    with _PIPELINES_LOCK:
        shared = _PIPELINES.get(key)
        if shared is None:
            shared = load()
            _PIPELINES[key] = shared
        return shared


def _freeze(properties: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), repr(v)) for k, v in properties.items()))


def _check_texts(texts: object, what: str, method: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidParameterError(
            f"{what} must be a list of strings, got {type(texts).__name__}: {texts!r:.80}. "
            f'Wrap a single text in a list: {method}(["..."]).'
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidParameterError(
                f"{what}[{i}] must be a string, got {type(text).__name__}: {text!r:.80}. Convert it with str() first."
            )
    return list(texts)


def _check_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise InvalidParameterError(f"{what} must be a string, got {type(text).__name__}: {text!r:.80}.")
    return text


def _check_positive_int(value: object, name: str, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = " or None" if optional else ""
        raise InvalidParameterError(f"{name} must be a positive integer{hint}, got {value!r}.")
    return value


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _load_error(kind: str, path: Path, device: str, error: Exception, hint: str) -> OpenVINOLLMError:
    return ModelNotFoundError(f"Could not load {path} as a {kind} model on {device}: {error}. {hint}")


@dataclass(frozen=True)
class _ModelIO:
    """Input names and output (names, shape) of an IR, to tell an encoder from a classifier or an LLM."""

    inputs: frozenset[str]
    outputs: tuple[tuple[frozenset[str], Any], ...]

    @property
    def stateful(self) -> bool:  # a text-generation export with a KV cache
        return "beam_idx" in self.inputs


def _model_io(path: Path) -> _ModelIO:
    import openvino

    model = openvino.Core().read_model(path / "openvino_model.xml")
    return _ModelIO(
        inputs=frozenset(name for port in model.inputs for name in port.get_names()),
        outputs=tuple((frozenset(port.get_names()), port.get_partial_shape()) for port in model.outputs),
    )


# --- sentence-transformers settings --------------------------------------------------------------


@dataclass(frozen=True)
class _SentenceTransformersSettings:
    pooling: str | None = None
    max_length: int | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# sentence-transformers' Pooling config keys (older files) -> the names of its ``pooling_mode`` string.
_ST_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}


def _pooling_from_config(config: Mapping[str, Any]) -> str:
    """The pooling a sentence-transformers Pooling config names (possibly one GenAI lacks, e.g. "max")."""
    mode = config.get("pooling_mode")  # newer sentence-transformers write one string
    if not isinstance(mode, str):
        mode = next((name for key, name in _ST_POOLING_KEYS.items() if config.get(key)), "none")
    return "last_token" if mode == "lasttoken" else mode


def _sentence_transformers_settings(folders: Sequence[Path]) -> _SentenceTransformersSettings:
    """Pooling and max sequence length from the first folder holding a sentence-transformers config."""
    for folder in folders:
        modules = _read_json(folder / "modules.json")
        if not isinstance(modules, list):
            continue
        pooling = None
        for module in modules:
            if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling"):
                config = _read_json(folder / str(module.get("path", "")) / "config.json")
                if isinstance(config, dict):
                    pooling = _pooling_from_config(config)
        bert_config = _read_json(folder / "sentence_bert_config.json")
        max_length = bert_config.get("max_seq_length") if isinstance(bert_config, dict) else None
        return _SentenceTransformersSettings(
            pooling=pooling, max_length=max_length if isinstance(max_length, int) and max_length > 0 else None
        )
    return _SentenceTransformersSettings()


def _source_folders(resolved: Any) -> list[Path]:
    """Where sentence-transformers settings may be: the IR folder, then the checkpoint it came from.

    An export keeps only the transformer, so the pooling config is read from the source checkpoint:
    the user's folder, the default model's folder, or the hub id's snapshot in the local hub cache.
    """
    path = Path(resolved.path)
    folders = [path if path.is_dir() else path.parent]
    source = str(resolved.source)
    if source == "default":
        from ..models import default_model_path

        folders.append(default_model_path("feature-extraction")[0])
    elif Path(source).expanduser().is_dir():
        folders.append(Path(source).expanduser())
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "modules.json")
        except Exception:  # no huggingface_hub, or not a hub id: nothing more to read
            cached = None
        if isinstance(cached, str):
            folders.append(Path(cached).parent)
    return folders


# --- the model ------------------------------------------------------------------------------------


class EmbeddingModel:
    """A local OpenVINO text-embedding model: lists of texts in, lists of floats out.

    Install: ``pip install "openvino-llm[export]"`` (``[export]`` converts Hugging Face checkpoints;
    an OpenVINO IR folder needs only ``pip install openvino-llm``).

    Example::

        from openvino_llm.retrieval.embeddings import EmbeddingModel

        model = EmbeddingModel("sentence-transformers/all-MiniLM-L6-v2", device="CPU")
        docs = model.embed_documents(["Paris is the capital of France.", "Bananas are yellow."])
        query = model.embed_query("Which city is the French capital?")
        best = max(range(len(docs)), key=lambda i: sum(q * d for q, d in zip(query, docs[i])))
        print(best, model.dimension)  # 0 384

    Args:
        model: an OpenVINO IR folder, a Hugging Face folder or hub id (exported once into the cache),
            or ``None`` for the default all-MiniLM-L6-v2.
        device: OpenVINO device (``"AUTO"``, ``"CPU"``, ``"GPU"``, ``"NPU"``...).
        ov_config: OpenVINO compile properties, e.g. ``{"INFERENCE_PRECISION_HINT": "f32"}``.
        cache_dir: openvino-llm cache folder (exports and compiled models).
        pooling: ``"cls"``, ``"mean"`` or ``"last_token"``; by default the model's sentence-transformers
            pooling, else ``"mean"`` (what sentence-transformers uses for a plain checkpoint).
        normalize: L2-normalise the vectors (then a dot product is the cosine similarity).
        max_length: truncate texts to this many tokens; by default the model's ``max_seq_length``.
        batch_size: texts per inference call in :meth:`embed_documents`.
        query_instruction: text put before every query (e.g. ``"query: "`` for E5 models).
        embed_instruction: text put before every document (e.g. ``"passage: "``).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "AUTO",
        ov_config: Mapping[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        pooling: Pooling | None = None,
        normalize: bool = True,
        max_length: int | None = None,
        batch_size: int = 32,
        query_instruction: str | None = None,
        embed_instruction: str | None = None,
    ) -> None:
        if pooling is not None and pooling not in POOLING_TYPES:
            raise InvalidParameterError(f"pooling must be one of {', '.join(POOLING_TYPES)} or None, got {pooling!r}.")
        if not isinstance(normalize, bool):
            raise InvalidParameterError(f"normalize must be True or False, got {normalize!r}.")
        max_length = _check_positive_int(max_length, "max_length", optional=True)
        self.batch_size: int = _check_positive_int(batch_size, "batch_size", optional=False)  # type: ignore[assignment]
        for name, value in (("query_instruction", query_instruction), ("embed_instruction", embed_instruction)):
            if value is not None and not isinstance(value, str):
                raise InvalidParameterError(f"{name} must be a string or None, got {value!r}.")
        self.device = check_device(device)
        properties = compile_properties(ov_config, cache_dir)

        from ..models import resolve_model

        resolved = resolve_model(model, task="feature-extraction", cache_dir=cache_dir)
        self.path: Path = Path(resolved.path)
        self.model_name: str = resolved.name  # a GGUF file was refused: resolve_model only allows it for LLMs
        settings = _sentence_transformers_settings(_source_folders(resolved))
        if pooling is None and settings.pooling is not None and settings.pooling not in POOLING_TYPES:
            raise InvalidParameterError(
                f"{self.model_name} pools with {settings.pooling!r} (its sentence-transformers config), which "
                f"OpenVINO GenAI does not support. Pass pooling= one of {', '.join(POOLING_TYPES)} if one suits it."
            )
        self.pooling: str = pooling or settings.pooling or "mean"
        self.normalize = normalize
        self.max_length: int | None = max_length or settings.max_length
        self.query_instruction = query_instruction
        self.embed_instruction = embed_instruction

        key = (
            "text-embedding",
            str(self.path.resolve()),
            self.device,
            _freeze(properties),
            self.pooling,
            self.normalize,
            self.max_length,
            self.query_instruction,
            self.embed_instruction,
        )
        self._shared = _shared_pipeline(key, lambda: self._load(properties))

    def _load(self, properties: dict[str, Any]) -> _SharedPipeline:
        import openvino_genai

        io = _model_io(self.path)
        hidden = io.outputs[0][1] if io.outputs else None
        if io.stateful or hidden is None or hidden.rank.is_dynamic or hidden.rank.get_length() != 3:
            what = "a text-generation model" if io.stateful else f"a model whose output has shape {hidden}"
            raise ModelNotFoundError(
                f"{self.path} is {what}, not a text-embedding encoder (output [batch, tokens, hidden]). Pass an "
                "embedding checkpoint such as sentence-transformers/all-MiniLM-L6-v2 (exported for "
                "feature-extraction); use RerankModel for cross-encoders and load_engine for LLMs."
            )
        config = openvino_genai.TextEmbeddingPipeline.Config()
        config.pooling_type = getattr(openvino_genai.TextEmbeddingPipeline.PoolingType, self.pooling.upper())
        config.normalize = self.normalize
        if self.max_length is not None:
            config.max_length = self.max_length
        if self.query_instruction is not None:
            config.query_instruction = self.query_instruction
        if self.embed_instruction is not None:
            config.embed_instruction = self.embed_instruction
        # config.batch_size is left unset on purpose: it fixes the model's batch dimension, and
        # embed_documents feeds batches of any size up to self.batch_size.
        try:
            pipeline = openvino_genai.TextEmbeddingPipeline(self.path, self.device, config, **properties)
        except RuntimeError as error:
            raise _load_error(
                "text-embedding",
                self.path,
                self.device,
                error,
                "Pass an embedding model (a Hugging Face feature-extraction checkpoint or its OpenVINO export).",
            ) from error
        width = hidden[2]
        return _SharedPipeline(pipeline, **({"dimension": width.get_length()} if width.is_static else {}))

    def __repr__(self) -> str:
        return f"EmbeddingModel({self.model_name!r}, device={self.device!r}, pooling={self.pooling!r})"

    @property
    def dimension(self) -> int:
        """Length of every vector this model returns."""
        info = self._shared.info
        if "dimension" not in info:
            info["dimension"] = len(self._shared.call(lambda p: p.embed_query("dimension")))
        return int(info["dimension"])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (with ``embed_instruction`` in front), ``batch_size`` texts per inference."""
        items = _check_texts(texts, "texts", "embed_documents")
        vectors: list[list[float]] = []
        for batch in _batches(items, self.batch_size):
            vectors.extend(self._shared.call(lambda p, b=batch: p.embed_documents(b)))
        return [list(v) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (with ``query_instruction`` in front)."""
        query = _check_text(text, "text")
        return list(self._shared.call(lambda p: p.embed_query(query)))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread: the event loop keeps running."""
        _check_texts(texts, "texts", "aembed_documents")
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread: the event loop keeps running."""
        _check_text(text, "text")
        return await asyncio.to_thread(self.embed_query, text)


__all__ = ["POOLING_TYPES", "EmbeddingModel", "Pooling"]
