"""Reasoning through the server: ``reasoning_content`` in replies and stream deltas, the thinking switch.

The tiny model with DeepSeek-R1's template (which opens ``<think>``): what it writes is reasoning.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._shared import EXACT
from tests.chat._families import DEEPSEEK_R1, with_template
from tests.serve.conftest import LiveServer

from openvino_llm import GenerationParams
from openvino_llm.engine import Engine, load_engine
from openvino_llm.serve import create_app

openai = pytest.importorskip("openai")
USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def thinking_engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    folder = with_template(tiny_model, tmp_path_factory.mktemp("r1") / "model", DEEPSEEK_R1)
    return load_engine(folder, device="CPU", ov_config=EXACT)


@pytest.fixture(scope="module")
def client(thinking_engine: Engine) -> Iterator[openai.OpenAI]:
    with LiveServer(create_app(thinking_engine, api_key="")) as server:
        yield openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def test_reasoning_content_in_replies_and_streams(client: openai.OpenAI, thinking_engine: Engine) -> None:
    expected = thinking_engine.generate(USER, GenerationParams(max_new_tokens=12, temperature=0))
    assert expected.reasoning.strip()
    name = thinking_engine.model_name
    reply = client.chat.completions.create(model=name, messages=USER, max_tokens=12, temperature=0)
    message = reply.choices[0].message
    assert message.model_extra["reasoning_content"] == expected.reasoning
    assert (message.content or "") == expected.text
    chunks = list(client.chat.completions.create(model=name, messages=USER, max_tokens=12, temperature=0, stream=True))
    pieces = [c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices]
    assert "".join(p for p in pieces if p) == expected.reasoning
    assert sum(1 for p in pieces if p) > 1  # streamed as produced


def test_thinking_switch_through_chat_template_kwargs(client: openai.OpenAI, thinking_engine: Engine) -> None:
    off = GenerationParams(max_new_tokens=12, temperature=0, reasoning=False)
    expected = thinking_engine.generate(USER, off)
    reply = client.chat.completions.create(
        model=thinking_engine.model_name,
        messages=USER,
        max_tokens=12,
        temperature=0,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert reply.choices[0].message.content == expected.text and expected.text.strip()
    assert "reasoning_content" not in (reply.choices[0].message.model_extra or {})
