"""Incremental detokenization: the same text as openvino-genai's TextStreamer, given out sooner.

Real tokenizers (the tiny test model's and SmolLM2's, both byte-level BPE from openvino-tokenizers);
no model runs.
"""

from __future__ import annotations

from pathlib import Path

import openvino_genai
import pytest

from openvino_llm.engine.detokenize import IncrementalDecoder
from openvino_llm.models import resolve_model

TEXTS = [
    "Hello, world! It's a test.",
    "Grüße aus Köln, 世界 🙂 and naïve café.\n\n  Indented line ; spaced punctuation .\nLast",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n",
    "trailing spaces   ",
]


@pytest.fixture(scope="module", params=["tiny", "smollm2"])
def tokenizer(request: pytest.FixtureRequest, tiny_model: Path, smollm2_gguf: Path, cache_dir: Path) -> object:
    path = tiny_model if request.param == "tiny" else resolve_model(smollm2_gguf, cache_dir=cache_dir).path
    return openvino_genai.Tokenizer(str(path))


def _ids(tokenizer: object, text: str) -> list[int]:
    return [int(i) for i in tokenizer.encode(text, add_special_tokens=False).input_ids.data[0]]  # type: ignore[attr-defined]


def _text_streamer(tokenizer: object, chunks: list[list[int]]) -> list[str]:
    pieces: list[str] = []

    def on_text(text: str) -> openvino_genai.StreamingStatus:
        pieces.append(text)
        return openvino_genai.StreamingStatus.RUNNING

    streamer = openvino_genai.TextStreamer(tokenizer, on_text)
    for chunk in chunks:
        streamer.write(chunk)
    streamer.end()
    return pieces


def _ours(tokenizer: object, chunks: list[list[int]]) -> list[str]:
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.write(chunk) for chunk in chunks]
    return [*pieces, decoder.end()]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("step", [1, 3])
def test_same_text_as_text_streamer(tokenizer: object, text: str, step: int) -> None:
    ids = _ids(tokenizer, text)
    chunks = [ids[i : i + step] for i in range(0, len(ids), step)]  # speculative decoding reads several at once
    ours = _ours(tokenizer, chunks)
    assert "".join(ours) == "".join(_text_streamer(tokenizer, chunks)) == tokenizer.decode(ids)  # type: ignore[attr-defined]
    assert all("\ufffd" not in piece for piece in ours)  # a multi-byte character is never split


def test_the_first_token_is_given_out_at_once(tokenizer: object) -> None:
    ids = _ids(tokenizer, "Paris is the capital of France.")
    decoder = IncrementalDecoder(tokenizer)
    first = decoder.write(ids[:1])
    assert first and first == tokenizer.decode(ids[:1])  # type: ignore[attr-defined]
    assert _text_streamer(tokenizer, [ids[:1], ids[1:2]])[0] != first or len(ids) < 3  # TextStreamer: not yet


def test_held_back_until_final(tokenizer: object) -> None:
    # an emoji is several byte tokens: nothing until it is complete
    ids = _ids(tokenizer, "🙂")
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.write([i]) for i in ids]
    assert pieces[-1] == "🙂" and not any(pieces[:-1])
    # a trailing space waits for the next token (a clean-up may drop it); end() gives it out
    decoder = IncrementalDecoder(tokenizer)
    ids = _ids(tokenizer, "word ")
    out = "".join(decoder.write([i]) for i in ids)
    assert out == "word" and decoder.end() == " "
