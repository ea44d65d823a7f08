"""Live servers for the serve tests: uvicorn in a thread on 127.0.0.1, a free port picked by the OS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra")
pytest.importorskip("uvicorn", reason="the server needs the serve extra")

import uvicorn
from tests._cross_encoder import cached_cross_encoder
from tests._shared import EXACT

from openvino_llm.engine import Engine, load_engine
from openvino_llm.retrieval import EmbeddingModel, RerankModel
from openvino_llm.serve import Limits, create_app

API_KEY = "sk-test-0123456789"


class LiveServer:
    """A uvicorn server running an app in a daemon thread; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    @property
    def state(self) -> Any:
        return self.app.state.server


@pytest.fixture(scope="session")
def tiny_engine(tiny_model: Path) -> Engine:
    """The tiny random Llama at exact precision: batched greedy output equals sequential output."""
    return load_engine(tiny_model, device="CPU", ov_config=EXACT)


@pytest.fixture(scope="session")
def embedder(minilm_dir: Path, cache_dir: Path) -> EmbeddingModel:
    return EmbeddingModel(minilm_dir, device="CPU", ov_config={"INFERENCE_PRECISION_HINT": "f32"}, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def reranker(minilm_dir: Path, cache_dir: Path) -> RerankModel:
    pytest.importorskip("torch", reason="building the test cross-encoder needs torch")
    folder = cached_cross_encoder(minilm_dir)
    return RerankModel(folder, device="CPU", ov_config={"INFERENCE_PRECISION_HINT": "f32"}, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def tiny_server(tiny_engine: Engine, embedder: EmbeddingModel, reranker: RerankModel) -> Iterator[LiveServer]:
    """The tiny model with embeddings and a reranker, no API key, default limits."""
    app = create_app(tiny_engine, embedding_model=embedder, rerank_model=reranker, api_key="")
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def smol_server(smollm2_gguf: Path) -> Iterator[LiveServer]:
    """SmolLM2-135M (a real model: tool calls and structured output that mean something)."""
    engine = load_engine(smollm2_gguf, device="CPU", ov_config=EXACT)
    with LiveServer(create_app(engine, api_key="", limits=Limits(max_tokens=512))) as server:
        yield server
