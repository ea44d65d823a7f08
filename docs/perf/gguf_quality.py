"""How exactly each way of running a GGUF file reproduces the model: perplexity and top-1 agreement.

    python docs/perf/gguf_quality.py [--gguf FILE | --model NAME] [--text FILE] [--tokens 768] [--cache-dir DIR]

Every system scores the same token ids (the GGUF's own tokenizer, as the default re-export carries
it) in one forward pass with f32 inference; the fp16 re-export (the GGUF's weights dequantized
exactly) is the reference for top-1 agreement. Our systems: the automatic re-export (what
``model="file.gguf"`` loads: each tensor to its nearest OpenVINO format), fixed formats, and
openvino-genai reading the file directly where it can (not K-quants). llama-cpp-python, when
installed, scores the same ids on the GGUF. Writes a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai

from openvino_llm.errors import InvalidParameterError
from openvino_llm.models import CompressionOptions, embedded_model_path, resolve_model

#: short name -> (label, options); ``--formats`` picks some (fp16 is always scored: it is the reference)
FORMATS: dict[str, tuple[str, CompressionOptions | None]] = {
    "fp16": ("re-export fp16", CompressionOptions("fp16")),
    "auto": ("re-export auto (the default: nearest format per tensor)", None),
    "int8": ("re-export int8 (per channel)", CompressionOptions("int8")),
    "int4-g32": ("re-export int4 (asym, group 32)", CompressionOptions("int4", group_size=32)),
    "int4-g64": ("re-export int4 (asym, group 64)", CompressionOptions("int4", group_size=64)),
    "int4-g128": ("re-export int4 (asym, group 128)", CompressionOptions("int4", group_size=128)),
    "int4-sym-g128": ("re-export int4 (sym, group 128)", CompressionOptions("int4", group_size=128, sym=True)),
    "int4-sym-g192": ("re-export int4 (sym, group 192)", CompressionOptions("int4", group_size=192, sym=True)),
}


def logits_openvino(xml: Path, ids: np.ndarray) -> np.ndarray:
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    n = ids.shape[1]
    request.infer(
        {
            "input_ids": ids,
            "attention_mask": np.ones((1, n), np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None],
            "beam_idx": np.zeros(1, np.int32),
        }
    )
    return request.get_output_tensor(0).data[0].copy()


def logits_llama_cpp(gguf: Path, ids: np.ndarray) -> np.ndarray | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=2, verbose=False, logits_all=True)
    llm.eval([int(i) for i in ids[0]])
    return np.array(llm.scores[: ids.shape[1]])


def perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    targets = ids[0, 1:]
    scores = logits[:-1].astype(np.float64)
    top = scores.max(-1, keepdims=True)
    log_norm = np.log(np.exp(scores - top).sum(-1)) + top[:, 0]
    return float(np.exp((log_norm - scores[np.arange(len(targets)), targets]).mean()))


def main() -> None:
    here = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: --model's)")
    p.add_argument("--model", default="smollm2-135m", help="embedded model whose GGUF to score (default smollm2-135m)")
    p.add_argument("--text", type=Path, default=here / "README.md", help="text to score (default: README.md)")
    p.add_argument("--tokens", type=int, default=768, help="tokens of the text to score (default 768)")
    p.add_argument("--cache-dir", type=Path, default=None, help="openvino-llm cache for the re-exports")
    p.add_argument("--formats", default="all", help=f"comma list of {list(FORMATS)} or all (fp16 always)")
    args = p.parse_args()
    chosen = list(FORMATS) if args.formats == "all" else ["fp16", *(f for f in args.formats.split(",") if f != "fp16")]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        p.error(f"unknown --formats {unknown}; choose from {list(FORMATS)}")

    gguf = args.gguf.resolve() if args.gguf else embedded_model_path(args.model, args.cache_dir)[0]
    # the default re-export's tokenizer IRs (built from the GGUF's metadata), or the file itself when read directly
    tokenizer = openvino_genai.Tokenizer(str(resolve_model(gguf, cache_dir=args.cache_dir).path))
    ids = tokenizer.encode(args.text.read_text(), add_special_tokens=False).input_ids.data
    ids = np.asarray(ids, dtype=np.int64)[:, : args.tokens]
    scores: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for label, options in (FORMATS[f] for f in chosen):
        try:
            resolved = resolve_model(gguf, compression=options, cache_dir=args.cache_dir)
        except InvalidParameterError as e:  # e.g. a group size that does not divide this model's layers
            notes.append(f"{label}: not applicable ({e})")
            continue
        if resolved.kind != "ir":  # the automatic choice of an exactly-read file is the file itself
            notes.append(f"{label}: the file is read directly (see the next row)")
            continue
        scores[label] = logits_openvino(resolved.path / "openvino_model.xml", ids)
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / gguf.name).symlink_to(gguf)
        try:
            openvino_genai.LLMPipeline(str(Path(scratch) / gguf.name), "CPU", enable_save_ov_model=True)
        except Exception as e:  # K-quants: openvino-genai's GGUF reader cannot dequantize them
            notes.append(f"openvino-genai reading the .gguf directly: fails ({str(e).splitlines()[0][:120]})")
        else:
            label = "openvino-genai reading the .gguf directly"
            scores[label] = logits_openvino(Path(scratch) / "openvino_model.xml", ids)
    llama = logits_llama_cpp(gguf, ids)
    if llama is not None:
        scores["llama-cpp-python on the .gguf"] = llama
    reference = scores["re-export fp16"].argmax(-1)
    print(f"{gguf.name}, {ids.shape[1]} tokens of {args.text.name}, f32 inference\n")
    print("| system | perplexity | top-1 agreement with the fp16 re-export |")
    print("|---|---:|---:|")
    for label, logits in scores.items():
        print(f"| {label} | {perplexity(logits, ids):.2f} | {(logits.argmax(-1) == reference).mean():.3f} |")
    for note in notes:
        print(f"\n- {note}")


if __name__ == "__main__":
    main()
