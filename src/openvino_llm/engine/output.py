"""What comes out of one request: scheduler events -> :class:`~openvino_llm.types.Chunk` objects -> a
:class:`~openvino_llm.types.Generation`.

:class:`OutputParser` is the per-request state machine between the scheduler's events
(:mod:`~openvino_llm.engine.scheduler`) and the caller: stop strings are cut on text (across token
boundaries), text that may open a tool call is held back until it is known not to, tool-call markup
is parsed into ``tool_calls``, and the last chunk carries finish reason, usage and timing.
:class:`Collector` joins a stream's chunks into one ``Generation`` (``generate`` over ``stream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..chat.tools import TOOL_CALL_OPEN, parse_tool_calls
from ..errors import GenerationCancelledError, OutputTruncatedError
from ..types import Chunk, Generation, Timing, ToolSpec, Usage
from .scheduler import EndEvent, ErrorEvent, Event, TextEvent, Ticket


class OutputParser:
    """Turns one request's scheduler events into Chunks: stop strings, tool-call markup, usage, timing.

    Text that might be the start of a stop string or of ``<tool_call>`` is held back until it is
    known not to be; a stop string ends the request (it is not part of the output); tool-call markup
    is never emitted as text but parsed into ``tool_calls`` on the final chunk. With
    ``forced_tool`` the whole output is the body of one tool call (the prompt opened it).

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
    ) -> None:
        self._stop = stop
        self._tools = tools
        self._forced_tool = forced_tool
        self._max_new_tokens = max_new_tokens
        self._model_name = model_name
        self._load_ms = load_ms
        self._acc = ""
        self._emitted = 0
        self._stopped = False  # a stop string was found
        self._markers = stop + ((TOOL_CALL_OPEN,) if tools and not forced_tool else ())
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
            text = self._on_text(event.text)
            if self._stopped:
                ticket.cancel()
            if text:
                yield Chunk(text=text, model_name=self._model_name)
            return
        assert isinstance(event, EndEvent)
        self.done = True
        if event.finish_reason == "cancelled" and not self._stopped:  # not by this caller: the engine closed
            raise GenerationCancelledError(
                f"The request was cancelled after {event.output_tokens} tokens because {self._model_name}'s "
                "engine was closed. Load the model again (load_engine) and retry."
            )
        yield self._final(event)

    def _on_text(self, delta: str) -> str:
        self._acc += delta
        if self._forced_tool:
            return ""
        if self._stop:
            start = max(0, self._emitted - max(map(len, self._stop)))
            hits = [i for i in (self._acc.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self._acc = self._acc[: min(hits)]
                self._stopped = True
        limit = len(self._acc)
        if self._tools:
            at = self._acc.find(TOOL_CALL_OPEN)
            if at >= 0:
                limit = at
            elif self._emitted == 0 and (not self._acc.strip() or self._acc.lstrip().startswith(("{", "["))):
                limit = 0  # leading whitespace or a bare JSON tool call: decide when more text (or the end) comes
        if not self._stopped:
            limit = min(limit, len(self._acc) - partial_marker(self._acc, self._markers))
        if limit <= self._emitted:
            return ""
        text = self._acc[self._emitted : limit]
        self._emitted = limit
        return text

    def _final(self, end: EndEvent) -> Chunk:
        text = self._acc
        calls = []
        if self._forced_tool:
            _, calls = parse_tool_calls(TOOL_CALL_OPEN + "\n" + text, self._tools)
            if not calls:
                raise OutputTruncatedError(
                    f"The model did not finish its constrained tool call within max_new_tokens "
                    f"({self._max_new_tokens}); raise max_new_tokens. Output so far: {text!r:.200}",
                    text,
                )
            text = ""
        elif self._tools:
            text, calls = parse_tool_calls(text, self._tools)
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

    ``on_token`` is called with each chunk's text as it is added.
    """

    def __init__(self, on_token: Callable[[str], Any] | None = None) -> None:
        self._on_token = on_token
        self._parts: list[str] = []
        self._final: Chunk | None = None

    def add(self, chunk: Chunk) -> None:
        """Take one chunk (the final one carries finish reason, usage and timing)."""
        if chunk.text:
            self._parts.append(chunk.text)
            if self._on_token is not None:
                self._on_token(chunk.text)
        if chunk.is_final:
            self._final = chunk

    def generation(self) -> Generation:
        """The whole reply; call after the final chunk was added."""
        final = self._final
        assert final is not None and final.usage is not None and final.timing is not None
        return Generation(
            text="".join(self._parts),
            finish_reason=final.finish_reason or "stop",
            usage=final.usage,
            timing=final.timing,
            tool_calls=final.tool_calls,
            model_name=final.model_name,
        )


__all__ = ["Collector", "OutputParser", "partial_marker"]
