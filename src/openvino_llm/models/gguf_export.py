"""Re-export a GGUF file to an OpenVINO IR folder, without torch.

1. Every tensor is written into a scratch GGUF of types openvino-genai reads exactly: F16, Q8_0 and
   Q4_0 tensors are copied as they are; the others are dequantized exactly (gguf-py's numpy
   reference) and, following the file's own precision, re-quantized to Q8_0 (5-8-bit types and
   Q4_1: 8-bit blocks of 32 hold them almost exactly) or kept in F16 (2-4-bit K-quants and float
   types).
2. openvino-genai converts that scratch GGUF to an OpenVINO model (``enable_save_ov_model``).
3. NNCF compresses the F16 weights of the 2-4-bit tensors to int4 (or, with an explicit
   ``weight_format``, every weight to that format), on the ``ov.Model``: no torch.
4. The tokenizer, detokenizer and chat template are built from the GGUF's metadata
   (:mod:`.gguf_tokenizer`; in a second thread while 1-3 run), and ``config.json`` /
   ``generation_config.json`` from its header.

    reexport_gguf_into(Path("model.Q4_K_M.gguf"), Path("out"), CompressionOptions(), progress=None)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ExportError, InvalidParameterError, OpenVINOLLMError
from .compress import nncf_compress
from .gguf import (
    DIRECT_TYPES,
    GGUF_ARCHITECTURES,
    NEAREST_FORMAT,
    GGUFFile,
    GGUFTensor,
    all_int8,
    check_gguf_types,
    gguf_sampling_defaults,
    plan_gguf,
    read_gguf,
)
from .gguf_tokenizer import check_gguf_tokenizer, install_gguf_tokenizer
from .ir import IR_MODEL_FILE, check_ir_folder
from .options import CompressionOptions
from .report import ExportReport, Progress, ProgressCallback, failure_message, library_verbosity, weights_size

logger = logging.getLogger("openvino_llm")

_SCRATCH = ".gguf-scratch"
_F32, _F16, _Q4_0, _Q8_0 = 0, 1, 2, 8
# llama.cpp's general.file_type values ("mostly" that type)
_FILE_TYPE_F16, _FILE_TYPE_Q4_0, _FILE_TYPE_Q8_0 = 1, 2, 7
_INT4_GROUPS = (128, 64, 32)


def check_gguf_export(gguf: Path | GGUFFile, task: str, options: CompressionOptions) -> GGUFFile:
    """Refuse, before any work, a GGUF re-export that cannot succeed: task, tensor types, architecture,
    tokenizer, int4 group size. Returns the header (vocabulary included)."""
    if task != "text-generation":
        raise InvalidParameterError(
            f"A GGUF file can only be used for text-generation, not {task}: pass an IR folder or checkpoint."
        )
    header = gguf if isinstance(gguf, GGUFFile) and "tokenizer.ggml.tokens" in gguf.metadata else None
    header = header or read_gguf(gguf.path if isinstance(gguf, GGUFFile) else gguf, arrays=True)
    name = header.path.name
    check_gguf_types(header)
    arch = header.metadata.get("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise InvalidParameterError(
            f"{name} is a {arch!r} model; openvino-genai builds {', '.join(GGUF_ARCHITECTURES)} models from GGUF "
            "files. Pass the model's Hugging Face checkpoint instead."
        )
    check_gguf_tokenizer(header.metadata, name)
    if options.weight_format == "int4" and options.group_size not in (None, -1):
        sizes = _input_sizes(header)
        if any(size % options.group_size for size in sizes):
            fits = [g for g in (32, 64, 96, 128, 192, 256) if all(size % g == 0 for size in sizes)]
            raise InvalidParameterError(
                f"int4 group_size {options.group_size} does not divide the layer sizes of {name} "
                f"({', '.join(map(str, sizes))}): use {', '.join(map(str, fits)) + ' or ' if fits else ''}-1 "
                "(per channel)."
            )
    if options.is_data_aware:
        raise InvalidParameterError(
            "awq / scale_estimation / dataset need the original Hugging Face checkpoint: a GGUF file is re-exported "
            "with data-free compression only."
        )
    return header


def needs_nncf(header: GGUFFile, options: CompressionOptions) -> bool:
    """Whether the re-export compresses weights with NNCF (int8 or int4 asked; auto: 2-4-bit tensors, or all int8)."""
    if options.weight_format is not None:
        return options.weight_format in ("int8", "int4")
    if all_int8(header.weight_types()):
        return True
    return any(
        t.is_weight and NEAREST_FORMAT[t.type_name] == "int4" and t.type_name not in DIRECT_TYPES
        for t in header.tensors
    )


def require_gguf_export(header: GGUFFile, options: CompressionOptions) -> None:
    """Raise :class:`ExportError` naming what to install when a package the re-export needs is missing."""
    needed = ["gguf", "transformers", "tokenizers", *(["nncf"] if needs_nncf(header, options) else [])]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"Re-exporting {header.path.name} needs {', '.join(missing)} (no torch): pip install {' '.join(missing)}. "
            "Or load a GGUF of types openvino-genai reads directly (F16, Q8_0, Q4_0)."
        )


def _input_sizes(header: GGUFFile) -> list[int]:
    """The input sizes of the model's matrices (embedding and feed-forward lengths)."""
    arch = header.metadata.get("general.architecture")
    keys = ("embedding_length", "feed_forward_length")
    return sorted({v for k in keys if isinstance(v := header.metadata.get(f"{arch}.{k}"), int)})


def int4_group_size(header: GGUFFile) -> int:
    """The largest of 128, 64, 32 that divides every input size, else -1 (per channel)."""
    sizes = _input_sizes(header)
    return next((g for g in _INT4_GROUPS if all(size % g == 0 for size in sizes)), -1)


def reexport_gguf_into(
    gguf: Path, out: Path, options: CompressionOptions, *, progress: ProgressCallback | None
) -> ExportReport:
    """Re-export ``gguf`` into the (existing, empty) folder ``out``; no atomicity here (see the cache).

    ``options.weight_format`` ``None`` means automatic: each tensor to the format nearest to its own
    (:data:`.gguf.NEAREST_FORMAT`); otherwise every weight is dequantized and compressed to that format.
    """
    start = time.perf_counter()
    header = check_gguf_export(gguf, "text-generation", options)
    require_gguf_export(header, options)
    auto = options.weight_format is None
    compress = needs_nncf(header, options)
    per_channel = auto and all_int8(header.weight_types())  # then staged in F16 like an explicit int8 re-export
    bar = Progress(
        f"Re-exporting {gguf.name}",
        ["dequantize", "convert", *(["compress"] if compress else []), "tokenizer"],
        progress,
    )
    scratch = out / _SCRATCH
    try:
        scratch.mkdir()
        with library_verbosity(), ThreadPoolExecutor(1, thread_name_prefix="openvino-llm-tokenizer") as pool:
            # the tokenizer is built meanwhile: it is mostly Python, the conversion below mostly native code
            tokenizer = pool.submit(install_gguf_tokenizer, header.metadata, out, gguf.name)
            bar.stage("dequantize")
            staged = write_readable_gguf(header, scratch / gguf.name, auto=auto and not per_channel)
            bar.stage("convert")
            model = _convert(staged)
            if compress:
                bar.stage("compress")
                if per_channel:
                    compression = CompressionOptions("int8")
                elif auto:
                    compression = CompressionOptions("int4", group_size=int4_group_size(header))
                elif options.weight_format == "int4" and options.group_size is None:
                    compression = CompressionOptions(
                        "int4", group_size=int4_group_size(header), ratio=options.ratio, sym=options.sym
                    )
                else:
                    compression = options
                model = nncf_compress(model, compression, gguf)
            import openvino as ov

            ov.save_model(model, out / IR_MODEL_FILE, compress_to_fp16=options.weight_format != "fp32")
            del model
            shutil.rmtree(scratch)
            bar.stage("tokenizer")
            tokenizer.result()
            write_model_configs(header, out)
    except (OpenVINOLLMError, KeyboardInterrupt):
        raise
    except Exception as e:
        what = "the nearest OpenVINO formats" if auto else None
        raise ExportError(failure_message(str(gguf), "text-generation", options, e, out, what=what)) from e
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    check_ir_folder(out, "text-generation")
    return ExportReport(
        path=out,
        source=str(gguf),
        task="text-generation",
        options=CompressionOptions(plan_gguf(header).weight_format) if auto else options,
        size_before=gguf.stat().st_size,
        size_after=weights_size(out),
        seconds=time.perf_counter() - start,
    )


def _target_type(tensor: GGUFTensor, auto: bool) -> int:
    """The type ``tensor`` gets in the scratch GGUF."""
    if not tensor.is_weight:
        return tensor.ggml_type if tensor.ggml_type in (_F32, _F16) else _F32
    if not auto:
        return _F16
    if tensor.type_name in DIRECT_TYPES:
        return tensor.ggml_type
    return _Q8_0 if NEAREST_FORMAT[tensor.type_name] == "int8" else _F16


def write_readable_gguf(header: GGUFFile, path: Path, *, auto: bool) -> Path:
    """Write ``header``'s file again with only tensor types openvino-genai reads exactly (see the module doc).

    The key/value section is copied byte for byte; the tensors are converted one at a time, so memory
    holds one tensor, not the model.
    """
    import gguf as gguf_py
    import numpy as np

    source = np.memmap(header.path, dtype=np.uint8, mode="r")
    plan = [(t, _target_type(t, auto)) for t in header.tensors]
    align = header.alignment
    with path.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(plan), header.n_kv))
        with header.path.open("rb") as src:
            src.seek(header.kv_start)
            kv = bytearray(src.read(header.kv_end - header.kv_start))
        if "general.file_type" in header.scalar_offsets:  # openvino-genai reads the file type: make it say the truth
            at, fmt = header.scalar_offsets["general.file_type"]
            types = {new for _, new in plan}
            file_type = _FILE_TYPE_Q8_0 if _Q8_0 in types else _FILE_TYPE_Q4_0 if _Q4_0 in types else _FILE_TYPE_F16
            struct.pack_into(fmt, kv, at - header.kv_start, file_type)
        f.write(kv)
        offset = 0
        for tensor, new_type in plan:
            name = tensor.name.encode()
            f.write(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(tensor.dims)))
            f.write(b"".join(struct.pack("<Q", d) for d in tensor.dims) + struct.pack("<IQ", new_type, offset))
            offset = _aligned(offset + GGUFTensor(tensor.name, tensor.dims, new_type, 0).n_bytes, align)
        f.write(b"\0" * (_aligned(f.tell(), align) - f.tell()))
        for tensor, new_type in plan:
            raw = source[header.data_start + tensor.offset : header.data_start + tensor.offset + tensor.n_bytes]
            if new_type == tensor.ggml_type:
                f.write(raw.tobytes())
            else:
                rows = tensor.n_elements // tensor.dims[0]
                kind = gguf_py.GGMLQuantizationType(tensor.ggml_type)
                values = gguf_py.quants.dequantize(raw.reshape(rows, -1), kind).astype(np.float32, copy=False)
                if new_type == _Q8_0:
                    data = gguf_py.quants.quantize(values, gguf_py.GGMLQuantizationType.Q8_0)
                else:
                    data = values.astype(np.float16 if new_type == _F16 else np.float32, copy=False)
                f.write(data.tobytes())
            f.write(b"\0" * (_aligned(f.tell(), align) - f.tell()))
    del source
    return path


def _aligned(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _convert(staged: Path) -> Any:
    """openvino-genai's OpenVINO model of a GGUF of exactly-read types (it writes it next to the file)."""
    import openvino as ov
    import openvino_genai

    pipe = openvino_genai.LLMPipeline(str(staged), "CPU", enable_save_ov_model=True)
    del pipe
    xml = staged.parent / IR_MODEL_FILE
    if not xml.is_file():
        raise ExportError(f"openvino-genai did not convert {staged.name} to an OpenVINO model (no {IR_MODEL_FILE}).")
    return ov.Core().read_model(xml)


def write_model_configs(header: GGUFFile, out: Path) -> None:
    """``config.json`` and ``generation_config.json`` from the GGUF header: context window, eos/bos, sampling."""
    meta = header.metadata
    arch = meta.get("general.architecture")
    config: dict[str, Any] = {"model_type": arch, "gguf_file": header.path.name}
    if isinstance(context := meta.get(f"{arch}.context_length"), int):
        config["max_position_embeddings"] = context
    if isinstance(name := meta.get("general.name"), str):
        config["_name_or_path"] = name
    generation: dict[str, Any] = {}
    for key in ("bos", "eos", "padding"):
        value = meta.get(f"tokenizer.ggml.{key}_token_id")
        if isinstance(value, int):
            field = "pad_token_id" if key == "padding" else f"{key}_token_id"
            config[field] = generation[field] = value
    generation.update(gguf_sampling_defaults(meta))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))


__all__ = [
    "check_gguf_export",
    "int4_group_size",
    "needs_nncf",
    "reexport_gguf_into",
    "require_gguf_export",
    "write_model_configs",
    "write_readable_gguf",
]
