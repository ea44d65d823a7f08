"""Streamed tool calls: :class:`ToolCallDelta` pieces from the text of calls as it is produced."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from ...types import ToolCall, ToolCallDelta, ToolSpec
from .base import ToolFamily


class ToolCallStream:
    """Turns the growing text of a reply's calls (from the first marker on) into deltas.

    A call's first delta has its ``id`` and ``name``; argument text follows as it is written
    (families whose arguments are not JSON text report them whole at the end). :meth:`finish`
    gives the final calls the streamed ids and emits whatever the stream did not show yet, so the
    deltas of each call add up to its final arguments.
    """

    def __init__(self, family: ToolFamily, tools: Sequence[ToolSpec]) -> None:
        self._family = family
        self._names = {t["name"] for t in tools}
        self._ids: list[str] = []
        self._called: list[str] = []
        self._args: list[str] = []

    def update(self, call_text: str) -> list[ToolCallDelta]:
        """Deltas for what ``call_text`` (the whole text from the first marker) adds."""
        deltas: list[ToolCallDelta] = []
        for i, part in enumerate(self._family.partial(call_text)):
            if i >= len(self._ids):
                if part.name not in self._names:
                    break
                self._ids.append(self._family.new_id())
                self._called.append(part.name)
                self._args.append("")
                deltas.append(ToolCallDelta(index=i, id=self._ids[i], name=part.name))
            elif part.name != self._called[i]:
                break
            seen = self._args[i]
            if len(part.arguments) > len(seen) and part.arguments.startswith(seen):
                deltas.append(ToolCallDelta(index=i, arguments=part.arguments[len(seen) :]))
                self._args[i] = part.arguments
        return deltas

    def finish(self, calls: Sequence[ToolCall]) -> tuple[list[ToolCall], list[ToolCallDelta]]:
        """The final ``calls`` with the streamed ids, and the deltas that complete the stream."""
        out: list[ToolCall] = []
        deltas: list[ToolCallDelta] = []
        for i, call in enumerate(calls):
            if i < len(self._ids) and self._called[i] == call.name:
                call = replace(call, id=self._ids[i])
                if not self._args[i]:
                    deltas.append(ToolCallDelta(index=i, arguments=json.dumps(call.arguments, ensure_ascii=False)))
            else:
                args = json.dumps(call.arguments, ensure_ascii=False)
                deltas.append(ToolCallDelta(index=i, id=call.id, name=call.name, arguments=args))
            out.append(call)
        return out, deltas

    @property
    def started(self) -> bool:
        """Whether any delta was produced."""
        return bool(self._ids)


__all__ = ["ToolCallStream"]
