"""The runnable examples in the public classes' docstrings run, as written, on the local models.

Each ``Title::`` block of a docstring is executed in order in one namespace. Hub ids and placeholder
paths in the examples are replaced by the same models on disk (there is no network here); blocks
that are not self-contained are listed in ``SKIP`` with the reason.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests._cross_encoder import cached_cross_encoder

import langchain_openvino
import llama_index_openvino
import openvino_llm.engine.engine
import openvino_llm.retrieval.embeddings
import openvino_llm.retrieval.rerank

SKIP = {
    "Install": "a shell command, not Python",
    "In a retriever": "needs langchain-classic and a vector store built elsewhere",
    "In a query engine": "needs an index built elsewhere",
}
DOCUMENTED = [
    langchain_openvino.ChatOpenVINO,
    langchain_openvino.OpenVINOEmbeddings,
    langchain_openvino.OpenVINORerank,
    llama_index_openvino.OpenVINO,
    llama_index_openvino.OpenVINOEmbedding,
    llama_index_openvino.OpenVINORerank,
    openvino_llm.engine.engine.Engine,
    openvino_llm.retrieval.embeddings.EmbeddingModel,
    openvino_llm.retrieval.rerank.RerankModel,
]


def example_blocks(obj: Any) -> list[tuple[str, str]]:
    """(title, code) of every ``Title::`` literal block in ``obj``'s docstring."""
    lines = inspect.cleandoc(obj.__doc__ or "").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            title = lines[i].strip()[:-2].strip()
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                body.append(lines[i])
                i += 1
            blocks.append((title, textwrap.dedent("\n".join(body)).strip()))
        else:
            i += 1
    return blocks


def test_every_documented_class_has_examples() -> None:
    for obj in DOCUMENTED:
        runnable = [title for title, _ in example_blocks(obj) if not title.startswith(tuple(SKIP))]
        assert runnable, f"{obj.__qualname__} has no runnable example in its docstring"


@pytest.mark.parametrize("obj", DOCUMENTED, ids=lambda o: f"{o.__module__}.{o.__qualname__}")
def test_docstring_examples_run(
    obj: Any, smollm2_gguf: Path, minilm_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = {
        "path/to/model.gguf": str(smollm2_gguf),
        "sentence-transformers/all-MiniLM-L6-v2": str(minilm_dir),
        "cross-encoder/ms-marco-MiniLM-L-6-v2": str(cached_cross_encoder(minilm_dir)),
    }
    namespace: dict[str, Any] = {"__name__": f"docstring_example_{obj.__name__}"}
    ran = 0
    for title, code in example_blocks(obj):
        if title.startswith(tuple(SKIP)):
            continue
        for placeholder, path in local.items():
            code = code.replace(placeholder, path)
        # top-level ``await`` is allowed, as in a notebook or ``python -m asyncio``
        compiled = compile(
            code, f"<{obj.__qualname__} docstring: {title}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(compiled, namespace)
        if compiled.co_flags & inspect.CO_COROUTINE:
            asyncio.run(result)
        ran += 1
    assert ran
    assert capsys.readouterr().out.strip(), "the examples print their results"
