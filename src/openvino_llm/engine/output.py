"""What comes out of one request: scheduler events -> :class:`~openvino_llm.types.Chunk` objects -> a
:class:`~openvino_llm.types.Generation`.

:class:`OutputParser` is the per-request state machine between the scheduler's events
(:mod:`~openvino_llm.engine.scheduler`) and the caller: stop strings are cut on text (across token
boundaries), reasoning (``<think>`` blocks) goes to ``Chunk.reasoning`` as it is produced, text that
may open a tool call is held back until it is known not to, tool calls stream as
``tool_call_deltas`` (name first, then argument text) and are parsed by the model's family into
``tool_calls``, and the last chunk carries finish reason, usage and timing.
:class:`Collector` joins a stream's chunks into one ``Generation`` (``generate`` over ``stream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..chat.families import HermesFamily, ToolFamily, may_open_json_block
from ..chat.families.stream import ToolCallStream
from ..chat.reasoning import ReasoningSplitter, ReasoningTags
from ..errors import GenerationCancelledError, OpenVINOLLMError, OutputTruncatedError
from ..types import Chunk, Generation, Timing, ToolCallDelta, ToolSpec, Usage
from .scheduler import EndEvent, ErrorEvent, Event, TextEvent, Ticket


class OutputParser:
    """Turns one request's scheduler events into Chunks: stop strings, tool-call markup, usage, timing.

    Text that might be the start of a stop string or of a call marker of ``family`` is held back
    until it is known not to be; a stop string ends the request (it is not part of the output);
    tool-call markup is never emitted as text but streamed as ``tool_call_deltas`` and parsed into
    ``tool_calls`` on the final chunk. With ``forced_tool`` the whole output is the call(s), after
    the family's ``forced_prefill`` (which the prompt ended with). With ``reasoning`` tags, a
    leading reasoning block (or, with ``reasoning_inside``, the output up to the closing tag) goes
    to ``Chunk.reasoning``; stop strings and tool calls apply to the content after it.

    Example (events as the scheduler sends them)::

        parser = OutputParser(stop=("\\n\\n",), model_name="m")
        for event in events:
            for chunk in parser.feed(event, ticket):
                ...
    """

    def __init__(
        self,
        *,
        stop: tuple[str, ...] = (),
        tools: tuple[ToolSpec, ...] = (),
        forced_tool: bool = False,
        max_new_tokens: int = 0,
        model_name: str = "",
        load_ms: float = 0.0,
        family: ToolFamily | None = None,
        parallel_tool_calls: bool = True,
        reasoning: ReasoningTags | None = None,
        reasoning_inside: bool = False,
    ) -> None:
        self._stop = stop
        self._tools = tools
        self._forced_tool = forced_tool
        self._max_new_tokens = max_new_tokens
        self._model_name = model_name
        self._load_ms = load_ms
        self._family = family or HermesFamily()
        self._parallel = parallel_tool_calls
        self._prefill = self._family.forced_prefill() if forced_tool else ""
        self._calls = ToolCallStream(self._family, tools) if tools else None
        self._splitter = ReasoningSplitter(reasoning, inside=reasoning_inside) if reasoning else None
        self._reasoning: list[str] = []  # reasoning not yet handed out in a chunk
        self._acc = ""
        self._emitted = 0
        self._stopped = False  # a stop string was found
        self._markers = stop
        #: True once the request has ended (its final chunk was produced or its error raised)
        self.done = False

    def feed(self, event: Event, ticket: Ticket) -> Iterator[Chunk]:
        """The chunks ``event`` yields; a stop string cancels ``ticket``. Raises the request's error."""
        if isinstance(event, ErrorEvent):
            self.done = True
            raise event.error
        if isinstance(event, TextEvent):
            if self._stopped:
                return
            delta = event.text
            if self._splitter is not None:
                reasoning, delta = self._splitter.feed(delta)
                if reasoning:
                    self._reasoning.append(reasoning)
            text, calls = self._on_text(delta) if delta else ("", [])
            if self._stopped:
                ticket.cancel()
            reasoning = "".join(self._reasoning)
            self._reasoning.clear()
            if text or calls or reasoning:
                yield Chunk(text=text, model_name=self._model_name, reasoning=reasoning, tool_call_deltas=calls)
            return
        assert isinstance(event, EndEvent)
        self.done = True
        if event.finish_reason == "cancelled" and not self._stopped:  # not by this caller: the engine closed
            raise GenerationCancelledError(
                f"The request was cancelled after {event.output_tokens} tokens because {self._model_name}'s "
                "engine was closed. Load the model again (load_engine) and retry."
            )
        yield self._final(event)

    def _on_text(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        self._acc += delta
        if self._forced_tool:
            assert self._calls is not None
            return "", self._calls.update(self._prefill + self._acc)
        if self._stop:
            start = max(0, self._emitted - max(map(len, self._stop)))
            hits = [i for i in (self._acc.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self._acc = self._acc[: min(hits)]
                self._stopped = True
        limit = len(self._acc)
        calls: list[ToolCallDelta] = []
        if self._calls is not None:
            at = self._family.find_marker(self._acc)
            if at >= 0:
                limit = at
                calls = self._calls.update(self._acc[at:])
            elif self._emitted == 0 and (
                not self._acc.strip()
                or (
                    self._family.bare_json
                    and (self._acc.lstrip().startswith(("{", "[")) or may_open_json_block(self._acc))
                )
            ):
                # leading whitespace, or a bare (or fenced) JSON tool call: decide when more text (or the end) comes
                limit = 0
        if not self._stopped:
            held = partial_marker(self._acc, self._markers)
            if self._calls is not None:
                held = max(held, self._family.pending(self._acc))
            limit = min(limit, len(self._acc) - held)
        if limit <= self._emitted:
            return "", calls
        text = self._acc[self._emitted : limit]
        self._emitted = limit
        return text, calls

    def _final(self, end: EndEvent) -> Chunk:
        if self._splitter is not None:
            reasoning, content = self._splitter.flush()
            self._reasoning.append(reasoning)
            if content and not self._stopped:
                self._acc += content
        text = self._acc
        calls = []
        if self._forced_tool:
            _, calls = self._family.parse(self._prefill + text, self._tools)
            if not calls:
                raise OutputTruncatedError(
                    f"The model did not finish its constrained tool call within max_new_tokens "
                    f"({self._max_new_tokens}); raise max_new_tokens. Output so far: {text!r:.200}",
                    text,
                )
            text = ""
        elif self._tools:
            text, calls = self._family.parse(text, self._tools)
        if not self._parallel:
            calls = calls[:1]
        deltas: list[ToolCallDelta] = []
        if self._calls is not None and calls:
            calls, deltas = self._calls.finish(calls)
        rest = text[self._emitted :] if text.startswith(self._acc[: self._emitted]) else ""
        if calls:
            reason = "tool_calls"
        elif self._stopped:
            reason = "stop"
        else:
            reason = end.finish_reason
        timing = Timing(end.ttft_ms, end.tpot_ms, end.throughput_tps, end.total_ms, self._load_ms)
        return Chunk(
            text=rest,
            finish_reason=reason,  # type: ignore[arg-type]
            usage=Usage(end.input_tokens, end.output_tokens),
            timing=timing,
            tool_calls=calls,
            model_name=self._model_name,
            reasoning="".join(self._reasoning),
            tool_call_deltas=deltas,
        )


def partial_marker(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``markers``.

    >>> partial_marker("Hello <tool", ["<tool_call>"])
    5
    """
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


class Collector:
    """Joins a stream's chunks into one :class:`Generation` (the twins ``generate``/``agenerate``).

    ``on_token`` is called with each chunk's text as it is added; ``missing_final`` is the message of
    the :class:`~openvino_llm.errors.OpenVINOLLMError` raised when the stream ended without its final chunk.
    """

    def __init__(
        self,
        on_token: Callable[[str], Any] | None = None,
        *,
        missing_final: str = "The stream ended without a final chunk.",
    ) -> None:
        self._on_token = on_token
        self._missing_final = missing_final
        self._parts: list[str] = []
        self._reasoning: list[str] = []
        self._final: Chunk | None = None

    def add(self, chunk: Chunk) -> None:
        """Take one chunk (the final one carries finish reason, usage and timing)."""
        if chunk.text:
            self._parts.append(chunk.text)
            if self._on_token is not None:
                self._on_token(chunk.text)
        if chunk.reasoning:
            self._reasoning.append(chunk.reasoning)
        if chunk.is_final:
            self._final = chunk

    def generation(self) -> Generation:
        """The whole reply; call after the final chunk was added."""
        final = self._final
        if final is None or final.usage is None or final.timing is None:
            raise OpenVINOLLMError(self._missing_final)
        return Generation(
            text="".join(self._parts),
            finish_reason=final.finish_reason or "stop",
            usage=final.usage,
            timing=final.timing,
            tool_calls=final.tool_calls,
            model_name=final.model_name,
            reasoning="".join(self._reasoning),
        )


__all__ = ["Collector", "OutputParser", "partial_marker"]
