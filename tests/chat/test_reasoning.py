"""Reasoning blocks split from the answer, whole and streamed."""

from __future__ import annotations

import pytest

from openvino_llm.chat.reasoning import ReasoningSplitter, split_reasoning, starts_inside, template_reasons

REPLY = "<think>\nThe user wants 6*7. That is 42.\n</think>\n\nIt is 42."


def _stream(text: str, step: int, *, inside: bool = False) -> tuple[str, str]:
    splitter = ReasoningSplitter(inside=inside)
    reasoning = content = ""
    for i in range(0, len(text), step):
        r, c = splitter.feed(text[i : i + step])
        reasoning += r
        content += c
    r, c = splitter.flush()
    return reasoning + r, content + c


def test_whole_reply():
    assert split_reasoning(REPLY) == ("The user wants 6*7. That is 42.", "It is 42.")


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 100])
def test_streamed_in_any_pieces_gives_the_same_split(step):
    reasoning, content = _stream(REPLY, step)
    assert reasoning.strip() == "The user wants 6*7. That is 42."
    assert content == "It is 42."


def test_reasoning_streams_before_the_block_ends():
    splitter = ReasoningSplitter()
    assert splitter.feed("<think>Let me") == ("Let me", "")
    assert splitter.feed(" think</th") == (" think", "")  # the partial close tag is held back
    assert splitter.in_reasoning
    assert splitter.feed("ink>Answer") == ("", "Answer")


def test_reply_that_starts_inside_the_block():
    """DeepSeek-R1 distills: the template opens <think>, the output only closes it."""
    assert _stream("Hmm, 42.</think>\n\n42", 2, inside=True) == ("Hmm, 42.", "42")


def test_no_reasoning_is_all_content():
    for step in (1, 4):
        assert _stream("Hello <b>world</b>, <think> later is content", step) == (
            "",
            "Hello <b>world</b>, <think> later is content",
        )
    assert _stream("<thin", 1) == ("", "<thin")  # a reply cut inside what looked like a tag


def test_unclosed_block_is_reasoning():
    assert _stream("<think>still thinking when the limit came", 3) == ("still thinking when the limit came", "")


def test_template_and_prompt_checks():
    assert template_reasons("{{ '</think>' }}") and template_reasons("{{ message.reasoning_content }}")
    assert not template_reasons("{{ message['content'] }}")
    assert starts_inside("<|Assistant|><think>\n")
    assert not starts_inside("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not starts_inside("<|im_start|>assistant\n")
