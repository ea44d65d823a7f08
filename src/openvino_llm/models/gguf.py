"""GGUF files: header and metadata reading, a cheap damage check, and the re-export of a GGUF to OpenVINO IR.

>>> read_gguf_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")["general.architecture"]  # doctest: +SKIP
'llama'
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ExportError, InvalidParameterError, ModelNotFoundError
from .ir import DETOKENIZER_FILE, TOKENIZER_FILE
from .options import WEIGHT_FORMATS, CompressionOptions
from .report import EXPORT_INSTALL_HINT, progress_enabled

# --------------------------------------------------------------------------------------------
# Header reader (no dependency on the `gguf` package)

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


def dequantize_gguf(gguf: Path, hf_dir: Path) -> Path:
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


def install_gguf_tokenizer(gguf: Path, out: Path) -> None:
    """Put the GGUF's tokenizer into ``out``: openvino-genai's conversion of it, and its chat template."""
    import openvino_genai

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


__all__ = [
    "check_gguf_export",
    "dequantize_gguf",
    "gguf_damage",
    "install_gguf_tokenizer",
    "is_gguf_file",
    "read_gguf_metadata",
]
