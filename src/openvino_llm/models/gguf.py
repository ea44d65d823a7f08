"""GGUF files: the header (metadata and tensor table), a cheap damage check, and what to do with a file.

openvino-genai 2026.4 reads a GGUF's weights exactly only when they are F16, Q8_0 or Q4_0 (1-D
tensors in F32): such files load directly. It reads Q4_1 inexactly (each block's float minimum
becomes an integer zero point) and Q6_K slightly inexactly, and refuses the rest (BF16, F32
matrices, Q5_0, Q5_1, Q2_K ... Q5_K), so those files are re-exported once into the cache
(:mod:`.gguf_export`), to the OpenVINO format nearest to the file's own: :func:`plan_gguf` decides.
The reader here needs neither the ``gguf`` package nor openvino-genai.

>>> read_gguf_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")["general.architecture"]  # doctest: +SKIP
'llama'
>>> plan_gguf(read_gguf("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")).weight_format  # doctest: +SKIP
'int8'
"""

from __future__ import annotations

import functools
import io
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InvalidParameterError, ModelNotFoundError

# --------------------------------------------------------------------------------------------
# Tensor types

#: ggml tensor type id -> (name, elements per block, bytes per block); bytes 0 = layout not known here.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 0),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 0),
    16: ("IQ2_XXS", 256, 0),
    17: ("IQ2_XS", 256, 0),
    18: ("IQ3_XXS", 256, 0),
    19: ("IQ1_S", 256, 0),
    20: ("IQ4_NL", 32, 0),
    21: ("IQ3_S", 256, 0),
    22: ("IQ2_S", 256, 0),
    23: ("IQ4_XS", 256, 0),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 0),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 0),
    35: ("TQ2_0", 256, 0),
    39: ("MXFP4", 32, 0),
}

#: Weight types openvino-genai reads exactly (measured against gguf-py's dequantization): loaded directly.
DIRECT_TYPES = ("F16", "Q8_0", "Q4_0")
#: Weight types re-exported (dequantized exactly by gguf-py), with the OpenVINO format that keeps llama.cpp's
#: accuracy on them: 5-8-bit types -> int8; Q4_1 and Q4_K -> int8 too (int4 would round Q4_1's block minimum
#: again, and OpenVINO's int4 groups cannot hold Q4_K's 6-bit per-32 scales and minimums: int4 cost 1-6 %
#: perplexity against llama.cpp on the same Qwen2.5-Coder 0.5B/1.5B files, int8 none; docs/PERFORMANCE.md);
#: 2-3-bit types -> int4; float types -> fp16 (openvino-genai cannot read F32 or BF16 matrices).
NEAREST_FORMAT: dict[str, str] = {
    "F32": "fp16",
    "F16": "fp16",
    "BF16": "fp16",
    "Q8_0": "int8",
    "Q6_K": "int8",
    "Q5_K": "int8",
    "Q5_0": "int8",
    "Q5_1": "int8",
    "Q4_1": "int8",
    "Q4_0": "int4",
    "Q4_K": "int8",
    "Q3_K": "int4",
    "Q2_K": "int4",
}


def all_int8(types: Iterable[str]) -> bool:
    """Whether every one of these weight types' nearest format is int8: the automatic re-export is then NNCF's
    int8 per channel, not 8-bit blocks of 32 (as exact as llama.cpp on the Qwen2.5-Coder 0.5B/1.5B files, perplexity
    within 0.6 %, and 1.15-1.35x faster to decode than blocks; docs/PERFORMANCE.md)."""
    return all(NEAREST_FORMAT[t] == "int8" for t in types)


#: Why a type is not loaded directly (for the log line).
_NOT_DIRECT_WHY = {
    "Q4_1": "openvino-genai reads Q4_1 inexactly (it rounds each block's minimum)",
    "Q6_K": "openvino-genai reads Q6_K inexactly",
}
#: Architectures openvino-genai builds from a GGUF.
GGUF_ARCHITECTURES = ("llama", "qwen2", "qwen3")


def type_name(ggml_type: int) -> str:
    """``12`` -> ``"Q4_K"`` (``"type 99"`` for an id this module does not know)."""
    return GGML_TYPES[ggml_type][0] if ggml_type in GGML_TYPES else f"type {ggml_type}"


@dataclass(frozen=True)
class GGUFTensor:
    """One entry of a GGUF tensor table. ``dims`` are in GGUF order: ``dims[0]`` is the row length."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the tensor data

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        """Bytes of the tensor's data (0 for a type whose layout is not known here)."""
        _, block, size = GGML_TYPES.get(self.ggml_type, ("", 1, 0))
        return self.n_elements // block * size

    @property
    def is_weight(self) -> bool:
        """A matrix (embedding, projection); 1-D tensors are norms and biases."""
        return sum(d > 1 for d in self.dims) >= 2


@dataclass(frozen=True)
class GGUFFile:
    """A GGUF file's header: metadata, tensor table, and where the sections are (for copying them).

    >>> read_gguf("model.gguf").weight_types()  # doctest: +SKIP
    {'Q5_0': 362676224, 'Q8_0': 136134656, 'Q4_K': 52297728, 'Q6_K': 52297728}
    """

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensor, ...]
    kv_start: int  # byte range of the key/value section
    kv_end: int
    n_kv: int
    data_start: int
    alignment: int
    #: file offset and struct format of each scalar value (to patch one in a verbatim copy of the section)
    scalar_offsets: dict[str, tuple[int, str]] = field(default_factory=dict)

    def weight_types(self) -> dict[str, int]:
        """Elements of the weight matrices per tensor type, most first."""
        counts: dict[str, int] = {}
        for t in self.tensors:
            if t.is_weight:
                counts[t.type_name] = counts.get(t.type_name, 0) + t.n_elements
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    @property
    def data_end(self) -> int:
        """The least file size that holds every tensor."""
        return self.data_start + max((t.offset + t.n_bytes for t in self.tensors), default=0)


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


class _Reader:
    def __init__(self, f: BinaryIO, version: int, arrays: bool) -> None:
        self.f = f
        self.version = version
        self.arrays = arrays

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
            if n > 1 << 28:
                raise ValueError("implausible array length in GGUF header")
            if itype in _GGUF_SCALARS and (self.arrays or n <= _MAX_KEPT_ARRAY):
                fmt = _GGUF_SCALARS[itype]
                data = self.f.read(n * struct.calcsize(fmt))
                return list(struct.unpack(f"<{n}{fmt[1]}", data))
            if self.arrays or n <= _MAX_KEPT_ARRAY:
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


def read_gguf(path: str | os.PathLike[str], *, arrays: bool = False) -> GGUFFile:
    """The header of a GGUF file. Large arrays (vocabulary, merges) are left out unless ``arrays``.

    Raises :class:`ModelNotFoundError` for a file that is not a GGUF or whose header is damaged.
    """
    path = Path(path)
    try:
        with path.open("rb") as raw:
            f = io.BufferedReader(raw, buffer_size=1 << 20)
            if f.read(4) != b"GGUF":
                raise ModelNotFoundError(f"{path} is not a GGUF file (no GGUF magic bytes).")
            version = struct.unpack("<I", f.read(4))[0]
            reader = _Reader(f, version, arrays)
            n_tensors = reader.count()
            n_kv = reader.count()
            kv_start = f.tell()
            meta: dict[str, Any] = {}
            scalar_offsets: dict[str, tuple[int, str]] = {}
            for _ in range(n_kv):
                key = reader.string()
                vtype = reader.read("<I")
                if vtype in _GGUF_SCALARS:
                    scalar_offsets[key] = (f.tell(), _GGUF_SCALARS[vtype])
                value = reader.value(vtype)
                if value is not None:
                    meta[key] = value
            kv_end = f.tell()
            tensors = []
            for _ in range(n_tensors):
                name = reader.string()
                n_dims = reader.read("<I")
                if n_dims > 8:
                    raise ValueError(f"implausible tensor rank {n_dims} in GGUF header")
                dims = tuple(reader.read("<Q") for _ in range(n_dims))
                tensors.append(GGUFTensor(name, dims, reader.read("<I"), reader.read("<Q")))
            alignment = meta.get("general.alignment", 32)
            alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
            data_start = -(-f.tell() // alignment) * alignment
    except (ValueError, struct.error) as e:
        raise ModelNotFoundError(f"{path}: cannot read the GGUF header ({e}); the file may be damaged.") from e
    return GGUFFile(path, version, meta, tuple(tensors), kv_start, kv_end, n_kv, data_start, alignment, scalar_offsets)


def read_gguf_metadata(path: str | os.PathLike[str], *, arrays: bool = False) -> dict[str, Any]:
    """The key/value metadata of a GGUF file's header (large arrays such as the vocabulary omitted).

    >>> read_gguf_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")["general.architecture"]  # doctest: +SKIP
    'llama'
    """
    return read_gguf(path, arrays=arrays).metadata


def gguf_sampling_defaults(meta: dict[str, Any]) -> dict[str, int | float]:
    """The sampling defaults a GGUF header names (``general.sampling.*``), with generation-config keys.

    >>> gguf_sampling_defaults({"general.sampling.temp": 0.7, "general.sampling.top_k": 20})
    {'temperature': 0.7, 'top_k': 20}
    """
    defaults: dict[str, int | float] = {}
    for gguf_key, key in (
        ("general.sampling.temp", "temperature"),
        ("general.sampling.top_p", "top_p"),
        ("general.sampling.top_k", "top_k"),
    ):
        if isinstance(meta.get(gguf_key), (int, float)):
            defaults[key] = meta[gguf_key]
    return defaults


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
        needed = read_gguf(path).data_end
    except ModelNotFoundError as e:
        return str(e).split(": ", 1)[-1]
    if size < needed:
        return f"the file is truncated: {size} bytes, but its tensors need at least {needed}"
    return None


def is_gguf_file(source: str | os.PathLike[str]) -> bool:
    """True for an existing file named ``*.gguf``."""
    path = Path(source).expanduser()
    return path.suffix.lower() == ".gguf" and path.is_file()


# --------------------------------------------------------------------------------------------
# What to do with a file


@dataclass(frozen=True)
class GGUFPlan:
    """How a GGUF file is loaded: directly, or re-exported to ``weight_format`` (and why, in ``reason``).

    >>> GGUFPlan(direct=False, weight_format="int8", types={"Q4_1": 100}, reason="...").direct
    False
    """

    direct: bool
    weight_format: str | None
    types: dict[str, int]
    reason: str


def _share(types: dict[str, int]) -> str:
    total = sum(types.values()) or 1
    return ", ".join(f"{name} ({100 * n / total:.0f}%)" for name, n in types.items())


def check_gguf_types(gguf: GGUFFile) -> None:
    """Refuse, before any work, a file with a tensor type nothing here reads (naming it and the types that work)."""
    unknown = sorted(
        {t.type_name for t in gguf.tensors if t.type_name not in NEAREST_FORMAT and (t.is_weight or t.ggml_type != 0)}
    )
    if unknown:
        raise InvalidParameterError(
            f"{gguf.path.name} holds {', '.join(unknown)} tensors, which openvino-llm cannot read. GGUF types that "
            f"work: {', '.join(DIRECT_TYPES)} (loaded directly) and "
            f"{', '.join(t for t in NEAREST_FORMAT if t not in DIRECT_TYPES)} (re-exported once). Convert the model "
            "to one of them (llama.cpp's llama-quantize), or pass its Hugging Face checkpoint."
        )


def plan_gguf(gguf: GGUFFile) -> GGUFPlan:
    """Load ``gguf`` directly when openvino-genai reads all its weights exactly; else re-export it to the OpenVINO
    format nearest to most of its weights. Raises :class:`InvalidParameterError` for a type nothing here reads."""
    check_gguf_types(gguf)
    types = gguf.weight_types()
    not_direct = [t for t in types if t not in DIRECT_TYPES]
    odd_1d = sorted({t.type_name for t in gguf.tensors if not t.is_weight and t.type_name not in ("F32", "F16")})
    if not not_direct and not odd_1d:
        return GGUFPlan(True, None, types, f"{gguf.path.name} holds weights in {_share(types)}: read directly")
    by_format: dict[str, int] = {}
    for t, n in types.items():
        by_format[NEAREST_FORMAT[t]] = by_format.get(NEAREST_FORMAT[t], 0) + n
    order = ("fp16", "int8", "int4")  # on a tie, the more precise format
    weight_format = max(by_format, key=lambda f: (by_format[f], -order.index(f))) if by_format else "fp16"
    whys = [_NOT_DIRECT_WHY.get(t, "") for t in not_direct]
    cannot = [t for t, why in zip(not_direct, whys, strict=True) if not why]
    parts = [why for why in whys if why] + ([f"openvino-genai cannot read {', '.join(cannot)}"] if cannot else [])
    mapping = ", ".join(
        f"{fmt} ({', '.join(t for t in types if NEAREST_FORMAT[t] == fmt)})" for fmt in order if fmt in by_format
    )
    reason = (
        f"{gguf.path.name} holds weights in {_share(types)}; {'; '.join(parts) or 'its 1-D tensors need conversion'}: "
        f"re-exporting it once into the cache, each weight to the nearest OpenVINO format: {mapping}"
    )
    return GGUFPlan(False, weight_format, types, reason)


__all__ = [
    "DIRECT_TYPES",
    "GGML_TYPES",
    "GGUF_ARCHITECTURES",
    "NEAREST_FORMAT",
    "GGUFFile",
    "GGUFPlan",
    "GGUFTensor",
    "all_int8",
    "check_gguf_types",
    "gguf_damage",
    "gguf_sampling_defaults",
    "is_gguf_file",
    "plan_gguf",
    "read_gguf",
    "read_gguf_metadata",
    "type_name",
]
