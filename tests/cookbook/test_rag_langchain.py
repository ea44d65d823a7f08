"""cookbook/rag_langchain.py end to end on the default models: index, answer with sources, reindex."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests._cross_encoder import cached_cross_encoder
from tests.cookbook.conftest import COOKBOOK, CORPUS
from tests.real._model import EMBEDDED_NAME

import rag_langchain as app
from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings

pytestmark = pytest.mark.slow


def _sources(stdout: str) -> list[str]:
    """The file names listed under "Sources:" at the end of the app's output."""
    assert "\n\nSources:\n" in stdout, stdout
    return [line[2:] for line in stdout.split("\n\nSources:\n", 1)[1].splitlines() if line.startswith("- ")]


def test_help_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, str(COOKBOOK / "rag_langchain.py"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--model", "--device", "--weight-format", "--docs", "--db", "--question", "--reranker"):
        assert option in out


def test_answers_with_sources_from_the_corpus(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "db"
    argv = ["--docs", str(corpus), "--db", str(db), "--max-tokens", "24", "--top-k", "2"]
    assert app.main([*argv, "--question", "Which port does the Kettle service listen on?"]) == 0
    out, err = capsys.readouterr()
    assert "3 added, 0 updated, 0 unchanged, 0 removed" in err
    answer = out.split("\n\nSources:\n", 1)[0]
    assert answer.strip(), "the model wrote no answer"
    sources = _sources(out)
    assert sources and set(sources) <= {f"corpus/{name}" for name in CORPUS}
    assert sources[0] == "corpus/guides/kettle.md"  # the retriever found the document that holds the answer
    assert db.is_dir() and any(db.iterdir())  # persisted on disk


def test_second_run_reuses_the_index_and_reindexes_changes(corpus: Path, tmp_path: Path) -> None:
    embeddings = OpenVINOEmbeddings()
    store = app.open_store(tmp_path / "db", embeddings)
    first = app.index_documents(store, app.find_documents([corpus]))
    assert sorted(first.added) == sorted(f"corpus/{name}" for name in CORPUS) and first.embedded == 3

    # A new process would open the same folder: reopen it from disk.
    store = app.open_store(tmp_path / "db", embeddings)
    again = app.index_documents(store, app.find_documents([corpus]))
    assert again.embedded == 0 and len(again.unchanged) == 3 and not again.added

    (corpus / "notes.txt").write_text("Marmot was renamed Beaver; its lead engineer is now Lin Okafor.\n")
    (corpus / "zephyr.md").unlink()
    changed = app.index_documents(store, app.find_documents([corpus]))
    assert changed.updated == ["corpus/notes.txt"] and changed.removed == ["corpus/zephyr.md"]
    assert changed.unchanged == ["corpus/guides/kettle.md"] and changed.embedded == 1

    contents = store.get(include=["documents", "metadatas"])
    assert sorted(m["source"] for m in contents["metadatas"]) == ["corpus/guides/kettle.md", "corpus/notes.txt"]
    assert any("Lin Okafor" in text for text in contents["documents"])
    assert not any("Ada Quist" in text for text in contents["documents"])  # the old version is gone
    [hit] = app.retrieve(store, "Who leads the billing rewrite now?", k=1)
    assert "Lin Okafor" in hit.page_content


def test_answer_is_streamed(corpus: Path, tmp_path: Path) -> None:
    store = app.open_store(tmp_path / "db", OpenVINOEmbeddings())
    app.index_documents(store, app.find_documents([corpus]))
    context = app.retrieve(store, "When does the Zephyr pipeline run?", k=1)
    assert context[0].metadata["source"] == "corpus/zephyr.md"
    pieces = list(app.stream_answer(ChatOpenVINO(max_tokens=16), "When does the Zephyr pipeline run?", context))
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_reranker_option(corpus: Path, tmp_path: Path, minilm_dir: Path, capsys: pytest.CaptureFixture) -> None:
    reranker = cached_cross_encoder(minilm_dir)  # a test cross-encoder: scores are arbitrary but real
    argv = ["--docs", str(corpus), "--db", str(tmp_path / "db"), "--max-tokens", "8", "--top-k", "2"]
    assert app.main([*argv, "--reranker", str(reranker), "--question", "What is Marmot?"]) == 0
    sources = _sources(capsys.readouterr().out)
    assert len(sources) == 2 and set(sources) <= {f"corpus/{name}" for name in CORPUS}


def test_missing_docs_folder_is_reported_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--docs .*nowhere does not exist"):
        app.main(["--docs", str(tmp_path / "nowhere"), "--db", str(tmp_path / "db"), "--question", "?"])
    assert not (tmp_path / "db").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"no \.md/\.txt/\.rst files"):
        app.find_documents([tmp_path / "empty"])


def test_default_corpus_is_the_project_prose_without_benchmark_tables() -> None:
    found = app.find_documents(list(app.DEFAULT_DOCS))
    assert {"README.md", "ARCHITECTURE.md", "PERFORMANCE.md"} <= set(found)
    assert not [path for path in found.values() if "perf" in path.parent.parts], "docs/perf/ tables were indexed"


DEMO_QUESTION = "Which exception is raised when the device is not available?"


@pytest.mark.real_model
def test_make_demo_answers_the_readme_question_right(
    tmp_path: Path, capsys: pytest.CaptureFixture, real_model: str
) -> None:
    """What ``make demo`` runs (same arguments, this project's documents), on the default chat model."""
    argv = ["--db", str(tmp_path / "db"), "--top-k", "2", "--question", DEMO_QUESTION]
    if real_model != EMBEDDED_NAME:  # OPENVINO_LLM_TEST_REAL_MODEL: the demo on that model instead
        argv += ["--model", real_model]
    assert app.main(argv) == 0
    out = capsys.readouterr().out
    answer = out.split("\n\nSources:\n", 1)[0]
    assert "DeviceNotAvailableError" in answer, answer
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", answer) if len(s.strip()) > 3]
    assert sentences and len(sentences) == len(set(sentences)), f"a sentence is repeated: {answer!r}"
    sources = _sources(out)
    assert sources and set(sources) <= set(app.find_documents(list(app.DEFAULT_DOCS)))
