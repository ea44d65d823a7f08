"""The tokenizer, detokenizer and chat template of a GGUF file, built from the GGUF's own metadata.

openvino-genai's GGUF reader is not used (it gives up on the whole file when it cannot read the
weights): the vocabulary, merges, token types and pre-tokenizer name of the header become a Hugging
Face fast tokenizer, which openvino-tokenizers converts to ``openvino_tokenizer.xml`` and
``openvino_detokenizer.xml``. BPE vocabularies (``tokenizer.ggml.model = "gpt2"``: Llama 3, Qwen,
SmolLM, ...) are built here with the ``tokenizers`` library and the pre-tokenizer llama.cpp uses for
the file's ``tokenizer.ggml.pre``; SentencePiece vocabularies (``"llama"``) go through transformers'
GGUF converter. bos/eos/pad come from the GGUF, never from a converter's guess (transformers' own
conversion of SmolLM2's GGUF makes ``<|im_start|>`` its eos). Needs transformers and tokenizers,
not torch.

    install_gguf_tokenizer(read_gguf_metadata("model.gguf", arrays=True), Path("model-ov"))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ExportError, InvalidParameterError
from .ir import DETOKENIZER_FILE, TOKENIZER_FILE

logger = logging.getLogger("openvino_llm")

CHAT_TEMPLATE_FILE = "chat_template.jinja"

# Pre-tokenizer regexes of llama.cpp (llama-vocab.cpp), by the GGUF's `tokenizer.ggml.pre`.
_LLAMA3_SPLIT = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp's default splits with four regexes in turn (punctuation runs, GPT-2's, digit runs, digit
# triples); openvino-tokenizers keeps only one Split of a sequence, so they are folded into one
# (equal to openvino-genai's reading of such a GGUF on the test texts).
_DEFAULT_SPLIT = r"[\p{P}\$\+<=>\^~\|]+|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
#: ``tokenizer.ggml.pre`` -> how the text is split before BPE: "gpt2" (GPT-2's regex), "digits" (each
#: digit alone, then GPT-2's regex), or a regex of its own.
BPE_PRE_TOKENIZERS: dict[str, str] = {
    "default": _DEFAULT_SPLIT,
    "gpt-2": "gpt2",
    "gpt2": "gpt2",
    "smollm": "digits",
    "starcoder": "digits",
    "refact": "digits",
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}
#: ``tokenizer.ggml.model`` values this module builds a tokenizer for.
TOKENIZER_MODELS = ("gpt2", "llama")

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types (1 normal, 2 unknown, 5 unused, 6 byte)


def check_gguf_tokenizer(meta: dict[str, Any], name: str) -> None:
    """Refuse, before any work, a GGUF whose tokenizer cannot be built here (type, pre-tokenizer, eos)."""
    model = meta.get("tokenizer.ggml.model")
    if model not in TOKENIZER_MODELS:
        raise InvalidParameterError(
            f"{name} has a {model!r} tokenizer, which openvino-llm cannot rebuild from a GGUF (it can: "
            f"{', '.join(TOKENIZER_MODELS)}). Load a file of types openvino-genai reads directly (F16, Q8_0, Q4_0), "
            "or the model's Hugging Face checkpoint."
        )
    pre = meta.get("tokenizer.ggml.pre", "default")
    if model == "gpt2" and pre not in BPE_PRE_TOKENIZERS:
        raise InvalidParameterError(
            f"{name} has the pre-tokenizer {pre!r}, which openvino-llm does not know (it knows: "
            f"{', '.join(sorted(BPE_PRE_TOKENIZERS))}). Load the model's Hugging Face checkpoint instead."
        )
    if not isinstance(meta.get("tokenizer.ggml.eos_token_id"), int):
        raise InvalidParameterError(f"{name} names no end-of-sequence token (tokenizer.ggml.eos_token_id).")


def build_hf_tokenizer(meta: dict[str, Any], name: str) -> Any:
    """A transformers ``PreTrainedTokenizerFast`` from GGUF metadata read with ``arrays=True``."""
    check_gguf_tokenizer(meta, name)
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError as e:
        raise ExportError(
            f"Building the tokenizer of {name} needs transformers and tokenizers (not torch): pip install "
            "transformers tokenizers."
        ) from e
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    if meta["tokenizer.ggml.model"] == "gpt2":
        backend = _bpe_tokenizer(meta, tokens)
    else:
        backend = _sentencepiece_tokenizer(meta)

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else None

    template = meta.get("tokenizer.chat_template")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=token("bos"),
        eos_token=token("eos"),
        unk_token=token("unknown"),
        pad_token=token("padding"),
        chat_template=template if isinstance(template, str) else None,
        clean_up_tokenization_spaces=False,
    )


def _bpe_tokenizer(meta: dict[str, Any], tokens: list[str]) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or ()]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    split = BPE_PRE_TOKENIZERS[meta.get("tokenizer.ggml.pre", "default")]
    if split == "gpt2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif split == "digits":
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    control = [
        AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types, strict=False) if k == _CONTROL
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, k in zip(tokens, types, strict=False)
        if k == _USER_DEFINED
    ]
    backend.add_special_tokens(control)
    backend.add_tokens(user)  # e.g. Qwen's <tool_call>: kept in the decoded text
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") is True and isinstance(bos, int):
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A $B", special_tokens=[(tokens[bos], bos)]
        )
    return backend


def _sentencepiece_tokenizer(meta: dict[str, Any]) -> Any:
    from transformers.integrations.ggml import GGUF_TO_FAST_CONVERTERS

    keys = {
        "model": "tokenizer_type",
        "tokens": "tokens",
        "scores": "scores",
        "token_type": "token_type",
        "merges": "merges",
        "bos_token_id": "bos_token_id",
        "eos_token_id": "eos_token_id",
        "unknown_token_id": "unk_token_id",
        "padding_token_id": "pad_token_id",
        "add_space_prefix": "add_prefix_space",
    }
    fields = {new: meta[f"tokenizer.ggml.{old}"] for old, new in keys.items() if f"tokenizer.ggml.{old}" in meta}
    return GGUF_TO_FAST_CONVERTERS["llama"](fields).converted()


def install_gguf_tokenizer(meta: dict[str, Any], out: Path, name: str) -> None:
    """Write the tokenizer and detokenizer IRs and ``chat_template.jinja`` of a GGUF into ``out``."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    hf_tokenizer = build_hf_tokenizer(meta, name)
    tokenizer, detokenizer = convert_tokenizer(hf_tokenizer, with_detokenizer=True, skip_special_tokens=True)
    eos = meta["tokenizer.ggml.eos_token_id"]
    for model in (tokenizer, detokenizer):  # openvino-genai reads these; the GGUF's, not a guess
        model.set_rt_info(eos, "eos_token_id")
        for key in ("bos", "padding"):
            value = meta.get(f"tokenizer.ggml.{key}_token_id")
            if isinstance(value, int):
                model.set_rt_info(value, "pad_token_id" if key == "padding" else "bos_token_id")
    ov.save_model(tokenizer, out / TOKENIZER_FILE)
    ov.save_model(detokenizer, out / DETOKENIZER_FILE)
    template = meta.get("tokenizer.chat_template")
    if isinstance(template, str):
        (out / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")


__all__ = [
    "BPE_PRE_TOKENIZERS",
    "CHAT_TEMPLATE_FILE",
    "TOKENIZER_MODELS",
    "build_hf_tokenizer",
    "check_gguf_tokenizer",
    "install_gguf_tokenizer",
]
