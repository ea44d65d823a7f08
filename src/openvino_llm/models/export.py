"""Export Hugging Face checkpoints to OpenVINO IR, compress weights, and manage the export cache.

Export goes through optimum-intel (``main_export``, which also converts the tokenizer with
openvino-tokenizers); compression of an existing IR folder goes through ``nncf.compress_weights``.
A GGUF file can be re-exported too: transformers dequantizes it exactly, optimum-intel/NNCF
export and compress that, and the tokenizer comes from openvino-genai's own GGUF conversion.
Torch, optimum and NNCF are imported inside the functions that need them, so GGUF files and IR
folders work without the ``export`` extra installed.

Every result is first written to a temporary folder next to its destination and renamed when
complete, so an interrupted export never leaves a folder that looks valid.

    from openvino_llm.models.export import CompressionOptions, export_model, compress_ir
    report = export_model("path/to/hf-checkpoint", "model-ov", options=CompressionOptions("int8"))
    print(report.summary())
    compress_ir("model-ov", "model-ov-int4", CompressionOptions("int4", group_size=64))
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from filelock import FileLock, Timeout

from ..errors import ExportError, InvalidParameterError, ModelNotFoundError, OpenVINOLLMError

logger = logging.getLogger("openvino_llm")

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

EXPORT_INSTALL_HINT = 'pip install "openvino-llm[export]"'
MARKER_FILE = "openvino_llm_export.json"
IR_MODEL_FILE = "openvino_model.xml"
TOKENIZER_FILE = "openvino_tokenizer.xml"
DETOKENIZER_FILE = "openvino_detokenizer.xml"
_WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
_TMP_PREFIX = ".tmp-"

ProgressCallback = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Options


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


# --------------------------------------------------------------------------------------------
# Reports, sizes, progress


@dataclass(frozen=True)
class ExportReport:
    """What an export or compression produced: where, how big before/after, and how long it took.

    >>> r = ExportReport(Path("out"), "src", "text-generation", CompressionOptions("int8"), 4096, 1024, 1.5)
    >>> r.summary()
    'int8: 4.0 KB -> 1.0 KB in 1.5 s -> out'
    """

    path: Path
    source: str
    task: str
    options: CompressionOptions
    size_before: int
    size_after: int
    seconds: float

    def summary(self) -> str:
        """One line such as ``int4: 540.2 MB -> 180.1 MB in 41.3 s -> /path``."""
        return (
            f"{self.options.describe()}: {format_size(self.size_before)} -> {format_size(self.size_after)} "
            f"in {self.seconds:.1f} s -> {self.path}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": self.source,
            "task": self.task,
            "options": self.options.as_dict(),
            "size_before": self.size_before,
            "size_after": self.size_after,
            "seconds": round(self.seconds, 3),
        }


def format_size(n: int) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def weights_size(path: Path) -> int:
    """Bytes of model weights in a folder (or one file): safetensors/bin/... minus tokenizer models."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for f in path.rglob("*"):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES and "tokenizer" not in f.name:
            total += f.stat().st_size
    return total


def dir_size(path: Path) -> int:
    """Bytes of all files under ``path``."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal, and never when ``$CI`` is set."""
    if os.environ.get("CI"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """Stage bar (tqdm) on a terminal; calls the user's callback at each stage either way."""

    def __init__(self, desc: str, stages: Sequence[str], callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.bar = None
        if progress_enabled():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(stages), desc=desc, unit="step", leave=False, file=sys.stderr)

    def stage(self, name: str) -> None:
        if self.bar is not None:
            if self.bar.n or self.bar.postfix:
                self.bar.update(1)
            self.bar.set_postfix_str(name)
        if self.callback is not None:
            self.callback(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _library_verbosity() -> Iterator[None]:
    """Silence transformers/optimum/NNCF chatter and their own progress bars when not on a terminal."""
    if progress_enabled():
        yield
        return
    names = ("transformers", "optimum", "nncf", "huggingface_hub", "torch")
    with contextlib.suppress(ImportError):
        import nncf  # noqa: F401  (it sets its logger level on import: import it before changing it)
    levels = {n: logging.getLogger(n).level for n in names}
    env_old = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    restore: list[Callable[[], None]] = []
    try:
        warn_ctx = warnings.catch_warnings()
        warn_ctx.__enter__()
        restore.append(lambda: warn_ctx.__exit__(None, None, None))
        warnings.simplefilter("ignore")
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with contextlib.suppress(Exception):
            import transformers.utils.logging as tlog

            if tlog.is_progress_bar_enabled():
                tlog.disable_progress_bar()
                restore.append(tlog.enable_progress_bar)
            old = tlog.get_verbosity()
            tlog.set_verbosity_error()
            restore.append(lambda: tlog.set_verbosity(old))
        yield
    finally:
        for fn in reversed(restore):
            with contextlib.suppress(Exception):
                fn()
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)
        if env_old is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = env_old


# --------------------------------------------------------------------------------------------
# Atomic folders


@contextlib.contextmanager
def atomic_directory(target: Path, *, extra_prefix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``target``; rename it to ``target`` on success.

    On any exception (KeyboardInterrupt included) the temporary folder is deleted and nothing
    appears at ``target``. ``target`` must not exist already (or be an empty folder).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{extra_prefix}{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()
            else:
                raise ExportError(f"{target} appeared while exporting; it was left untouched.")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _output_errors(out_dir: Path) -> Iterator[None]:
    """Turn a failure to write the output folder (missing permission, not a folder, disk full) into ExportError."""
    try:
        yield
    except OpenVINOLLMError:
        raise
    except OSError as e:
        what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
        raise ExportError(
            f"Cannot write {out_dir} ({what}); nothing was left there. Choose an output folder you can write to, "
            "with enough free space."
        ) from e


def _check_output_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidParameterError(
            f"Output {str(out_dir)!r} already exists and is not empty: choose a new folder or delete it first."
        )


# --------------------------------------------------------------------------------------------
# Export (optimum-intel) and compression (NNCF)


def _import_optimum_export() -> tuple[Any, Any, Any]:
    try:
        import torch  # noqa: F401
        from optimum.exporters.openvino.__main__ import _main_quantize, main_export
        from optimum.intel.openvino.configuration import OVConfig
    except ImportError as e:
        raise ExportError(
            f"Exporting a Hugging Face model to OpenVINO needs optimum-intel and torch ({e.name or e} is missing): "
            f"{EXPORT_INSTALL_HINT}. Or pass an OpenVINO IR folder or a .gguf file, which need neither."
        ) from e
    return main_export, _main_quantize, OVConfig


def check_ir_folder(folder: Path, task: str = "text-generation") -> None:
    """Raise :class:`ModelNotFoundError` if ``folder`` lacks the IR files ``task`` needs."""
    need = [IR_MODEL_FILE, TOKENIZER_FILE] + ([DETOKENIZER_FILE] if task == "text-generation" else [])
    missing = [name for name in need if not (folder / name).is_file()]
    if missing:
        hint = (
            "Convert the tokenizer with `convert_tokenizer` from openvino_tokenizers "
            "(with_detokenizer=True) and save both next to the model, or re-export the checkpoint."
            if IR_MODEL_FILE not in missing
            else "Export the checkpoint with `openvino-llm export SOURCE OUT`."
        )
        raise ModelNotFoundError(f"{folder} is not a complete OpenVINO IR folder for {task}: missing {missing}. {hint}")


def ir_damage(folder: Path, task: str = "text-generation") -> str | None:
    """What is wrong with the files of an IR folder, or ``None`` when they look loadable.

    Cheap checks, no model is compiled: the files ``task`` needs exist, every ``.xml`` parses as an
    OpenVINO IR (``<net>``), and its ``.bin`` holds every weight the XML points to (a truncated copy
    or an interrupted write fails here). Results are cached per file size and mtime.

    >>> ir_damage(Path("my-model-ov"))  # doctest: +SKIP
    'openvino_model.bin is truncated: 295022 bytes, but the weights need 590045'
    """
    folder = Path(folder)
    need = [IR_MODEL_FILE, TOKENIZER_FILE] + ([DETOKENIZER_FILE] if task == "text-generation" else [])
    for name in need:
        if not (folder / name).is_file():
            return f"{name} is missing"
    for name in need:
        xml = folder / name
        bin_file = xml.with_suffix(".bin")
        try:
            stamp = (str(xml), _file_stamp(xml), _file_stamp(bin_file))
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
        problem = _xml_damage(*stamp)
        if problem is not None:
            return problem
    return None


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=256)
def _xml_damage(xml_path: str, xml_stamp: tuple[int, int] | None, bin_stamp: tuple[int, int] | None) -> str | None:
    """The damage of one IR file pair; the stamps (size, mtime) are the cache key."""
    xml = Path(xml_path)
    weights_end = 0
    root_seen = False
    try:
        for event, elem in ElementTree.iterparse(xml, events=("start", "end")):
            if not root_seen:
                if elem.tag != "net":
                    return f"{xml.name} is XML but not an OpenVINO IR model (root element <{elem.tag}>, not <net>)"
                root_seen = True
            if event == "end":
                if elem.tag == "data" and "offset" in elem.attrib and "size" in elem.attrib:
                    weights_end = max(weights_end, int(elem.attrib["offset"]) + int(elem.attrib["size"]))
                elif elem.tag == "layer":
                    elem.clear()
    except (ElementTree.ParseError, ValueError) as e:
        return f"{xml.name} is not a valid OpenVINO IR file (XML error: {e})"
    except OSError as e:
        return f"{xml.name} cannot be read ({e.strerror or e})"
    bin_name = xml.with_suffix(".bin").name
    if weights_end > 0:
        if bin_stamp is None:
            return f"{bin_name} is missing (it holds the weights of {xml.name})"
        if bin_stamp[0] < weights_end:
            return f"{bin_name} is truncated: {bin_stamp[0]} bytes, but the weights need {weights_end}"
    return None


def export_model(
    source: str | Path,
    out_dir: str | Path,
    *,
    task: str = "text-generation",
    options: CompressionOptions | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: ProgressCallback | None = None,
) -> ExportReport:
    """Export a Hugging Face checkpoint (folder or downloaded hub snapshot) or a GGUF file to an OpenVINO IR folder.

    The tokenizer (and detokenizer, for text generation) are converted with openvino-tokenizers
    (for a GGUF file: by openvino-genai). A GGUF file needs a ``weight_format``: its weights are
    dequantized exactly (transformers) and compressed again by NNCF.
    ``out_dir`` must not exist (or be empty); it appears only when the export is complete.
    ``progress`` is called with the name of each stage (``"export"``, ``"compress"``, ``"verify"``).

    >>> export_model("my-llama-checkpoint", "my-llama-ov", options=CompressionOptions("int8"))  # doctest: +SKIP
    """
    task = check_task(task)
    options = options or CompressionOptions()
    out_dir = Path(out_dir).expanduser().resolve()
    if is_gguf_file(source):
        check_gguf_export(Path(source).expanduser(), task, options)
    _check_output_dir(out_dir)
    model_id = None
    if not Path(source).expanduser().exists():
        from .resolve import fetch_hub_snapshot, is_hub_id

        if not is_hub_id(str(source)):
            raise ModelNotFoundError(f"Export source {str(source)!r} does not exist and is not a hub id.")
        model_id = str(source)
        source = fetch_hub_snapshot(model_id, revision)  # fails fast without network
        revision = None
    with _output_errors(out_dir), atomic_directory(out_dir) as tmp:
        report = _export_into(
            str(Path(source).expanduser()),
            tmp,
            task=task,
            options=options,
            trust_remote_code=trust_remote_code,
            revision=revision,
            progress=progress,
            model_id=model_id,
        )
    report = _replace_path(report, out_dir)
    logger.info("Exported %s: %s", model_id or source, report.summary())
    return report


def _replace_path(report: ExportReport, path: Path) -> ExportReport:
    return ExportReport(
        path, report.source, report.task, report.options, report.size_before, report.size_after, report.seconds
    )


def _export_into(
    source: str,
    out: Path,
    *,
    task: str,
    options: CompressionOptions,
    trust_remote_code: bool,
    revision: str | None,
    progress: ProgressCallback | None,
    model_id: str | None = None,
) -> ExportReport:
    """Export ``source`` into the (existing, empty) folder ``out``. No atomicity here."""
    main_export, main_quantize, OVConfig = _import_optimum_export()
    start = time.perf_counter()
    gguf = Path(source) if is_gguf_file(source) else None
    if gguf is not None:
        check_gguf_export(gguf, task, options)
    quant = options.optimum_quantization_config(model_id or source)
    if quant is not None:
        ov_config = OVConfig(quantization_config=quant)
    elif options.weight_format in ("fp16", "fp32"):
        ov_config = OVConfig(dtype=options.weight_format)
    else:
        ov_config = None
    optimum_task = OPTIMUM_TASKS[task]
    gguf_stages = ("dequantize", "export") if gguf is not None else ("export",)
    stages = [*gguf_stages, *(["compress"] if quant else []), *(["tokenizer"] if gguf else []), "verify"]
    bar = _Progress(f"Exporting {Path(source).name or source}", stages, progress)
    export_from = source
    try:
        with _library_verbosity():
            try:
                if gguf is not None:
                    bar.stage("dequantize")
                    export_from = str(_dequantize_gguf(gguf, out / ".dequantized"))
                bar.stage("export")
                main_export(
                    model_name_or_path=export_from,
                    output=out,
                    task=optimum_task,
                    trust_remote_code=trust_remote_code,
                    revision=revision or "main",
                    ov_config=ov_config,
                    convert_tokenizer=gguf is None,
                    library_name="transformers",
                )
                if quant is not None:
                    bar.stage("compress")
                    main_quantize(
                        model_name_or_path=export_from,
                        task=optimum_task,
                        library_name="transformers",
                        quantization_config=ov_config.quantization_config,
                        output=out,
                        cache_dir=_hf_hub_cache(),
                        trust_remote_code=trust_remote_code,
                        revision=revision or "main",
                    )
                if gguf is not None:
                    shutil.rmtree(out / ".dequantized", ignore_errors=True)
                    bar.stage("tokenizer")
                    _install_gguf_tokenizer(gguf, out)
            except (ExportError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise ExportError(_export_failure_message(source, task, options, e, out)) from e
            bar.stage("verify")
            try:
                check_ir_folder(out, task)
            except ModelNotFoundError as e:
                raise ExportError(
                    f"Export of {source} produced no usable IR: {e}. The tokenizer could not be converted by "
                    "openvino-tokenizers (see the warnings above)."
                ) from e
    finally:
        bar.close()
    return ExportReport(
        path=out,
        source=source,
        task=task,
        options=options,
        size_before=weights_size(Path(source)) if Path(source).exists() else 0,
        size_after=weights_size(out),
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------
# GGUF re-export
#
# openvino-genai reads a GGUF file directly, but not always exactly: it maps Q4_1's per-block
# float minimum to an integer u4 zero point, which moves every weight of the block (measured on
# SmolLM2-135M Q4_1: perplexity 60 against llama.cpp's 46 on the same file; Q4_0 and Q8_0 are
# exact). Re-exporting goes through the exact dequantization of transformers instead, and lets
# NNCF choose OpenVINO's own int8/int4 layout (larger int4 groups also decode faster on CPU).

#: Files optimum-intel may write from a tokenizer it made up for the dequantized folder (which has
#: none): they do not describe the GGUF's tokenizer, so they are removed.
_GUESSED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")
#: Above this GGUF size the dequantized copy is kept in float16 rather than float32 (memory).
_GGUF_FP32_LIMIT = 1_500_000_000


def is_gguf_file(source: str | os.PathLike[str]) -> bool:
    """True for an existing file named ``*.gguf``."""
    path = Path(source).expanduser()
    return path.suffix.lower() == ".gguf" and path.is_file()


def check_gguf_export(gguf: Path, task: str, options: CompressionOptions) -> None:
    """Refuse, before any work, a GGUF re-export that cannot succeed (task, weight format, int4 group size)."""
    from .resolve import read_gguf_metadata

    if task != "text-generation":
        raise InvalidParameterError(
            f"A GGUF file can only be exported for text-generation, not {task}: pass a checkpoint folder instead."
        )
    if options.weight_format is None:
        raise InvalidParameterError(
            f"{gguf.name} is already quantized: load it directly, or pass a weight_format "
            f"({', '.join(WEIGHT_FORMATS)}) to re-export it with OpenVINO's own compression."
        )
    meta = read_gguf_metadata(gguf)
    group = options.group_size if options.group_size is not None else 128
    if options.weight_format != "int4" or group == -1:
        return
    arch = meta.get("general.architecture")
    sizes = sorted(
        {v for k in ("embedding_length", "feed_forward_length") if isinstance(v := meta.get(f"{arch}.{k}"), int)}
    )
    if any(size % group for size in sizes):
        fits = [g for g in (32, 64, 96, 128, 192, 256) if all(size % g == 0 for size in sizes)]
        raise InvalidParameterError(
            f"int4 group_size {group} does not divide the layer sizes of {gguf.name} ({', '.join(map(str, sizes))}):"
            f" use {', '.join(map(str, fits)) + ' or ' if fits else ''}-1 (per channel)."
        )


def _dequantize_gguf(gguf: Path, hf_dir: Path) -> Path:
    """Write the GGUF's weights, dequantized, as a Hugging Face checkpoint folder (no tokenizer)."""
    try:
        import accelerate  # noqa: F401  (transformers needs both to read GGUF files)
        import gguf as _gguf  # noqa: F401
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        raise ExportError(
            f"Re-exporting a GGUF file needs transformers with gguf and accelerate ({e.name or e} is missing): "
            f"{EXPORT_INSTALL_HINT}. Or load the .gguf file directly, which needs none of them."
        ) from e
    dtype = torch.float32 if gguf.stat().st_size < _GGUF_FP32_LIMIT else torch.float16
    with _quiet_gguf_progress():
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    model.save_pretrained(hf_dir)
    del model
    return hf_dir


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """transformers' GGUF reader draws a tqdm bar whatever its settings: disable it where bars are off."""
    module: Any = None
    with contextlib.suppress(ImportError):
        import transformers.modeling_gguf_pytorch_utils as module
    bar = getattr(module, "tqdm", None)
    if progress_enabled() or bar is None:
        yield
        return
    module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar


def _install_gguf_tokenizer(gguf: Path, out: Path) -> None:
    """Put the GGUF's tokenizer into ``out``: openvino-genai's conversion of it, and its chat template."""
    import openvino_genai

    from .resolve import read_gguf_metadata

    for name in _GUESSED_TOKENIZER_FILES:
        (out / name).unlink(missing_ok=True)
    # openvino-genai writes its converted IR and tokenizer next to the .gguf it loads: a link in a scratch folder
    with tempfile.TemporaryDirectory(dir=out, prefix=".gguf-tokenizer-") as scratch:
        link = Path(scratch) / gguf.name
        try:
            link.symlink_to(gguf.resolve())
        except OSError:
            shutil.copyfile(gguf, link)
        pipe = openvino_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
        del pipe
        for xml in (TOKENIZER_FILE, DETOKENIZER_FILE):
            for f in (Path(scratch) / xml, (Path(scratch) / xml).with_suffix(".bin")):
                if not f.is_file():
                    raise ExportError(f"openvino-genai did not convert the tokenizer of {gguf.name}: no {f.name}.")
                shutil.copyfile(f, out / f.name)
    template = read_gguf_metadata(gguf).get("tokenizer.chat_template")
    if isinstance(template, str):
        (out / "chat_template.jinja").write_text(template, encoding="utf-8")


def _hf_hub_cache() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
_WRITE_FAILURE_TEXT = (
    "iostream error",  # OpenVINO's serializer when a write fails
    "no space left",
    "file too large",
    "disk quota",
    "permission denied",
    "read-only file system",
    "failed to write",
    "cannot write",
)


def _is_write_failure(e: BaseException) -> bool:
    seen: BaseException | None = e
    for _ in range(8):  # the exception and its causes
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS:
            return True
        if any(t in str(seen).lower() for t in _WRITE_FAILURE_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _write_failure_hint(out: Path) -> str:
    folder = out.parent
    try:
        free = f"{format_size(shutil.disk_usage(folder).free)} free there"
    except OSError:
        free = "free space unknown"
    return (
        f" Writing the result into {folder} failed ({free}): free disk space or check write permission, "
        "or choose another folder (cache_dir=... / --cache-dir / $OPENVINO_LLM_CACHE for the cache). "
        "Nothing was left half-written."
    )


def _export_failure_message(
    source: str, task: str, options: CompressionOptions, e: Exception, out: Path | None = None
) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = f"Exporting {source} for {task} with {options.describe()} failed: {type(e).__name__}: {text}"
    low = str(e).lower()
    if out is not None and _is_write_failure(e):
        msg += _write_failure_hint(out)
    elif "group" in low and ("size" in low or "channel" in low):
        msg += " Choose a group_size that divides the layers' input sizes (e.g. 32 or 64), or -1 for per-channel."
    elif "trust_remote_code" in low:
        msg += (
            " This model needs trust_remote_code=True (--trust-remote-code on the command line), only for "
            "repositories whose code you trust."
        )
    elif "weights only load failed" in low or "weights_only" in low:
        msg += (
            " Its weights are a pickle (.bin/.pt) with more than tensors in it, which could run code when "
            "loaded; it is refused. Use a safetensors version of the model, or convert it on a machine and "
            "with code you trust."
        )
    return msg


def compress_ir(
    ir_dir: str | Path,
    out_dir: str | Path,
    options: CompressionOptions,
    *,
    progress: ProgressCallback | None = None,
) -> ExportReport:
    """Compress the weights of an existing OpenVINO IR folder with NNCF into ``out_dir``.

    Tokenizer, detokenizer and config files are copied unchanged. Only data-free compression is
    possible here (``awq``/``scale_estimation``/``dataset`` need the original checkpoint).
    ``out_dir`` must not exist (or be empty); it appears only when complete.

    >>> compress_ir("model-ov", "model-ov-int8", CompressionOptions("int8"))  # doctest: +SKIP
    """
    ir_dir = Path(ir_dir).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    _validate_ir_compression(ir_dir, options)
    _check_output_dir(out_dir)
    with _output_errors(out_dir), atomic_directory(out_dir) as tmp:
        report = _compress_into(ir_dir, tmp, options, progress=progress)
    report = _replace_path(report, out_dir)
    logger.info("Compressed %s: %s", ir_dir, report.summary())
    return report


def _validate_ir_compression(ir_dir: Path, options: CompressionOptions) -> None:
    if not isinstance(options, CompressionOptions):
        raise InvalidParameterError(f"options must be a CompressionOptions, got {type(options).__name__}.")
    if not (ir_dir / IR_MODEL_FILE).is_file():
        raise ModelNotFoundError(f"{ir_dir} is not an OpenVINO IR folder: it has no {IR_MODEL_FILE}.")
    for xml in _model_xmls(ir_dir):
        problem = _xml_damage(str(xml), _file_stamp(xml), _file_stamp(xml.with_suffix(".bin")))
        if problem is not None:
            raise ModelNotFoundError(
                f"{ir_dir} is a damaged OpenVINO IR folder: {problem}. Export the model again, or copy the folder "
                "again from an intact source."
            )
    if options.weight_format is None:
        raise InvalidParameterError(
            f"Compressing an IR folder needs a weight_format: one of {', '.join(WEIGHT_FORMATS)}."
        )
    if options.is_data_aware:
        raise InvalidParameterError(
            "awq / scale_estimation / dataset need the original Hugging Face checkpoint: export from it instead "
            "of compressing an IR folder (only data-free compression works on IR)."
        )


def _model_xmls(ir_dir: Path) -> list[Path]:
    return sorted(p for p in ir_dir.glob("*.xml") if "tokenizer" not in p.name)


def _compress_into(
    ir_dir: Path, out: Path, options: CompressionOptions, *, progress: ProgressCallback | None
) -> ExportReport:
    import openvino as ov

    start = time.perf_counter()
    xmls = _model_xmls(ir_dir)
    skip = {p.name for p in xmls} | {p.with_suffix(".bin").name for p in xmls} | {MARKER_FILE}
    bar = _Progress(
        f"Compressing {ir_dir.name} to {options.weight_format}", ["copy", *[p.name for p in xmls]], progress
    )
    try:
        bar.stage("copy")
        for item in ir_dir.iterdir():
            if item.name in skip or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, out / item.name)
            else:
                shutil.copy2(item, out / item.name)
        core = ov.Core()
        with _library_verbosity():
            for xml in xmls:
                bar.stage(xml.name)
                model = core.read_model(xml)
                if options.weight_format in ("int8", "int4"):
                    model = _nncf_compress(model, options, xml)
                ov.save_model(model, out / xml.name, compress_to_fp16=options.weight_format == "fp16")
                del model
    except (OpenVINOLLMError, KeyboardInterrupt):
        raise
    except Exception as e:  # a damaged input IR, or a failed write (disk full, permission)
        raise ExportError(_export_failure_message(str(ir_dir), "compression", options, e, out)) from e
    finally:
        bar.close()
    return ExportReport(
        path=out,
        source=str(ir_dir),
        task="",
        options=options,
        size_before=weights_size(ir_dir),
        size_after=weights_size(out),
        seconds=time.perf_counter() - start,
    )


def _nncf_compress(model: Any, options: CompressionOptions, xml: Path) -> Any:
    try:
        import nncf
    except ImportError as e:
        raise ExportError(f"Weight compression needs NNCF: {EXPORT_INSTALL_HINT} (or pip install nncf).") from e
    sym = options.sym
    if options.weight_format == "int8":
        kwargs: dict[str, Any] = {
            "mode": nncf.CompressWeightsMode.INT8_SYM if sym else nncf.CompressWeightsMode.INT8_ASYM
        }
    else:
        kwargs = {
            "mode": nncf.CompressWeightsMode.INT4_SYM if sym else nncf.CompressWeightsMode.INT4_ASYM,
            "group_size": 128 if options.group_size is None else options.group_size,
            "ratio": 1.0 if options.ratio is None else options.ratio,
        }
    try:
        return nncf.compress_weights(model, **kwargs)
    except Exception as e:
        raise ExportError(_export_failure_message(str(xml), "compression", options, e)) from e


# --------------------------------------------------------------------------------------------
# Cache entries


def check_task(task: str) -> str:
    """Validate a task name (``text-generation``, ``feature-extraction``, ``text-classification``)."""
    if task not in OPTIMUM_TASKS:
        raise InvalidParameterError(f"Unknown task {task!r}: use one of {', '.join(OPTIMUM_TASKS)}.")
    return task


def package_versions() -> dict[str, str]:
    """Versions that change what an export produces (part of the cache key)."""
    out = {}
    for dist in ("openvino", "openvino-tokenizers", "optimum-intel", "nncf"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def cache_key(name: str, parts: Mapping[str, Any]) -> str:
    """A readable, collision-safe folder name: ``<name>-<short task>-<format>-<hash>``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:48] or "model"
    task = {"text-generation": "llm", "feature-extraction": "embed", "text-classification": "rerank"}.get(
        str(parts.get("task")), "model"
    )
    wf = (parts.get("options") or {}).get("weight_format") or "default"
    return f"{slug}-{task}-{wf}-{digest}"


def exports_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "exports"


def _lock_path(cache_dir: Path, key: str) -> Path:
    locks = Path(cache_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{key}.lock"


@dataclass(frozen=True)
class CacheEntry:
    """One completed export in the cache (see ``openvino-llm cache list``).

    >>> [entry.key for entry in list_cache(Path("~/.cache/openvino-llm").expanduser())]  # doctest: +SKIP
    ['SmolLM2-360M-Instruct-llm-int4-3f2a9c0d1e2b4a5c']
    """

    key: str
    path: Path
    name: str
    source: str
    task: str
    options: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    created: float = 0.0


def cached_entry(cache_dir: Path, key: str) -> Path | None:
    """The folder of a complete cache entry, or ``None``."""
    path = exports_dir(cache_dir) / key
    return path if (path / MARKER_FILE).is_file() else None


def build_cached(
    cache_dir: Path,
    key: str,
    metadata: Mapping[str, Any],
    build: Callable[[Path], ExportReport],
) -> tuple[Path, bool]:
    """Return the entry ``key``, building it with ``build(tmp_folder)`` if absent. -> (path, built).

    A file lock per key serializes processes exporting the same model; the result is built in a
    temporary folder and renamed, with the marker file written last, so a crash leaves no entry.
    """
    found = cached_entry(cache_dir, key)
    if found is not None:
        return found, False
    try:
        return _build_locked(Path(cache_dir), key, metadata, build)
    except OpenVINOLLMError:
        raise
    except OSError as e:  # cannot create the folder, the lock, the temporary folder or the marker
        raise ExportError(_cache_write_message(Path(cache_dir), e)) from e


def _cache_write_message(cache_dir: Path, e: OSError) -> str:
    what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
    return (
        f"Cannot write to the openvino-llm cache folder {cache_dir} ({what}); nothing was cached. Choose a "
        "writable folder with enough free space: cache_dir=... in Python, --cache-dir on the command line, "
        "or $OPENVINO_LLM_CACHE."
    )


def _build_locked(
    cache_dir: Path, key: str, metadata: Mapping[str, Any], build: Callable[[Path], ExportReport]
) -> tuple[Path, bool]:
    lock = FileLock(str(_lock_path(cache_dir, key)))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        logger.info("Waiting for another process exporting %s ...", key)
        lock.acquire()
    try:
        found = cached_entry(cache_dir, key)
        if found is not None:
            return found, False
        root = exports_dir(cache_dir)
        target = root / key
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{_TMP_PREFIX}{key}-*"):  # left by a killed process (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # a folder without marker: not ours to trust
            shutil.rmtree(target)
        with atomic_directory(target) as tmp:
            report = build(tmp)
            meta = {
                **metadata,
                "key": key,
                "created": time.time(),
                "size_bytes": dir_size(tmp),
                "report": _replace_path(report, target).as_dict(),
            }
            (tmp / MARKER_FILE).write_text(json.dumps(meta, indent=2, default=str))
        logger.info("Cached %s: %s", key, _replace_path(report, target).summary())
        return target, True
    finally:
        lock.release()


def list_cache(cache_dir: Path) -> list[CacheEntry]:
    """The complete exports in ``cache_dir``, newest first."""
    entries = []
    root = exports_dir(cache_dir)
    if not root.is_dir():
        return []
    for path in root.iterdir():
        marker = path / MARKER_FILE
        if path.name.startswith(".") or not marker.is_file():
            continue
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        entries.append(
            CacheEntry(
                key=path.name,
                path=path,
                name=str(meta.get("name", "")),
                source=str(meta.get("source", "")),
                task=str(meta.get("task", "")),
                options=dict(meta.get("options") or {}),
                size_bytes=int(meta.get("size_bytes", 0)),
                created=float(meta.get("created", 0.0)),
            )
        )
    return sorted(entries, key=lambda e: e.created, reverse=True)


def clear_cache(cache_dir: Path, key: str | None = None, *, all_entries: bool = False) -> list[str]:
    """Delete cache content; returns what was removed.

    ``key``: that entry. ``all_entries``: every export plus the compiled-model cache. Neither:
    only leftovers of interrupted exports (temporary folders whose export is not running).
    """
    cache_dir = Path(cache_dir)
    root = exports_dir(cache_dir)
    removed: list[str] = []
    if key is not None:
        if "/" in key or key.startswith(".") or not key:
            raise InvalidParameterError(f"{key!r} is not a cache key; see `openvino-llm cache list`.")
        path = root / key
        if not path.is_dir():
            raise InvalidParameterError(f"No cache entry {key!r} in {root}; see `openvino-llm cache list`.")
        with FileLock(str(_lock_path(cache_dir, key))):
            shutil.rmtree(path)
        return [key]
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.name.startswith(_TMP_PREFIX):
                entry_key = _key_of_tmp(path.name)
                lock = FileLock(str(_lock_path(cache_dir, entry_key))) if entry_key else None
                try:
                    if lock is not None:
                        lock.acquire(timeout=0)
                except Timeout:
                    continue  # an export is running
                try:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
                finally:
                    if lock is not None:
                        lock.release()
            elif all_entries and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    if all_entries:
        compiled = cache_dir / "compiled"
        if compiled.is_dir():
            shutil.rmtree(compiled, ignore_errors=True)
            removed.append("compiled")
    return removed


def _key_of_tmp(name: str) -> str | None:
    # ".tmp-<key>-<random>" where key ends with a 16-hex digest
    m = re.match(rf"^{re.escape(_TMP_PREFIX)}(.+-[0-9a-f]{{16}})-[^-]+$", name)
    return m.group(1) if m else None


__all__ = [
    "NAMED_DATASETS",
    "OPTIMUM_TASKS",
    "WEIGHT_FORMATS",
    "CacheEntry",
    "CompressionOptions",
    "ExportReport",
    "build_cached",
    "cache_key",
    "check_gguf_export",
    "check_ir_folder",
    "clear_cache",
    "compress_ir",
    "export_model",
    "format_size",
    "is_gguf_file",
    "list_cache",
    "make_options",
]
