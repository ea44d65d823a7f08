"""Reranking with a cross-encoder on ``openvino_genai.TextRerankPipeline``::

    from openvino_llm.retrieval.rerank import RerankModel

    reranker = RerankModel("cross-encoder/ms-marco-MiniLM-L-6-v2")
    reranker.rerank("capital of France", ["Bananas are yellow.", "Paris is in France."])
    # [(1, 0.99...), (0, 0.0...)]: (index, score), best first

Scores are the model's relevance probabilities as OpenVINO GenAI computes them: the sigmoid of the
logit for a one-label cross-encoder (what sentence-transformers' ``CrossEncoder.predict`` returns for
such a model), the softmax probability of label 1 for a two-label one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..devices import check_device, compile_properties
from ..errors import InvalidParameterError, ModelNotFoundError
from .embeddings import (
    _check_positive_int,
    _check_text,
    _check_texts,
    _freeze,
    _load_error,
    _model_io,
    _read_json,
    _shared_pipeline,
    _SharedPipeline,
)

# TextRerankPipeline.Config.top_n defaults to 3 and cuts inside the pipeline; ask for everything
# and apply top_n here, after merging the batches.
_ALL = 2**31 - 1


def _model_type(folder: Path) -> str | None:
    config = _read_json(folder / "config.json")
    return config.get("model_type") if isinstance(config, dict) else None


class RerankModel:
    """A local OpenVINO cross-encoder: scores how well each document answers a query.

    No reranker ships with openvino-llm: pass a cross-encoder checkpoint (Hugging Face folder or hub
    id, exported once into the cache) or its OpenVINO IR folder.

    Install: ``pip install "openvino-llm[export]"``.

    Example::

        from openvino_llm.retrieval.rerank import RerankModel

        reranker = RerankModel("cross-encoder/ms-marco-MiniLM-L-6-v2", device="CPU", top_n=2)
        docs = ["Bananas are yellow.", "Paris is the capital of France.", "Lyon is in France."]
        for index, score in reranker.rerank("What is the capital of France?", docs):
            print(f"{score:.3f}  {docs[index]}")

    Args:
        model: a cross-encoder (``...ForSequenceClassification`` with one or two labels).
        device: OpenVINO device (``"AUTO"``, ``"CPU"``, ``"GPU"``, ``"NPU"``...).
        ov_config: OpenVINO compile properties, e.g. ``{"INFERENCE_PRECISION_HINT": "f32"}``.
        cache_dir: openvino-llm cache folder (exports and compiled models).
        top_n: how many results :meth:`rerank` returns by default (``None``: all of them).
        max_length: truncate each query + document pair to this many tokens (default: the tokenizer's limit).
        batch_size: query + document pairs per inference call.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "AUTO",
        ov_config: Mapping[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        top_n: int | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if model is None:
            raise InvalidParameterError(
                "RerankModel needs a model: no default reranker ships with openvino-llm. Pass a cross-encoder, "
                'e.g. RerankModel("cross-encoder/ms-marco-MiniLM-L-6-v2") or the path of its OpenVINO IR folder.'
            )
        self.top_n = _check_positive_int(top_n, "top_n", optional=True)
        self.max_length = _check_positive_int(max_length, "max_length", optional=True)
        self.batch_size: int = _check_positive_int(batch_size, "batch_size", optional=False)  # type: ignore[assignment]
        self.device = check_device(device)
        properties = compile_properties(ov_config, cache_dir)

        from ..models import resolve_model

        resolved = resolve_model(model, task="text-classification", cache_dir=cache_dir)
        self.path: Path = Path(resolved.path)
        self.model_name: str = resolved.name  # a GGUF file was refused: resolve_model only allows it for LLMs
        key = ("text-rerank", str(self.path.resolve()), self.device, _freeze(properties), self.max_length)
        self._shared = _shared_pipeline(key, lambda: self._load(properties))

    def _load(self, properties: dict[str, Any]) -> _SharedPipeline:
        import openvino_genai

        self._check_is_cross_encoder()
        config = openvino_genai.TextRerankPipeline.Config()
        config.top_n = _ALL
        if self.max_length is not None:
            config.max_length = self.max_length
        try:
            pipeline = openvino_genai.TextRerankPipeline(self.path, self.device, config, **properties)
        except RuntimeError as error:
            raise _load_error(
                "reranker",
                self.path,
                self.device,
                error,
                "Pass a cross-encoder (a Hugging Face text-classification checkpoint or its OpenVINO export).",
            ) from error
        return _SharedPipeline(pipeline)

    def _check_is_cross_encoder(self) -> None:
        """Refuse what TextRerankPipeline would load and score as garbage: embedding encoders and LLMs.

        A cross-encoder outputs ``logits`` of shape [batch, labels]; the one decoder family OpenVINO
        GenAI reranks with ([batch, tokens, vocab] logits) is Qwen3-Reranker (``model_type`` qwen3).
        """
        io = _model_io(self.path)
        logits = next((shape for names, shape in io.outputs if "logits" in names), None)
        rank = None if logits is None or logits.rank.is_dynamic else logits.rank.get_length()
        if rank == 2 or (rank == 3 and _model_type(self.path) == "qwen3"):
            return
        if logits is None:
            what = "an encoder without classification logits (an embedding model?)"
        elif io.stateful:
            what = "a text-generation model"
        else:
            what = f"a model with logits of shape {logits}"
        raise ModelNotFoundError(
            f"{self.path} is {what}, not a cross-encoder reranker. Pass a cross-encoder checkpoint "
            "(...ForSequenceClassification, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2) or its OpenVINO export; "
            "use EmbeddingModel for embedding models."
        )

    def __repr__(self) -> str:
        return f"RerankModel({self.model_name!r}, device={self.device!r}, top_n={self.top_n!r})"

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
        """``(index in documents, score)`` pairs best first; at most top_n (default: the constructor's, or all)."""
        query = _check_text(query, "query")
        docs = _check_texts(documents, "documents", "rerank")
        limit = _check_positive_int(top_n, "top_n", optional=True) or self.top_n
        scored: list[tuple[int, float]] = []
        for start in range(0, len(docs), self.batch_size):
            batch = docs[start : start + self.batch_size]
            results = self._shared.call(lambda p, b=batch: p.rerank(query, b))
            scored.extend((start + int(i), float(score)) for i, score in results)
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored[:limit] if limit is not None else scored

    async def arerank(self, query: str, documents: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
        """:meth:`rerank` in a worker thread: the event loop keeps running."""
        _check_text(query, "query")
        _check_texts(documents, "documents", "arerank")
        _check_positive_int(top_n, "top_n", optional=True)
        return await asyncio.to_thread(self.rerank, query, documents, top_n)


__all__ = ["RerankModel"]
