"""The served paths ``openvino-llm bench`` measures: the model behind ``openvino-llm serve``.

Each system starts the real command in a subprocess on 127.0.0.1 (a free port), on the same model
folder, device and OpenVINO properties as the in-process systems, and talks to it the way the
adapters' remote mode does, through :class:`~openvino_llm.engine.remote.RemoteEngine` (SSE
streaming over httpx). So "server-stream" against "core-engine" is the cost of the HTTP hop, and
the Ray systems add Serve's proxy and gateway (one or two replicas of the engine).

A server is started once per run, on first use (the single-stream runner or the concurrency
measurement), and stopped with SIGINT (Ray drains and shuts its local cluster down) when the run ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..engine.remote import RemoteEngine
from .systems import Runner, System, SystemContext, Unavailable, engine_sample, require

#: How long a server may take to answer /health (a Ray cluster on a busy 2-core machine is slow to start).
START_TIMEOUT_S = 600.0


class ServedModel:
    """``openvino-llm serve MODEL`` (with ``extra_args``) in a subprocess, and a RemoteEngine on it."""

    def __init__(self, ctx: SystemContext, name: str, extra_args: tuple[str, ...]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = Path(tempfile.mkstemp(prefix=f"openvino-llm-bench-{name}-", suffix=".log")[1])
        argv = [
            sys.executable, "-m", "openvino_llm.cli", "serve", str(ctx.model_path),
            "--host", "127.0.0.1", "--port", str(self.port), "--device", ctx.device,
            "--ov-config", json.dumps(ctx.properties), "--max-tokens", str(max(4096, ctx.max_new_tokens)),
            *extra_args,
        ]  # fmt: skip
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_healthy()
            self.engine = RemoteEngine(self.url, timeout=600, max_retries=0)
        except BaseException:
            self.close()
            raise

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable("failed", f"the server exited with {self.process.returncode}: {self._tail()}")
            try:
                if httpx.get(self.url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise Unavailable("failed", f"the server did not answer /health within {START_TIMEOUT_S:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        return " ".join(self.log.read_text(errors="replace").split()[-60:])

    def close(self) -> None:
        """Stop the server (SIGINT, then SIGKILL after 60 s) and remove its log."""
        if getattr(self, "engine", None) is not None:
            self.engine.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.log.unlink(missing_ok=True)


#: The served systems: the command-line flags each adds to ``openvino-llm serve``.
_FLAGS: dict[str, tuple[str, ...]] = {
    "server-stream": (),
    "ray-serve-1": ("--ray", "--replicas", "1", "--num-cpus", "0.5"),
    "ray-serve-2": ("--ray", "--replicas", "2", "--num-cpus", "0.5"),
}


def served(ctx: SystemContext, name: str) -> ServedModel:
    """The running server of system ``name`` for ``ctx`` (started on first use, stopped with the run)."""
    if name not in ctx.servers:
        require("fastapi", "openvino-llm[serve]")
        require("uvicorn", "openvino-llm[serve]")
        if name.startswith("ray-"):
            require("ray.serve", "openvino-llm[ray]")
        server = ServedModel(ctx, name, _FLAGS[name])
        ctx.servers[name] = server
        ctx.cleanup.callback(server.close)
    return ctx.servers[name]  # type: ignore[no-any-return]


def _builder(name: str) -> Any:
    def build(ctx: SystemContext) -> Runner:
        engine = served(ctx, name).engine
        params = ctx.params()
        return lambda messages: engine_sample(engine, messages, params)

    return build


SERVED: dict[str, System] = {
    "server-stream": System("openvino-llm serve (subprocess) + RemoteEngine.stream (SSE)", _builder("server-stream")),
    "ray-serve-1": System("openvino-llm serve --ray --replicas 1 + RemoteEngine.stream", _builder("ray-serve-1")),
    "ray-serve-2": System("openvino-llm serve --ray --replicas 2 + RemoteEngine.stream", _builder("ray-serve-2")),
}

__all__ = ["SERVED", "START_TIMEOUT_S", "ServedModel", "served"]
