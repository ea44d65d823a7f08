"""The document side of the RAG apps, shared by the LangChain and LlamaIndex versions.

Finding the text files to index, telling which are new, changed, unchanged or removed since the
last run (by SHA-256 of their text), and the progress bar: nothing here depends on a framework.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's prose: README and docs/*.md, not docs/perf/ (benchmark tables are retrieval noise).
DEFAULT_DOCS = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
SUFFIXES = (".md", ".txt", ".rst")


def default_db(name: str) -> Path:
    """A Chroma folder in the openvino-llm cache (``$OPENVINO_LLM_CACHE`` or ``~/.cache/openvino-llm``)."""
    return Path(os.environ.get("OPENVINO_LLM_CACHE") or Path.home() / ".cache" / "openvino-llm") / name


def quiet_progress() -> bool:
    """No progress bars when stderr is not a terminal or in CI."""
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def progress(total: int, unit: str) -> tqdm:
    """The indexing progress bar (hidden when :func:`quiet_progress`)."""
    return tqdm(total=total, desc="Indexing", unit=unit, disable=quiet_progress() or None)


def find_documents(paths: Sequence[Path]) -> dict[str, Path]:
    """Text files under ``paths`` by source name: a file's own name, or its path from a folder's parent."""
    found: dict[str, Path] = {}
    for root in paths:
        root = root.expanduser().resolve()
        if root.is_file():
            found[root.name] = root
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix.lower() in SUFFIXES:
                    found[path.relative_to(root.parent).as_posix()] = path
        else:
            raise SystemExit(f"error: --docs {root} does not exist; give a folder or a text file.")
    if not found:
        raise SystemExit(f"error: no {'/'.join(SUFFIXES)} files under {', '.join(map(str, paths))}.")
    return found


@dataclass(frozen=True)
class SourceText:
    """A document to embed: its source name, text and the text's SHA-256."""

    source: str
    text: str
    sha256: str


@dataclass
class IndexReport:
    """What an index update did, by source name, and how many chunks (nodes) it embedded."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    embedded: int = 0


def plan_update(
    documents: Mapping[str, Path], stored_sha256: Mapping[str, str]
) -> tuple[IndexReport, list[SourceText]]:
    """Compare ``documents`` with what the index holds (source -> SHA-256): what to embed, what to drop.

    The report's ``updated`` and ``removed`` sources are the ones whose stored chunks must be deleted.
    """
    report = IndexReport()
    to_embed: list[SourceText] = []
    for source, path in documents.items():
        text = path.read_text(encoding="utf-8", errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if stored_sha256.get(source) == digest:
            report.unchanged.append(source)
            continue
        (report.updated if source in stored_sha256 else report.added).append(source)
        to_embed.append(SourceText(source, text, digest))
    report.removed = [source for source in stored_sha256 if source not in documents]
    return report, to_embed
