"""cookbook/agent_langgraph.py end to end on the real model (Qwen2.5-Coder-0.5B): real tool calls, the web page
replayed by vcrpy."""

from __future__ import annotations

from pathlib import Path

import pytest
import vcr

import agent_langgraph as app
import agent_tools
import rag_langchain
from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings

pytestmark = pytest.mark.slow

CASSETTES = Path(__file__).parent / "cassettes"
# record_mode "none": only the recorded request is answered; anything else (any real network) fails the test.
replay = vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none")


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
    assert "<- fetch_page: Kettle service" in out and "var tracking" not in out  # page text, no script
    answer = out.split("Answer: ", 1)[1]
    assert "6123" in answer  # the port is only on the fetched page: the answer used the tool's result


@pytest.mark.real_model  # whether the answer uses the tool's result is the model's judgment: SmolLM2 cannot
def test_calculator_call_and_result_are_reported_as_they_happen(corpus: Path, tmp_path: Path, real_model: str) -> None:
    store = rag_langchain.open_store(tmp_path / "db", OpenVINOEmbeddings())
    agent = app.build_agent(ChatOpenVINO(model=real_model, max_tokens=48, temperature=0), app.default_tools(store))
    events = list(app.run(agent, "What is 1234 multiplied by 5678?"))
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["tool_call", "tool_result"], kinds  # the call comes first, then its result
    call, result = events[0], events[1]
    assert call.name == "calculator" and result.name == "calculator"
    a, b = call.args["a"], call.args["b"]
    expected = {"add": a + b, "subtract": a - b, "multiply": a * b, "divide": a / b if b else None}
    assert float(result.text) == pytest.approx(expected[call.args["operation"]])  # the tool really ran
    answer = "".join(e.text for e in events[2:] if e.kind == "token")
    assert result.text in answer  # the answer uses the tool's result


def test_calculator_and_url_pinning() -> None:
    assert app.calculator.invoke({"a": 1234, "operation": "multiply", "b": 5678}) == "7006652"
    assert app.calculator.invoke({"a": 1, "operation": "divide", "b": 0}).startswith("error:")
    [schema] = app.tool_schemas([app.fetch_page], ["http://a.test/x", "https://b.test/y?q=1"])
    assert schema["function"]["parameters"]["properties"]["url"]["enum"] == ["http://a.test/x", "https://b.test/y?q=1"]
    assert agent_tools.URL.findall("Read http://a.test/x, then (https://b.test/y?q=1).") == [
        "http://a.test/x",
        "https://b.test/y?q=1",
    ]


def test_search_docs_tool_reads_the_rag_index(corpus: Path, tmp_path: Path) -> None:
    store = rag_langchain.open_store(tmp_path / "db", OpenVINOEmbeddings())
    rag_langchain.index_documents(store, rag_langchain.find_documents([corpus]))
    text = app.make_search_docs(store, k=1).invoke({"query": "Which port does the Kettle service use?"})
    assert text.startswith("[corpus/guides/kettle.md]") and "6123" in text
