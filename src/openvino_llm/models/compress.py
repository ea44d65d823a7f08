"""Weight compression of OpenVINO IR with NNCF (data-free, works on ``ov.Model``, no torch needed).

from openvino_llm.models.compress import compress_ir
compress_ir("model-ov", "model-ov-int4", CompressionOptions("int4", group_size=64))
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import ExportError, InvalidParameterError, ModelNotFoundError, OpenVINOLLMError
from .cache import MARKER_FILE, atomic_directory
from .ir import IR_MODEL_FILE, ir_file_damage, model_xmls
from .options import WEIGHT_FORMATS, CompressionOptions
from .report import (
    EXPORT_INSTALL_HINT,
    ExportReport,
    Progress,
    ProgressCallback,
    check_output_dir,
    failure_message,
    library_verbosity,
    output_errors,
    weights_size,
)

logger = logging.getLogger("openvino_llm")


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
    check_ir_compression(ir_dir, options)
    check_output_dir(out_dir)
    with output_errors(out_dir), atomic_directory(out_dir) as tmp:
        report = compress_into(ir_dir, tmp, options, progress=progress)
    report = report.moved_to(out_dir)
    logger.info("Compressed %s: %s", ir_dir, report.summary())
    return report


def check_ir_compression(ir_dir: Path, options: CompressionOptions) -> None:
    """Refuse, before any work, an IR compression that cannot succeed (damaged IR, no or data-aware format)."""
    if not isinstance(options, CompressionOptions):
        raise InvalidParameterError(f"options must be a CompressionOptions, got {type(options).__name__}.")
    if not (ir_dir / IR_MODEL_FILE).is_file():
        raise ModelNotFoundError(f"{ir_dir} is not an OpenVINO IR folder: it has no {IR_MODEL_FILE}.")
    for xml in model_xmls(ir_dir):
        problem = ir_file_damage(xml)
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


def compress_into(
    ir_dir: Path, out: Path, options: CompressionOptions, *, progress: ProgressCallback | None
) -> ExportReport:
    """Compress ``ir_dir`` into the (existing, empty) folder ``out``; no atomicity here (see the cache)."""
    import openvino as ov

    start = time.perf_counter()
    xmls = model_xmls(ir_dir)
    skip = {p.name for p in xmls} | {p.with_suffix(".bin").name for p in xmls} | {MARKER_FILE}
    bar = Progress(f"Compressing {ir_dir.name} to {options.weight_format}", ["copy", *[p.name for p in xmls]], progress)
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
        with library_verbosity():
            for xml in xmls:
                bar.stage(xml.name)
                model = core.read_model(xml)
                if options.weight_format in ("int8", "int4"):
                    model = nncf_compress(model, options, xml)
                ov.save_model(model, out / xml.name, compress_to_fp16=options.weight_format == "fp16")
                del model
    except (OpenVINOLLMError, KeyboardInterrupt):
        raise
    except Exception as e:  # a damaged input IR, or a failed write (disk full, permission)
        raise ExportError(failure_message(str(ir_dir), "compression", options, e, out)) from e
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


def nncf_compress(model: Any, options: CompressionOptions, xml: Path) -> Any:
    """``model`` (an ``ov.Model``) with its weights compressed by NNCF to int8/int4 as ``options`` say (no torch)."""
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
        raise ExportError(failure_message(str(xml), "compression", options, e)) from e


__all__ = ["CompressionOptions", "check_ir_compression", "compress_into", "compress_ir", "nncf_compress"]
