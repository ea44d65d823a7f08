"""Write small GGUF files of the tiny test model in any tensor type, with gguf-py (no torch).

``write_tiny_gguf`` writes the tiny Llama's real weights (from ``tiny_hf_dir``) quantized by gguf-py
(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: the types gguf-py can quantize). gguf-py cannot
quantize K-quants, so ``write_random_gguf`` writes a wider random Llama (hidden 256, the K-quant
block) whose quantized tensors are random but valid blocks of any type (Q2_K ... Q6_K included),
and ``dequantized_copy`` writes the same model with those weights dequantized exactly to F32: the
reference a re-export must match.

    write_tiny_gguf(tiny_hf_dir, tmp_path / "tiny.Q8_0.gguf", "Q8_0")
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

CHAT_TEMPLATE_FILE = "chat_template.jinja"

# The f16 scale fields of each K-quant block (byte offsets), set to small values so weights stay small.
_K_SCALES = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def _tokenizer_fields(writer: gguf.GGUFWriter, tokenizer_dir: Path) -> None:
    """The tiny model's byte-level BPE tokenizer as GGUF ``gpt2`` tokenizer metadata."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab: dict[str, int] = data["model"]["vocab"]
    special = {t["content"]: t["id"] for t in data["added_tokens"]}
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if tok in special else 1 for tok in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special["<|im_start|>"])
    writer.add_eos_token_id(special["<|im_end|>"])
    writer.add_pad_token_id(special["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template((tokenizer_dir / CHAT_TEMPLATE_FILE).read_text())


def _header(writer: gguf.GGUFWriter, name: str, hidden: int, ffn: int, layers: int, heads: int, qtype: str) -> None:
    writer.add_name(name)
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(int(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}", gguf.LlamaFileType.ALL_F32)))


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotate-half q/k rows -> llama.cpp's interleaved layout (as convert_hf_to_gguf does)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add(writer: gguf.GGUFWriter, name: str, w: np.ndarray, qtype: T) -> None:
    if w.ndim == 1 or qtype == T.F32:
        writer.add_tensor(name, w.astype(np.float32))
    elif qtype == T.F16:
        writer.add_tensor(name, w.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(w.astype(np.float32), qtype), raw_dtype=qtype)


def write_tiny_gguf(tiny_hf_dir: Path, path: Path, qtype: str) -> Path:
    """The tiny Llama of ``tiny_hf_dir`` as a GGUF whose 2-D weights are all ``qtype`` (norms stay F32)."""
    from safetensors.numpy import load_file

    config = json.loads((tiny_hf_dir / "config.json").read_text())
    weights = load_file(str(tiny_hf_dir / "model.safetensors"))
    heads = config["num_attention_heads"]
    kind = T[qtype]
    writer = gguf.GGUFWriter(str(path), "llama")
    _header(
        writer,
        "tiny-llama",
        config["hidden_size"],
        config["intermediate_size"],
        config["num_hidden_layers"],
        heads,
        qtype,
    )
    _tokenizer_fields(writer, tiny_hf_dir)
    _add(writer, "token_embd.weight", weights["model.embed_tokens.weight"], kind)
    _add(writer, "output_norm.weight", weights["model.norm.weight"], T.F32)
    _add(writer, "output.weight", weights["lm_head.weight"], kind)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        _add(writer, f"blk.{i}.attn_norm.weight", weights[p + "input_layernorm.weight"], T.F32)
        _add(writer, f"blk.{i}.ffn_norm.weight", weights[p + "post_attention_layernorm.weight"], T.F32)
        _add(writer, f"blk.{i}.attn_q.weight", _permute(weights[p + "self_attn.q_proj.weight"], heads), kind)
        _add(writer, f"blk.{i}.attn_k.weight", _permute(weights[p + "self_attn.k_proj.weight"], heads), kind)
        _add(writer, f"blk.{i}.attn_v.weight", weights[p + "self_attn.v_proj.weight"], kind)
        _add(writer, f"blk.{i}.attn_output.weight", weights[p + "self_attn.o_proj.weight"], kind)
        _add(writer, f"blk.{i}.ffn_gate.weight", weights[p + "mlp.gate_proj.weight"], kind)
        _add(writer, f"blk.{i}.ffn_up.weight", weights[p + "mlp.up_proj.weight"], kind)
        _add(writer, f"blk.{i}.ffn_down.weight", weights[p + "mlp.down_proj.weight"], kind)
    _finish(writer)
    return path


def _random_blocks(rows: int, cols: int, qtype: T, rng: np.random.Generator) -> np.ndarray:
    """Random, valid blocks of ``qtype`` for a (rows, cols) weight, as the uint8 array gguf-py stores."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.0005).tobytes(), np.uint8)
    for offset in _K_SCALES.get(qtype, (0,)):  # the other types start with their f16 scale
        data[:, :, offset : offset + 2] = scale
    if qtype == T.Q6_K:  # int8 sub-block scales: keep them small
        data[:, :, 192:208] = rng.integers(0, 16, size=(rows, cols // block, 16), dtype=np.uint8)
    return data.reshape(rows, -1)


def write_random_gguf(path: Path, tokenizer_dir: Path, qtypes: dict[str, str], *, seed: int = 0) -> Path:
    """A random 2-layer Llama (hidden 256, ffn 512) with the tiny tokenizer; ``qtypes`` maps a tensor
    role (``attn``, ``ffn_down``, ``ffn``, ``embd``, ``output``) to its GGUF type; the file type is
    the ``attn`` one."""
    rng = np.random.default_rng(seed)
    hidden, ffn, layers, heads, vocab = 256, 512, 2, 4, 512
    writer = gguf.GGUFWriter(str(path), "llama")
    _header(writer, "random-llama", hidden, ffn, layers, heads, qtypes["attn"])
    _tokenizer_fields(writer, tokenizer_dir)

    def add(name: str, rows: int, cols: int, role: str) -> None:
        kind = T[qtypes[role]]
        if kind in (T.F32, T.F16, T.BF16):
            w = rng.normal(0, 0.05, size=(rows, cols)).astype(np.float32)
            _add(writer, name, w, kind)
        else:
            writer.add_tensor(name, _random_blocks(rows, cols, kind, rng), raw_dtype=kind)

    add("token_embd.weight", vocab, hidden, "embd")
    _add(writer, "output_norm.weight", np.ones(hidden, np.float32), T.F32)
    add("output.weight", vocab, hidden, "output")
    for i in range(layers):
        _add(writer, f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32), T.F32)
        _add(writer, f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32), T.F32)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            add(f"blk.{i}.{t}.weight", hidden, hidden, "attn")
        add(f"blk.{i}.ffn_gate.weight", ffn, hidden, "ffn")
        add(f"blk.{i}.ffn_up.weight", ffn, hidden, "ffn")
        add(f"blk.{i}.ffn_down.weight", hidden, ffn, "ffn_down")
    _finish(writer)
    return path


def dequantized_copy(source: Path, path: Path) -> Path:
    """``source`` with every weight dequantized (gguf-py) to F16 (norms F32), metadata unchanged.

    F16, because openvino-genai 2026.4 refuses 2-D F32 weights; the f16 rounding is far below
    any quantization error."""
    reader = gguf.GGUFReader(str(source))
    writer = gguf.GGUFWriter(str(path), str(reader.fields["general.architecture"].contents()))
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        w = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        w = w.reshape(tuple(reversed([int(d) for d in tensor.shape])))
        writer.add_tensor(tensor.name, w if w.ndim == 1 else w.astype(np.float16))
    _finish(writer)
    return path


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
