"""Export a Hugging Face checkpoint (a folder or a hub id), or a GGUF file, to an OpenVINO IR folder.

A checkpoint goes through optimum-intel (``main_export``, which also converts the tokenizer with
openvino-tokenizers) and, for int8/int4, its NNCF quantization; a GGUF file through the torch-free
re-export of :mod:`.gguf_export`. Torch and optimum are imported inside the functions that need
them, so GGUF files and IR folders work without the ``export`` extra.
The result is written to a temporary folder next to its destination and renamed when complete.

    from openvino_llm.models import CompressionOptions, export_model
    report = export_model("path/to/hf-checkpoint", "model-ov", options=CompressionOptions("int8"))
    print(report.summary())
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..errors import ExportError, ModelNotFoundError
from .cache import atomic_directory
from .gguf import is_gguf_file
from .gguf_export import check_gguf_export, reexport_gguf_into, require_gguf_export
from .hub import fetch_hub_snapshot, is_hub_id
from .ir import check_ir_folder
from .options import OPTIMUM_TASKS, CompressionOptions, check_task
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


def require_optimum_export() -> tuple[Any, Any, Any]:
    """optimum-intel's ``main_export``, ``_main_quantize`` and ``OVConfig``, or ExportError with the install."""
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

    The tokenizer (and detokenizer, for text generation) are converted with openvino-tokenizers.
    A GGUF file is dequantized exactly and each weight goes to the OpenVINO format nearest to its
    own, or with a ``weight_format`` every weight to that format (no torch; see :mod:`.gguf_export`).
    ``out_dir`` must not exist (or be empty); it appears only when the export is complete.
    ``progress`` is called with the name of each stage (``"export"``, ``"compress"``, ``"verify"``).

    >>> export_model("my-llama-checkpoint", "my-llama-ov", options=CompressionOptions("int8"))  # doctest: +SKIP
    """
    task = check_task(task)
    options = options or CompressionOptions()
    out_dir = Path(out_dir).expanduser().resolve()
    gguf = Path(source).expanduser().resolve() if is_gguf_file(source) else None
    if gguf is not None:
        require_gguf_export(check_gguf_export(gguf, task, options), options)
    check_output_dir(out_dir)
    if gguf is not None:
        with output_errors(out_dir), atomic_directory(out_dir) as tmp:
            report = reexport_gguf_into(gguf, tmp, options, progress=progress)
        report = report.moved_to(out_dir)
        logger.info("Exported %s: %s", gguf, report.summary())
        return report
    model_id = None
    if not Path(source).expanduser().exists():
        if not is_hub_id(str(source)):
            raise ModelNotFoundError(f"Export source {str(source)!r} does not exist and is not a hub id.")
        model_id = str(source)
        source = fetch_hub_snapshot(model_id, revision)  # fails fast without network
        revision = None
    with output_errors(out_dir), atomic_directory(out_dir) as tmp:
        report = export_into(
            str(Path(source).expanduser()),
            tmp,
            task=task,
            options=options,
            trust_remote_code=trust_remote_code,
            revision=revision,
            progress=progress,
            model_id=model_id,
        )
    report = report.moved_to(out_dir)
    logger.info("Exported %s: %s", model_id or source, report.summary())
    return report


def export_into(
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
    """Export the checkpoint ``source`` into the (existing, empty) folder ``out``. No atomicity here."""
    main_export, main_quantize, OVConfig = require_optimum_export()
    start = time.perf_counter()
    quant = options.optimum_quantization_config(model_id or source)
    if quant is not None:
        ov_config = OVConfig(quantization_config=quant)
    elif options.weight_format in ("fp16", "fp32"):
        ov_config = OVConfig(dtype=options.weight_format)
    else:
        ov_config = None
    optimum_task = OPTIMUM_TASKS[task]
    stages = ["export", *(["compress"] if quant else []), "verify"]
    bar = Progress(f"Exporting {Path(source).name or source}", stages, progress)
    try:
        with library_verbosity():
            try:
                bar.stage("export")
                main_export(
                    model_name_or_path=source,
                    output=out,
                    task=optimum_task,
                    trust_remote_code=trust_remote_code,
                    revision=revision or "main",
                    ov_config=ov_config,
                    convert_tokenizer=True,  # optimum-intel's default is False: without it no tokenizer IRs
                    library_name="transformers",
                )
                if quant is not None:
                    bar.stage("compress")
                    main_quantize(
                        model_name_or_path=source,
                        task=optimum_task,
                        library_name="transformers",
                        quantization_config=ov_config.quantization_config,
                        output=out,
                        cache_dir=_hf_hub_cache(),
                        trust_remote_code=trust_remote_code,
                        revision=revision or "main",
                    )
            except (ExportError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise ExportError(failure_message(source, task, options, e, out)) from e
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


def _hf_hub_cache() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


__all__ = ["export_into", "export_model", "require_optimum_export"]
