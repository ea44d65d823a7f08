"""cookbook/rag_llamaindex.py end to end on the default models: query engine, chat engine, reindexing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests._cross_encoder import cached_cross_encoder
from tests.cookbook.conftest import CORPUS

import rag_llamaindex as app
from llama_index_openvino import OpenVINOEmbedding

pytestmark = pytest.mark.slow

CORPUS_SOURCES = {f"corpus/{name}" for name in CORPUS}


def _answers(stdout: str) -> list[tuple[str, list[str]]]:
    """(answer, sources) for each answer the app printed: the answer, a "Sources:" line, "- file" lines."""
    parts = stdout.split("\n\nSources:\n")
    answers, out = [parts[0]], []
    for part in parts[1:]:
        lines = part.split("\n")
        n = next((i for i, line in enumerate(lines) if not line.startswith("- ")), len(lines))
        out.append((answers[-1], [line[2:] for line in lines[:n]]))
        answers.append("\n".join(lines[n:]))
    return out


def test_query_engine_streams_an_answer_with_sources(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--docs", str(corpus), "--db", str(tmp_path / "db"), "--max-tokens", "24", "--top-k", "2"]
    assert app.main([*argv, "--question", "Which port does the Kettle service listen on?"]) == 0
    out, err = capsys.readouterr()
    assert "3 added, 0 updated, 0 unchanged, 0 removed" in err
    [(answer, sources)] = _answers(out)
    assert answer.strip()
    assert sources[0] == "corpus/guides/kettle.md" and set(sources) <= CORPUS_SOURCES


def test_chat_mode_answers_follow_ups(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Who is the lead engineer of Marmot?\n\n"))
    argv = ["--docs", str(corpus), "--db", str(tmp_path / "db"), "--max-tokens", "16", "--top-k", "1", "--chat"]
    assert app.main([*argv, "--question", "When does the Zephyr pipeline run?"]) == 0
    answers = _answers(capsys.readouterr().out)
    assert len(answers) == 2 and all(answer.strip() for answer, _ in answers)
    assert [sources for _, sources in answers] == [["corpus/zephyr.md"], ["corpus/notes.txt"]]


def test_second_run_reuses_the_index_and_reindexes_changes(corpus: Path, tmp_path: Path) -> None:
    embed_model = OpenVINOEmbedding()
    index = app.open_index(tmp_path / "db", embed_model)
    first = app.index_documents(index, app.find_documents([corpus]))
    assert sorted(first.added) == sorted(CORPUS_SOURCES) and first.embedded == 3

    index = app.open_index(tmp_path / "db", embed_model)  # as a new process would
    again = app.index_documents(index, app.find_documents([corpus]))
    assert again.embedded == 0 and len(again.unchanged) == 3

    (corpus / "notes.txt").write_text("Marmot was renamed Beaver; its lead engineer is now Lin Okafor.\n")
    (corpus / "zephyr.md").unlink()
    changed = app.index_documents(index, app.find_documents([corpus]))
    assert changed.updated == ["corpus/notes.txt"] and changed.removed == ["corpus/zephyr.md"]
    assert changed.embedded == 1

    stored = index.vector_store.client.get(include=["documents", "metadatas"])
    assert sorted(m["source"] for m in stored["metadatas"]) == ["corpus/guides/kettle.md", "corpus/notes.txt"]
    assert not any("Ada Quist" in text for text in stored["documents"])
    [hit] = index.as_retriever(similarity_top_k=1).retrieve("Who leads the billing rewrite now?")
    assert "Lin Okafor" in hit.node.get_content()


def test_reranker_postprocessor(corpus: Path, tmp_path: Path, minilm_dir: Path, capsys: pytest.CaptureFixture) -> None:
    reranker = cached_cross_encoder(minilm_dir)  # a test cross-encoder: scores are arbitrary but real
    argv = ["--docs", str(corpus), "--db", str(tmp_path / "db"), "--max-tokens", "8", "--top-k", "2"]
    assert app.main([*argv, "--reranker", str(reranker), "--question", "What is Marmot?"]) == 0
    [(_, sources)] = _answers(capsys.readouterr().out)
    assert len(sources) == 2 and set(sources) <= CORPUS_SOURCES
