"""Reasoning kept apart from the answer: ``<think>...</think>`` blocks.

Qwen3, QwQ, DeepSeek-R1 distills and Phi-4-reasoning write their reasoning between ``<think>`` and
``</think>``. DeepSeek-R1 templates open the block in the prompt, so the output *starts inside* it;
:func:`starts_inside` tells that from the rendered prompt. :class:`ReasoningSplitter` splits a
stream into reasoning and content as it is produced, holding back only what could be the start of
a tag. openvino-genai's ``ReasoningIncrementalParser`` was measured (2026.4) to swallow all content
of a reply without an opening tag when it expects one, so the splitting is our own.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class ReasoningTags:
    """The tags of a family's reasoning block."""

    open: str = THINK_OPEN
    close: str = THINK_CLOSE


def template_reasons(template: str, tags: ReasoningTags = ReasoningTags()) -> bool:
    """Whether a chat template knows reasoning blocks (it mentions the closing tag or ``reasoning_content``)."""
    return tags.close in template or "reasoning_content" in template


def starts_inside(prompt: str, tags: ReasoningTags = ReasoningTags()) -> bool:
    """Whether the rendered prompt leaves the model inside an open reasoning block."""
    opened = prompt.rfind(tags.open)
    return opened >= 0 and prompt.find(tags.close, opened) < 0 and not prompt[opened + len(tags.open) :].strip()


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ReasoningSplitter:
    """Splits streamed text into (reasoning, content) pieces.

    Reasoning is only recognized at the start of the reply (leading whitespace allowed) or, with
    ``inside=True``, from the first character; a ``<think>`` later in the answer is content.
    """

    def __init__(self, tags: ReasoningTags = ReasoningTags(), *, inside: bool = False) -> None:
        self._tags = tags
        self._state = "inside" if inside else "start"  # start -> inside -> post -> after
        self._pending = ""

    @property
    def in_reasoning(self) -> bool:
        return self._state == "inside"

    def feed(self, delta: str) -> tuple[str, str]:
        """The reasoning and content that ``delta`` completes (some text may be held back)."""
        text = self._pending + delta
        self._pending = ""
        reasoning = ""
        if self._state == "start":
            stripped = text.lstrip()
            if stripped.startswith(self._tags.open):
                self._state = "inside"
                text = stripped[len(self._tags.open) :]
            elif self._tags.open.startswith(stripped):  # maybe the tag, not complete yet
                self._pending = text
                return "", ""
            else:
                self._state = "after"
        if self._state == "inside":
            at = text.find(self._tags.close)
            if at < 0:
                keep = _partial_suffix(text, self._tags.close)
                self._pending = text[len(text) - keep :] if keep else ""
                return text[: len(text) - keep], ""
            reasoning, text = text[:at], text[at + len(self._tags.close) :]
            self._state = "post"
        if self._state == "post":  # the blank lines between the block and the answer are dropped
            text = text.lstrip()
            if not text:
                return reasoning, ""
            self._state = "after"
        return reasoning, text

    def flush(self) -> tuple[str, str]:
        """What is still held back at the end of the reply."""
        text, self._pending = self._pending, ""
        if self._state == "inside":
            return text, ""
        return "", text


def split_reasoning(text: str, tags: ReasoningTags = ReasoningTags(), *, inside: bool = False) -> tuple[str, str]:
    """(reasoning, content) of a whole reply."""
    splitter = ReasoningSplitter(tags, inside=inside)
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.flush()
    return (r1 + r2).strip(), c1 + c2


__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "ReasoningSplitter",
    "ReasoningTags",
    "split_reasoning",
    "starts_inside",
    "template_reasons",
]
