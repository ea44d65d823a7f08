"""``engine.output``: the per-request state machine from scheduler events to Chunks, fed the events
a scheduler sends (no model needed): stop strings across token boundaries, held-back markers, tool-call
markup, the final chunk, and a request ended by the engine."""

from __future__ import annotations

import pytest
from tests._shared import MULTIPLY

from openvino_llm import GenerationCancelledError, OpenVINOLLMError
from openvino_llm.engine.output import Collector, OutputParser, partial_marker
from openvino_llm.engine.scheduler import EndEvent, ErrorEvent, TextEvent
from openvino_llm.types import Chunk


class _Ticket:
    """The scheduler ticket's one method: the parser cancels the request when a stop string ends it."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _run(parser: OutputParser, pieces: list[str], finish: str = "stop") -> tuple[list[Chunk], _Ticket]:
    ticket = _Ticket()
    chunks: list[Chunk] = []
    for piece in pieces:
        chunks += parser.feed(TextEvent(piece), ticket)  # type: ignore[arg-type]
    end = EndEvent(
        finish,
        input_tokens=12,
        output_tokens=len(pieces),
        ttft_ms=5.0,
        tpot_ms=1.5,
        throughput_tps=600.0,
        total_ms=20.0,
    )
    chunks += parser.feed(end, ticket)  # type: ignore[arg-type]
    return chunks, ticket


def test_a_stop_string_split_across_pieces_ends_the_request_and_is_cut() -> None:
    parser = OutputParser(stop=("\n\n",), model_name="m", load_ms=7.0)
    chunks, ticket = _run(parser, ["Hello wor", "ld\n", "\nBye"])
    assert "".join(c.text for c in chunks) == "Hello world"
    assert chunks[1].text == "ld"  # the "\n" that may start the stop string is held back
    final = chunks[-1]
    assert final.is_final and final.finish_reason == "stop" and ticket.cancelled
    assert parser.done and final.model_name == "m"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (12, 3)
    assert final.timing is not None and final.timing.ttft_ms == 5.0 and final.timing.load_ms == 7.0


def test_a_held_back_prefix_that_is_not_a_stop_string_comes_out() -> None:
    parser = OutputParser(stop=("STOP",))
    chunks, ticket = _run(parser, ["abcST", "ART", "ed"], finish="length")
    texts = [c.text for c in chunks]
    assert texts[0] == "abc" and "".join(texts) == "abcSTARTed"
    assert chunks[-1].finish_reason == "length" and not ticket.cancelled


def test_tool_call_markup_is_parsed_into_calls_never_emitted_as_text() -> None:
    parser = OutputParser(tools=(MULTIPLY,))
    call = '<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n</tool_call>'
    chunks, _ = _run(parser, ["Sure. ", call[:7], call[7:30], call[30:]])
    text = "".join(c.text for c in chunks)
    assert "<tool" not in text and text.strip() == "Sure."
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in final.tool_calls] == [("multiply", {"a": 6, "b": 7})]


def test_a_request_the_engine_cancelled_or_that_failed_raises() -> None:
    with pytest.raises(GenerationCancelledError, match="engine was closed"):
        _run(OutputParser(model_name="m"), ["Hel"], finish="cancelled")
    parser = OutputParser()
    with pytest.raises(OpenVINOLLMError, match="step failed"):
        list(parser.feed(ErrorEvent(OpenVINOLLMError("step failed")), _Ticket()))  # type: ignore[arg-type]
    assert parser.done


def test_the_collector_joins_chunks_into_one_generation() -> None:
    seen: list[str] = []
    collector = Collector(seen.append)
    chunks, _ = _run(OutputParser(model_name="m"), ["Hello", ", ", "world"])
    for chunk in chunks:
        collector.add(chunk)
    gen = collector.generation()
    assert gen.text == "Hello, world" and "".join(seen) == gen.text
    assert gen.finish_reason == "stop" and gen.usage.output_tokens == 3 and gen.model_name == "m"


def test_partial_marker_is_the_longest_suffix_that_starts_a_marker() -> None:
    assert partial_marker("Hello <tool", ["<tool_call>"]) == 5
    assert partial_marker("a\n", ["\n\n", "END"]) == 1
    assert partial_marker("done", ["\n\n"]) == 0
    assert partial_marker("<tool_call>", ["<tool_call>"]) == 0  # a whole marker is found, not held
