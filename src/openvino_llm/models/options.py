"""What a conversion should produce: weight format and NNCF settings, and the tasks models are exported for.

Every converter (optimum-intel export, GGUF re-export, IR compression) and the cache key take a
:class:`CompressionOptions`; nothing here imports torch, optimum or NNCF at module level.

    >>> from openvino_llm.models.options import CompressionOptions, make_options
    >>> make_options("int4", None).describe()
    'int4'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError

#: Weight formats accepted by :class:`CompressionOptions` (``None`` = optimum-intel's default for the size).
WEIGHT_FORMATS = ("fp32", "fp16", "int8", "int4")
#: Tasks openvino-llm exports models for, and the optimum-intel task each maps to.
OPTIMUM_TASKS = {
    "text-generation": "text-generation-with-past",
    "feature-extraction": "feature-extraction",
    "text-classification": "text-classification",
}
#: Calibration datasets optimum-intel knows by name (they are downloaded from the hub).
NAMED_DATASETS = ("wikitext2", "c4", "c4-new", "auto", "gsm8k")


@dataclass(frozen=True)
class CompressionOptions:
    """Weight format and compression settings for an export or :func:`compress_ir`.

    - ``weight_format``: ``"fp32"``, ``"fp16"``, ``"int8"``, ``"int4"``, or ``None`` for optimum-intel's
      default choice (int8 for models above ~1B parameters, else the original precision).
    - ``group_size`` (int4): weights per quantization group, ``-1`` = per channel (default 128).
      It must divide the layers' input sizes.
    - ``ratio`` (int4): share of layers in int4, in (0, 1]; the rest stay int8 (default 1.0).
    - ``sym``: symmetric quantization (no zero point).
    - ``awq`` / ``scale_estimation`` (int4): data-aware algorithms; they need ``dataset``.
    - ``dataset``: calibration data: a name optimum-intel knows (``"wikitext2"``, ``"c4"``, ...; needs
      the network), a list of texts, or the path of a text file with one sample per line.

    Invalid combinations raise :class:`InvalidParameterError` on construction.

    >>> CompressionOptions("int4", group_size=64, ratio=0.8).weight_format
    'int4'
    """

    weight_format: str | None = None
    group_size: int | None = None
    ratio: float | None = None
    sym: bool = False
    awq: bool = False
    scale_estimation: bool = False
    dataset: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        wf = self.weight_format
        if wf is not None:
            if not isinstance(wf, str) or wf.strip().lower() not in WEIGHT_FORMATS:
                raise InvalidParameterError(
                    f"Unknown weight_format {wf!r}: use one of {', '.join(WEIGHT_FORMATS)} "
                    "(or None for the default of the model size)."
                )
            object.__setattr__(self, "weight_format", wf.strip().lower())
            wf = self.weight_format
        if self.group_size is not None:
            gs = self.group_size
            if isinstance(gs, bool) or not isinstance(gs, int) or (gs <= 0 and gs != -1):
                raise InvalidParameterError(
                    f"group_size must be a positive int (e.g. 32, 64, 128) or -1 for per-channel, got {gs!r}."
                )
        if self.ratio is not None:
            r = self.ratio
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0.0 < float(r) <= 1.0):
                raise InvalidParameterError(
                    f"ratio must be in (0, 1] (the share of layers compressed to int4), got {r!r}."
                )
            object.__setattr__(self, "ratio", float(r))
        for flag in ("sym", "awq", "scale_estimation"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidParameterError(f"{flag} must be True or False, got {getattr(self, flag)!r}.")
        object.__setattr__(self, "dataset", _normalize_dataset(self.dataset))

        int4_only = [
            name
            for name, is_set in (
                ("group_size", self.group_size is not None),
                ("ratio", self.ratio is not None),
                ("awq", self.awq),
                ("scale_estimation", self.scale_estimation),
            )
            if is_set
        ]
        if wf != "int4" and int4_only:
            raise InvalidParameterError(
                f"{', '.join(int4_only)} only apply to weight_format='int4' (got weight_format={wf!r}); "
                "int8 is always per-channel with ratio 1."
            )
        if wf not in ("int4", "int8") and (self.sym or self.dataset is not None):
            what = "sym" if self.sym else "dataset"
            raise InvalidParameterError(
                f"{what} only applies to integer weight formats: set weight_format='int8' or 'int4' "
                f"(got weight_format={wf!r})."
            )
        if (self.awq or self.scale_estimation) and self.dataset is None:
            algo = "awq" if self.awq else "scale_estimation"
            raise InvalidParameterError(
                f"{algo} is data-aware: pass dataset= (a list of texts, a text file, or a name such as 'wikitext2')."
            )
        if wf == "int8" and self.dataset is not None:
            raise InvalidParameterError(
                "dataset has no effect on int8 compression: drop it or use weight_format='int4'."
            )

    @property
    def is_data_aware(self) -> bool:
        return self.dataset is not None

    def as_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict (also part of the cache key)."""
        d = asdict(self)
        if isinstance(d["dataset"], tuple):
            d["dataset"] = list(d["dataset"])
        return d

    def describe(self) -> str:
        """A short human description, e.g. ``int4 (group 64, ratio 0.8, sym)``."""
        if self.weight_format is None:
            return "default precision"
        extras = []
        if self.group_size is not None:
            extras.append(f"group {self.group_size}")
        if self.ratio is not None:
            extras.append(f"ratio {self.ratio:g}")
        for flag in ("sym", "awq", "scale_estimation"):
            if getattr(self, flag):
                extras.append(flag)
        if self.dataset is not None:
            extras.append(
                "dataset " + (self.dataset if isinstance(self.dataset, str) else f"{len(self.dataset)} texts")
            )
        return self.weight_format + (f" ({', '.join(extras)})" if extras else "")

    def optimum_quantization_config(self, model_id: str | None = None) -> dict[str, Any] | None:
        """The optimum-intel ``OVWeightQuantizationConfig`` arguments for int8/int4 (``None`` otherwise).

        Mirrors ``optimum-cli export openvino --weight-format ...``: for int4 with no other
        option, optimum-intel's tuned default for a known model id is used when there is one.
        """
        if self.weight_format not in ("int8", "int4"):
            return None
        if self.weight_format == "int8":
            return {"bits": 8, "sym": self.sym, "group_size": -1, "ratio": 1.0, "dtype": "int8"}
        only_format = self == CompressionOptions(self.weight_format)
        if only_format and model_id is not None:
            with contextlib.suppress(Exception):
                from optimum.intel.openvino.configuration import get_default_quantization_config

                default = get_default_quantization_config(model_id, "int4")
                if default:
                    return dict(default)
        config: dict[str, Any] = {
            "bits": 4,
            "sym": self.sym,
            "group_size": 128 if self.group_size is None else self.group_size,
            "ratio": 1.0 if self.ratio is None else self.ratio,
            "dtype": "int4",
            "quant_method": "awq" if self.awq else "default",
        }
        if self.scale_estimation:
            config["scale_estimation"] = True
        if self.dataset is not None:
            config["dataset"] = self.dataset if isinstance(self.dataset, str) else list(self.dataset)
        return config


def _normalize_dataset(dataset: Any) -> str | tuple[str, ...] | None:
    if dataset is None:
        return None
    if isinstance(dataset, (str, os.PathLike)):
        text = os.fspath(dataset)
        if text in NAMED_DATASETS:
            return text
        path = Path(text).expanduser()
        if path.is_file():
            lines = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            if not lines:
                raise InvalidParameterError(f"dataset file {text!r} has no non-empty lines.")
            return lines
        raise InvalidParameterError(
            f"dataset {text!r} is neither a dataset name ({', '.join(NAMED_DATASETS)}) nor an existing text file "
            "(one calibration sample per line)."
        )
    if isinstance(dataset, Sequence) and all(isinstance(t, str) for t in dataset):
        texts = tuple(t for t in dataset if t.strip())
        if not texts:
            raise InvalidParameterError("dataset must contain at least one non-empty text.")
        return texts
    raise InvalidParameterError(
        f"dataset must be a dataset name, a path to a text file or a list of texts, got {type(dataset).__name__}."
    )


def make_options(weight_format: str | None = None, compression: CompressionOptions | None = None) -> CompressionOptions:
    """Combine a ``weight_format`` shortcut with full :class:`CompressionOptions` (they must agree)."""
    if compression is not None and not isinstance(compression, CompressionOptions):
        raise InvalidParameterError(
            f"compression must be a CompressionOptions, got {type(compression).__name__}; "
            "e.g. CompressionOptions('int4', group_size=64)."
        )
    if compression is None:
        return CompressionOptions(weight_format)
    if weight_format is not None and CompressionOptions(weight_format).weight_format != compression.weight_format:
        raise InvalidParameterError(
            f"weight_format={weight_format!r} contradicts compression.weight_format={compression.weight_format!r}: "
            "pass only one of them."
        )
    return compression


def check_task(task: str) -> str:
    """Validate a task name (``text-generation``, ``feature-extraction``, ``text-classification``)."""
    if task not in OPTIMUM_TASKS:
        raise InvalidParameterError(f"Unknown task {task!r}: use one of {', '.join(OPTIMUM_TASKS)}.")
    return task


__all__ = [
    "NAMED_DATASETS",
    "OPTIMUM_TASKS",
    "WEIGHT_FORMATS",
    "CompressionOptions",
    "check_task",
    "make_options",
]
