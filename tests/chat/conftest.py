"""Fixtures of the chat tests: engines on the tiny model given another family's chat template."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests._shared import EXACT
from tests.chat._families import with_template

from openvino_llm import load_engine
from openvino_llm.engine.engine import Engine


@pytest.fixture(scope="module")
def templated_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Makes a copy of the tiny model (weights linked) with the given chat template."""
    made: list[Path] = []

    def make(template: str) -> Path:
        folder = with_template(tiny_model, tmp_path_factory.mktemp("tpl") / "model", template)
        made.append(folder)
        return folder

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def templated(templated_dir: Callable[[str], Path]) -> Iterator[Callable[[str], Engine]]:
    """Makes an engine (exact precision) on the tiny model with the given chat template."""
    made: list[Engine] = []

    def make(template: str) -> Engine:
        engine = load_engine(templated_dir(template), device="CPU", ov_config=EXACT)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()
