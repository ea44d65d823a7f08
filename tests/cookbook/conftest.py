"""Fixtures of the cookbook tests: the apps' folder on sys.path, a small corpus, the shared test cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
if str(COOKBOOK) not in sys.path:  # the apps are scripts: ``import rag_langchain`` as they import each other
    sys.path.insert(0, str(COOKBOOK))

# Three short documents, one fact each, so a retrieval can be checked by which file it returns.
CORPUS = {
    "zephyr.md": "# Zephyr pipeline\n\nThe Zephyr pipeline compresses river sensor logs. It runs every Tuesday "
    "at 04:00 and writes its reports to the archive bucket named heron-7.\n",
    "guides/kettle.md": "# Kettle service\n\nThe Kettle service brews tea for the office robots. Its default "
    "temperature is 85 degrees Celsius and it listens on port 6123.\n",
    "notes.txt": "Marmot is the codename of the billing rewrite. Its lead engineer is Ada Quist and it ships "
    "in the spring release.\n",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder with the three CORPUS files (source names are relative to the folder's parent)."""
    root = tmp_path / "corpus"
    for name, text in CORPUS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _offline(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app uses the test session's model cache and never reaches a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.setenv("CI", "true")  # no progress bars in captured output
