"""Speculative decoding on openvino-genai's continuous-batching pipeline: a draft model or prompt lookup.

Both propose a few tokens ahead that the main model then checks in one forward pass; the main model
keeps the tokens it would have chosen itself, so greedy output is the same as without speculation
(in exact precision; at reduced precision checking several tokens at once rounds differently).

- ``draft_model``: a smaller model of the same family (the same tokenizer) proposes the tokens.
  ``num_assistant_tokens`` is how many per step (default 5), or ``assistant_confidence_threshold``
  lets the draft stop proposing when its confidence drops below the threshold.
- ``prompt_lookup``: the proposals are copied from the prompt where its last ``max_ngram_size``
  tokens (default 3) occurred before: no second model, and a large gain on copy-heavy work
  (quoting a passage, editing code given in the prompt).

    >>> spec = make_speculation(prompt_lookup=True)
    >>> spec.mode, spec.num_assistant_tokens, spec.max_ngram_size
    ('prompt_lookup', 5, 3)
    >>> make_speculation() is None
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import openvino_genai as ov_genai

from ..errors import InvalidParameterError, OpenVINOLLMError

#: Tokens proposed per step when neither ``num_assistant_tokens`` nor a confidence threshold is given
#: (openvino-genai's samples use the same).
DEFAULT_NUM_ASSISTANT_TOKENS = 5
#: Longest n-gram prompt lookup matches.
DEFAULT_MAX_NGRAM_SIZE = 3

SpeculationMode = Literal["draft", "prompt_lookup"]

# Texts both tokenizers must split into the same tokens (on top of the same vocabulary and EOS).
_PROBES = (
    "Could you please tell me something about OpenVINO.GenAI?",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # 42\n",
    "  Leading spaces,\ttabs\tand\n\nnew lines; UPPER lower MiXeD 0123456789 ",
    "Grüße aus Zürich, naïve café, 東京, Москва, 🙂",
    '{"name": "multiply", "arguments": {"a": 6, "b": 7}}',
)


def check_num_assistant_tokens(value: Any) -> None:
    """``num_assistant_tokens`` is ``None`` or an int >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidParameterError(f"num_assistant_tokens must be an int >= 1, got {value!r}.")


def check_confidence_threshold(value: Any) -> None:
    """``assistant_confidence_threshold`` is ``None`` or a number in (0, 1]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameterError(f"assistant_confidence_threshold must be a number in (0, 1], got {value!r}.")
    if not 0 < value <= 1:
        raise InvalidParameterError(f"assistant_confidence_threshold={value!r} is out of range: it must be in (0, 1].")


@dataclass(frozen=True)
class Speculation:
    """How an engine speculates: the mode, its default knobs and, for a draft model, where it runs.

    ``num_assistant_tokens`` and ``assistant_confidence_threshold`` are the defaults of every request
    (a request's :class:`~openvino_llm.types.GenerationParams` may set either instead).
    """

    mode: SpeculationMode
    num_assistant_tokens: int | None = None
    assistant_confidence_threshold: float | None = None
    max_ngram_size: int | None = None
    draft_path: Path | None = None
    draft_name: str | None = None
    draft_device: str | None = None
    draft_properties: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """What makes two engines' speculation the same (part of the engine cache key)."""
        return json.dumps(
            {
                "mode": self.mode,
                "num_assistant_tokens": self.num_assistant_tokens,
                "assistant_confidence_threshold": self.assistant_confidence_threshold,
                "max_ngram_size": self.max_ngram_size,
                "draft_path": str(self.draft_path) if self.draft_path else None,
                "draft_device": self.draft_device,
                "draft_properties": dict(self.draft_properties),
            },
            sort_keys=True,
            default=str,
        )

    def with_draft(self, path: Path, name: str, device: str, properties: Mapping[str, Any]) -> Speculation:
        """This speculation with its draft model (an OpenVINO IR folder), compiled on ``device``.

        openvino-genai reads a draft model only as IR: a ``.gguf`` draft is refused with the command that
        re-exports it.
        """
        if not (path / "openvino_model.xml").is_file():
            raise InvalidParameterError(
                f"The draft model {name} is not an OpenVINO IR folder ({path}): openvino-genai loads a draft model "
                "only from IR. Re-export it once, e.g. `openvino-llm export model.gguf ./draft-ir --weight-format "
                "int8`, and pass draft_model='./draft-ir' (a Hugging Face folder or hub id is exported for you)."
            )
        return replace(self, draft_path=path, draft_name=name, draft_device=device, draft_properties=dict(properties))

    def pipeline_properties(self) -> dict[str, Any]:
        """The entries ``ContinuousBatchingPipeline``'s properties need for this mode."""
        if self.mode == "prompt_lookup":
            return {"prompt_lookup": True}
        if self.draft_path is None:
            raise OpenVINOLLMError("Speculative decoding needs its draft model (Speculation.with_draft).")
        return {
            "draft_model": ov_genai.draft_model(str(self.draft_path), self.draft_device or "", **self.draft_properties)
        }

    def apply(
        self,
        config: ov_genai.GenerationConfig,
        num_assistant_tokens: int | None = None,
        assistant_confidence_threshold: float | None = None,
    ) -> None:
        """Set a request's speculation knobs: the request's own values, else the engine's defaults."""
        if num_assistant_tokens is not None and assistant_confidence_threshold is not None:
            raise InvalidParameterError("Pass num_assistant_tokens or assistant_confidence_threshold, not both.")
        if assistant_confidence_threshold is not None and self.mode == "prompt_lookup":
            raise InvalidParameterError(
                "assistant_confidence_threshold needs a draft model; prompt lookup takes num_assistant_tokens."
            )
        if num_assistant_tokens is None and assistant_confidence_threshold is None:
            num_assistant_tokens = self.num_assistant_tokens
            assistant_confidence_threshold = self.assistant_confidence_threshold
        if assistant_confidence_threshold is not None:
            config.assistant_confidence_threshold = float(assistant_confidence_threshold)
            config.num_assistant_tokens = 0
        else:
            config.num_assistant_tokens = int(num_assistant_tokens or DEFAULT_NUM_ASSISTANT_TOKENS)
            config.assistant_confidence_threshold = 0.0
        if self.mode == "prompt_lookup":
            config.max_ngram_size = int(self.max_ngram_size or DEFAULT_MAX_NGRAM_SIZE)


def check_request_knobs(
    speculation: Speculation | None, num_assistant_tokens: int | None, assistant_confidence_threshold: float | None
) -> None:
    """A request may set speculation knobs only on an engine that speculates."""
    if speculation is None and (num_assistant_tokens is not None or assistant_confidence_threshold is not None):
        raise InvalidParameterError(
            "num_assistant_tokens / assistant_confidence_threshold need speculative decoding: load the engine "
            "with draft_model=... or prompt_lookup=True."
        )


def make_speculation(
    *,
    draft: bool = False,
    prompt_lookup: bool = False,
    num_assistant_tokens: int | None = None,
    assistant_confidence_threshold: float | None = None,
    max_ngram_size: int | None = None,
) -> Speculation | None:
    """Validate the knobs and return the :class:`Speculation` (``None``: the engine does not speculate).

    With ``draft=True`` the draft model itself is added later by :meth:`Speculation.with_draft`.
    """
    if not isinstance(prompt_lookup, bool):
        raise InvalidParameterError(f"prompt_lookup must be True or False, got {prompt_lookup!r}.")
    check_num_assistant_tokens(num_assistant_tokens)
    check_confidence_threshold(assistant_confidence_threshold)
    if max_ngram_size is not None and (
        isinstance(max_ngram_size, bool) or not isinstance(max_ngram_size, int) or max_ngram_size < 1
    ):
        raise InvalidParameterError(f"max_ngram_size must be an int >= 1, got {max_ngram_size!r}.")
    if num_assistant_tokens is not None and assistant_confidence_threshold is not None:
        raise InvalidParameterError(
            "Pass num_assistant_tokens (a fixed number of proposed tokens) or assistant_confidence_threshold "
            "(the draft proposes while it is confident enough), not both."
        )
    if prompt_lookup and draft:
        raise InvalidParameterError("Pass draft_model or prompt_lookup=True, not both: they are two ways to speculate.")
    if prompt_lookup:
        if assistant_confidence_threshold is not None:
            raise InvalidParameterError(
                "assistant_confidence_threshold needs a draft model; prompt lookup takes num_assistant_tokens."
            )
        return Speculation(
            "prompt_lookup",
            num_assistant_tokens=num_assistant_tokens or DEFAULT_NUM_ASSISTANT_TOKENS,
            max_ngram_size=max_ngram_size or DEFAULT_MAX_NGRAM_SIZE,
        )
    if max_ngram_size is not None:
        raise InvalidParameterError("max_ngram_size is a prompt lookup setting: pass it with prompt_lookup=True.")
    if not draft:
        if num_assistant_tokens is not None or assistant_confidence_threshold is not None:
            raise InvalidParameterError(
                "num_assistant_tokens / assistant_confidence_threshold need speculative decoding: pass "
                "draft_model=... or prompt_lookup=True."
            )
        return None
    if assistant_confidence_threshold is None and num_assistant_tokens is None:
        num_assistant_tokens = DEFAULT_NUM_ASSISTANT_TOKENS
    return Speculation(
        "draft",
        num_assistant_tokens=num_assistant_tokens,
        assistant_confidence_threshold=assistant_confidence_threshold,
    )


def _load_tokenizer(path: Path, what: str) -> ov_genai.Tokenizer:
    try:
        return ov_genai.Tokenizer(str(path))
    except Exception as e:
        raise OpenVINOLLMError(f"Could not read the tokenizer of the {what} {path}: {e}") from e


def check_same_tokenizer(main: Path, draft: Path, main_name: str = "", draft_name: str = "") -> None:
    """Raise :class:`InvalidParameterError` unless ``draft`` tokenizes like ``main`` (the same family).

    Only the tokenizers are read (no model is compiled): the vocabularies must give every token they
    share the same id and share at least 99 % of the smaller one, the end-of-sequence ids must match,
    and a few probe texts (prose, code, whitespace, non-Latin scripts, JSON) must give the same tokens.
    """
    main_name, draft_name = main_name or str(main), draft_name or str(draft)
    a, b = _load_tokenizer(main, "model"), _load_tokenizer(draft, "draft model")
    problems: list[str] = []
    if a.get_eos_token_id() != b.get_eos_token_id():
        problems.append(f"end-of-sequence token {a.get_eos_token_id()} vs {b.get_eos_token_id()}")
    va, vb = a.get_vocab(), b.get_vocab()
    shared = va.keys() & vb.keys()
    moved = sorted((t for t in shared if va[t] != vb[t]), key=lambda t: va[t])
    if moved:
        problems.append(f"{len(moved)} tokens have other ids (e.g. {moved[0]!r}: {va[moved[0]]} vs {vb[moved[0]]})")
    if len(shared) < 0.99 * min(len(va), len(vb)):
        problems.append(f"vocabularies of {len(va)} and {len(vb)} tokens share only {len(shared)}")
    for text in _PROBES:
        ids_a = a.encode(text, add_special_tokens=False).input_ids.data.tolist()
        ids_b = b.encode(text, add_special_tokens=False).input_ids.data.tolist()
        if ids_a != ids_b:
            problems.append(f"{text[:24]!r}... gives other tokens")
            break
    if problems:
        raise InvalidParameterError(
            f"The draft model {draft_name} does not share the tokenizer of {main_name} ({'; '.join(problems)}). "
            "A draft model must be a smaller model of the same family (the same tokenizer), e.g. "
            "Qwen2.5-0.5B-Instruct as the draft of Qwen2.5-1.5B-Instruct."
        )


__all__ = [
    "DEFAULT_MAX_NGRAM_SIZE",
    "DEFAULT_NUM_ASSISTANT_TOKENS",
    "Speculation",
    "check_confidence_threshold",
    "check_num_assistant_tokens",
    "check_request_knobs",
    "check_same_tokenizer",
    "make_speculation",
]
