"""cookbook/agent_llamaindex.py end to end on the real model (Qwen2.5-Coder-0.5B): a FunctionAgent's real tool
calls, the page replayed by vcrpy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import vcr

import agent_llamaindex as app
import agent_tools
import rag_llamaindex
from llama_index_openvino import OpenVINO, OpenVINOEmbedding

pytestmark = pytest.mark.slow

# record_mode "none": only the recorded request is answered; anything else (any real network) fails the test.
replay = vcr.VCR(cassette_library_dir=str(Path(__file__).parent / "cassettes"), record_mode="none")


@pytest.mark.real_model  # whether the answer uses the tool's result is the model's judgment: SmolLM2 cannot
def test_fetches_the_page_and_answers_from_it(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture, real_model: str
) -> None:
    question = "Fetch http://wiki.internal.test/kettle and tell me which port the Kettle service uses."
    argv = ["--docs", str(corpus), "--db", str(tmp_path / "db"), "--max-tokens", "64", "--question", question]
    argv += ["--model", real_model]
    with replay.use_cassette("kettle_page.yaml") as cassette:
        assert app.main(argv) == 0
    assert cassette.play_count == 1  # the tool really made the HTTP request
    out = capsys.readouterr().out
    assert "-> fetch_page({'url': 'http://wiki.internal.test/kettle'})" in out
    assert "<- fetch_page: Kettle service" in out
    answer = out.split("Answer: ", 1)[1]
    assert "6123" in answer  # the port is only on the fetched page: the answer used the tool's result


@pytest.mark.real_model  # whether the answer uses the tool's result is the model's judgment: SmolLM2 cannot
def test_calculator_call_and_result_are_reported_in_order(corpus: Path, tmp_path: Path, real_model: str) -> None:
    index = rag_llamaindex.open_index(tmp_path / "db", OpenVINOEmbedding())
    question = "What is 17 plus 25?"
    agent = app.build_agent(OpenVINO(model=real_model, max_new_tokens=48, temperature=0), index, question)

    async def collect() -> list[agent_tools.Event]:
        return [event async for event in app.run(agent, question)]

    events = asyncio.run(collect())
    calls = [e for e in events if e.kind != "token"]
    assert [e.kind for e in calls] == ["tool_call", "tool_result"] and calls[0].name == calls[1].name == "calculator"
    args = calls[0].args or {}
    a, b, op = args["a"], args["b"], args["operation"]
    expected = {"add": a + b, "subtract": a - b, "multiply": a * b, "divide": a / b if b else None}[op]
    assert float(calls[1].text) == pytest.approx(expected)  # the tool really ran
    after = events[events.index(calls[1]) + 1 :]
    answer = "".join(e.text for e in after if e.kind == "token")
    assert calls[1].text in answer  # the answer uses the tool's result


def test_search_docs_tool_reads_the_index(corpus: Path, tmp_path: Path) -> None:
    index = rag_llamaindex.open_index(tmp_path / "db", OpenVINOEmbedding())
    rag_llamaindex.index_documents(index, rag_llamaindex.find_documents([corpus]))
    text = app.make_search_docs(index, k=1).call(query="Which port does the Kettle service use?").content
    assert text.startswith("[corpus/guides/kettle.md]") and "6123" in text


def test_fetch_page_argument_is_pinned_to_the_question_urls() -> None:
    schema = app.make_fetch_page(["http://a.test/x", "http://b.test/y"]).metadata.get_parameters_dict()
    assert schema["properties"]["url"]["enum"] == ["http://a.test/x", "http://b.test/y"]
    assert "enum" not in app.make_fetch_page([]).metadata.get_parameters_dict()["properties"]["url"]
