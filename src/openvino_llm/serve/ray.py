"""Scale-out on Ray Serve: the same OpenAI-compatible app, one :class:`~openvino_llm.Engine` per replica.

Needs the ``ray`` extra: ``pip install "openvino-llm[ray]"``. Two deployments make one Serve
application::

    Ray's HTTP proxy -> OpenVINOLLMGateway (ingress, no model, num_cpus=0)
                     -> OpenVINOLLMReplica x N (each runs create_app(engine) with its own Engine)

The replicas run the very app of ``openvino-llm serve`` (routes, API key, limits, metrics), so a
client sees the same API; every answer carries an ``x-openvino-llm-replica`` header naming the
replica that served it. The gateway exists for failures: when a replica dies with requests in
flight, Ray's proxy would answer a bare 500 (or cut the stream); the gateway answers those requests
with an OpenAI-shaped 503 (``Retry-After``), or ends an SSE stream with an error event and
``data: [DONE]``. New requests go to the surviving replicas while Ray starts a replacement.

The model is resolved (exported or compressed if needed) once, where the application is built
(the driver, or the task that runs :func:`app_builder` for ``serve run``/``serve deploy``), into the
shared cache; replicas get the resolved path. On a multi-node cluster the cache folder must be
on a shared file system (or the model an IR folder / .gguf present at the same path on every node).

    >>> from openvino_llm.serve.ray import RayOptions, build_app, connect, deploy
    >>> connect()                                    # a local Ray on 127.0.0.1 (or connect("auto") to join one)
    >>> app = build_app("model.gguf", options=RayOptions(replicas=2, num_cpus=1))
    >>> deploy(app, port=8000)                       # serves on 127.0.0.1:8000 once every replica is up
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send

from ..errors import InvalidParameterError
from .app import create_app
from .limits import Limits, json_response, read_body, resolve_api_key, too_large_error
from .schemas import error_body

log = logging.getLogger("openvino_llm.serve.ray")

#: Response header naming the replica that served a request.
REPLICA_HEADER = "x-openvino-llm-replica"
#: The Serve application's default name.
APP_NAME = "openvino-llm"
#: Ray's usage-stats switch; :func:`connect` turns it off unless the caller set it.
USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"

_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class RayOptions:
    """How many replicas, and what each one gets.

    - ``replicas``: a fixed number of replicas (ignored when ``autoscale`` is set).
    - ``autoscale``: ``(min, max)`` replicas, scaled on ongoing requests per replica
      (``target_ongoing_requests``; the engine batches, so a replica takes several at once).
    - ``num_cpus``: CPUs Ray reserves per replica (fractions allowed). This is scheduling only:
      the OpenVINO threads of a replica are set with ``ov_config={"INFERENCE_NUM_THREADS": n}``.
    - ``health_check_period_s``: how often Serve checks replicas (a dead one is replaced after it).
    - ``graceful_shutdown_timeout_s``: how long a stopping replica drains its requests.
    """

    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    target_ongoing_requests: int = 8
    num_cpus: float = 1.0
    health_check_period_s: float = 5.0
    graceful_shutdown_timeout_s: float = 60.0
    extra_actor_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise InvalidParameterError(f"replicas must be an int >= 1, got {self.replicas!r}.")
        if self.autoscale is not None:
            lo, hi = self.autoscale
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or lo < 0 or hi < max(lo, 1):
                raise InvalidParameterError(
                    f"autoscale must be (min, max) with 0 <= min <= max, max >= 1; got {self.autoscale!r}."
                )
        t = self.target_ongoing_requests
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise InvalidParameterError(f"target_ongoing_requests must be an int >= 1, got {t!r}.")
        for name in ("num_cpus", "health_check_period_s", "graceful_shutdown_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidParameterError(f"{name} must be a number >= 0, got {value!r}.")
        if self.health_check_period_s <= 0:
            raise InvalidParameterError("health_check_period_s must be > 0.")


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` -> ``(min, max)`` (raises :class:`~openvino_llm.InvalidParameterError`)."""
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        bounds = (int(lo), int(hi))
    except ValueError:
        raise InvalidParameterError(f"--autoscale takes MIN:MAX (e.g. 1:4), got {text!r}.") from None
    RayOptions(autoscale=bounds)  # validates
    return bounds


# ---- the replica: one Engine, the FastAPI app ------------------------------------------------------


class _ReplicaHeader:
    """ASGI middleware adding ``x-openvino-llm-replica: <id>`` to every answer."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


@serve.deployment(name="OpenVINOLLMReplica")
class OpenVINOLLMReplica:
    """One Engine (and optional embedding/reranker models) behind the app of ``openvino-llm serve``.

    The gateway forwards each HTTP request as a dict; :meth:`handle` runs it through the app and
    streams the ASGI messages back (batched: whatever the app sent since the last yield).
    """

    def __init__(
        self,
        model_path: str,
        engine_options: dict[str, Any],
        app_options: dict[str, Any],
        embedding_path: str | None = None,
        rerank_path: str | None = None,
    ) -> None:
        from ..engine import load_engine

        self.engine = load_engine(model_path, **engine_options)
        common = {k: engine_options[k] for k in ("device", "ov_config", "cache_dir") if k in engine_options}
        embedding = rerank = None
        if embedding_path:
            from ..retrieval import EmbeddingModel

            embedding = EmbeddingModel(embedding_path, **common)
        if rerank_path:
            from ..retrieval import RerankModel

            rerank = RerankModel(rerank_path, **common)
        self.replica_id = serve.get_replica_context().replica_tag
        self.app = _ReplicaHeader(
            create_app(self.engine, embedding_model=embedding, rerank_model=rerank, **app_options), self.replica_id
        )
        log.info("replica %s serving %s", self.replica_id, model_path)

    async def handle(self, request: dict[str, Any]) -> AsyncIterator[list[ASGIMessage]]:
        """Run one forwarded HTTP request through the app; yields lists of ASGI send messages."""
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.get("http_version", "1.1"),
            "method": request["method"],
            "scheme": request.get("scheme", "http"),
            "path": request["path"],
            "raw_path": request["path"].encode(),
            "root_path": "",
            "query_string": request.get("query_string", b""),
            "headers": [tuple(h) for h in request.get("headers", ())],
            "client": request.get("client"),
            "server": request.get("server"),
            "state": {},
        }
        outbox: asyncio.Queue[ASGIMessage | None] = asyncio.Queue()
        gone = asyncio.Event()
        body_given = False

        async def receive() -> ASGIMessage:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": request.get("body", b""), "more_body": False}
            await gone.wait()  # the client (gateway) left: the app's stream stops and drops the request
            return {"type": "http.disconnect"}

        async def send(message: ASGIMessage) -> None:
            await outbox.put(message)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception:  # the app answered 500 already (its error handler); keep the replica serving
                log.exception("request failed in replica %s", self.replica_id)
            finally:
                await outbox.put(None)

        task = asyncio.create_task(run())
        try:
            while True:
                batch = [await outbox.get()]
                while not outbox.empty():
                    batch.append(outbox.get_nowait())
                done = batch[-1] is None
                messages = [m for m in batch if m is not None]
                if messages:
                    yield messages
                if done:
                    break
        finally:
            gone.set()
            if not task.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 2.0)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


# ---- the gateway: HTTP ingress, clean answers when a replica dies ---------------------------------


REPLICA_LOST = "The replica serving this request stopped before finishing it; retry (another replica will take it)."


@serve.deployment(name="OpenVINOLLMGateway", ray_actor_options={"num_cpus": 0})
@serve.ingress()
class OpenVINOLLMGateway:
    """HTTP ingress: forwards each request to a replica and streams its answer back.

    A replica that dies mid-request gives a 503 (``replica_unavailable``, ``Retry-After: 1``)
    before the answer started, or an SSE error event plus ``data: [DONE]`` inside a stream.
    Bodies above ``max_body_bytes`` get 413 here, before crossing the cluster.
    """

    def __init__(self, replicas: Any, max_body_bytes: int, retry_after_s: int = 1) -> None:
        self.replicas = replicas.options(stream=True)
        self.max_body_bytes = max_body_bytes
        self.retry_after = str(retry_after_s)

    def __serve_build_asgi_app__(self) -> Any:
        return _ASGI(self)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ingress ASGI app."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # websockets are not part of the API
        body = await read_body(receive, self.max_body_bytes)
        if body is None:
            return
        if len(body) > self.max_body_bytes:
            for m in json_response(413, too_large_error(self.max_body_bytes)):
                await send(m)
            return
        request = {
            "method": scope["method"],
            "path": scope["path"],
            "query_string": scope.get("query_string", b""),
            "headers": [(bytes(k), bytes(v)) for k, v in scope.get("headers", ())],
            "http_version": scope.get("http_version", "1.1"),
            "scheme": scope.get("scheme", "http"),
            "client": scope.get("client"),
            "server": scope.get("server"),
            "body": bytes(body),
        }
        started = event_stream = finished = False
        try:
            async for batch in self.replicas.handle.remote(request):
                for m in batch:
                    if m["type"] == "http.response.start":
                        started = True
                        headers = dict(m.get("headers", ()))
                        event_stream = headers.get(b"content-type", b"").startswith(b"text/event-stream")
                    elif m["type"] == "http.response.body" and not m.get("more_body", False):
                        finished = True
                    await send(m)
        except (RayActorError, DeploymentUnavailableError) as e:
            log.warning("replica lost while serving %s %s: %s", scope["method"], scope["path"], type(e).__name__)
            await self._fail(send, started, event_stream, finished)
        except BackPressureError:
            if not started:
                for m in json_response(
                    429,
                    error_body("Every replica is busy; retry later.", "rate_limit_exceeded", "too_many_requests"),
                    {"Retry-After": self.retry_after},
                ):
                    await send(m)

    async def _fail(self, send: Send, started: bool, event_stream: bool, finished: bool) -> None:
        if finished:
            return
        if not started:
            for m in json_response(
                503, error_body(REPLICA_LOST, "server_error", "replica_unavailable"), {"Retry-After": self.retry_after}
            ):
                await send(m)
            return
        tail = b""
        if event_stream:
            event = json.dumps(error_body(REPLICA_LOST, "server_error", "replica_unavailable"))
            tail = f"data: {event}\n\ndata: [DONE]\n\n".encode()
        await send({"type": "http.response.body", "body": tail, "more_body": False})


class _ASGI:
    """The gateway's ASGI app as an object with an async ``__call__`` (what uvicorn takes for ASGI 3)."""

    def __init__(self, gateway: OpenVINOLLMGateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.gateway.asgi(scope, receive, send)


# ---- building and running the application -------------------------------------------------------


def build_app(
    model: str | Path | None = None,
    *,
    device: str = "AUTO",
    weight_format: str | None = None,
    ov_config: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    embedding_model: str | Path | None = None,
    rerank_model: str | Path | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    served_model_name: str | None = None,
    options: RayOptions | None = None,
) -> Any:
    """The Serve application (``ray.serve.Application``) serving ``model`` on Ray replicas.

    Resolves every model here, once (export or compression lands in the shared cache), so replicas
    only load. Arguments are those of ``openvino-llm serve``; ``options`` sets the replicas.
    ``api_key`` (else ``$OPENVINO_LLM_API_KEY`` here) travels to the replicas in the deployment's
    arguments, so it reaches every node.
    """
    from ..models import CompressionOptions, resolve_model

    options = options or RayOptions()
    limits = limits or Limits()
    if ov_config is not None and not isinstance(ov_config, Mapping):
        raise InvalidParameterError(f"ov_config must be a mapping, got {type(ov_config).__name__}.")
    compression = CompressionOptions(weight_format=weight_format) if weight_format is not None else None
    resolved = resolve_model(model, task="text-generation", compression=compression, cache_dir=cache_dir)
    embedding_path = (
        str(resolve_model(embedding_model, task="feature-extraction", cache_dir=cache_dir).path)
        if embedding_model
        else None
    )
    rerank_path = (
        str(resolve_model(rerank_model, task="text-classification", cache_dir=cache_dir).path) if rerank_model else None
    )
    engine_options: dict[str, Any] = {"device": device, "ov_config": dict(ov_config) if ov_config else None}
    if cache_dir is not None:
        engine_options["cache_dir"] = str(cache_dir)
    app_options = {
        "api_key": resolve_api_key(api_key) or "",
        "limits": limits,
        "served_model_name": served_model_name or resolved.name,
    }
    scaling: dict[str, Any]
    if options.autoscale is not None:
        lo, hi = options.autoscale
        scaling = {
            "autoscaling_config": {
                "min_replicas": lo,
                "initial_replicas": max(lo, 1),
                "max_replicas": hi,
                "target_ongoing_requests": options.target_ongoing_requests,
            }
        }
    else:
        scaling = {"num_replicas": options.replicas}
    replica = OpenVINOLLMReplica.options(
        **scaling,
        ray_actor_options={"num_cpus": options.num_cpus, **options.extra_actor_options},
        max_ongoing_requests=limits.max_concurrent,
        health_check_period_s=options.health_check_period_s,
        graceful_shutdown_timeout_s=options.graceful_shutdown_timeout_s,
    ).bind(str(resolved.path), engine_options, app_options, embedding_path, rerank_path)
    most = options.autoscale[1] if options.autoscale is not None else options.replicas
    gateway = OpenVINOLLMGateway.options(
        max_ongoing_requests=limits.max_concurrent * most + 16,
        graceful_shutdown_timeout_s=options.graceful_shutdown_timeout_s,
    )
    return gateway.bind(replica, limits.max_body_bytes, limits.retry_after_s)


_BUILDER_KEYS = {
    "model",
    "device",
    "weight_format",
    "ov_config",
    "cache_dir",
    "embedding_model",
    "rerank_model",
    "api_key",
    "served_model_name",
    "max_tokens",
    "max_concurrent",
    "max_body_bytes",
    "replicas",
    "autoscale",
    "target_ongoing_requests",
    "num_cpus",
}


def app_builder(args: dict[str, Any]) -> Any:
    """Application builder for ``serve run`` / ``serve deploy`` (``import_path: openvino_llm.serve.ray:app_builder``).

    ``args`` takes the keys of :func:`build_app` and :class:`RayOptions` (``autoscale`` as ``"MIN:MAX"``)
    and the limits ``max_tokens``, ``max_concurrent``, ``max_body_bytes``. See docs/ray-serve.yaml.
    """
    unknown = set(args) - _BUILDER_KEYS
    if unknown:
        raise InvalidParameterError(
            f"unknown args for openvino-llm's Serve app: {sorted(unknown)}; known: {sorted(_BUILDER_KEYS)}"
        )
    a = dict(args)
    autoscale = a.pop("autoscale", None)
    options = RayOptions(
        replicas=int(a.pop("replicas", 1)),
        autoscale=parse_autoscale(str(autoscale)) if autoscale is not None else None,
        target_ongoing_requests=int(a.pop("target_ongoing_requests", 8)),
        num_cpus=float(a.pop("num_cpus", 1.0)),
    )
    defaults = Limits()
    limits = Limits(
        max_tokens=int(a.pop("max_tokens", defaults.max_tokens)),
        max_concurrent=int(a.pop("max_concurrent", defaults.max_concurrent)),
        max_body_bytes=int(a.pop("max_body_bytes", defaults.max_body_bytes)),
    )
    ov_config = a.pop("ov_config", None)
    if isinstance(ov_config, str):
        ov_config = json.loads(ov_config)
    model = a.pop("model", None)
    if isinstance(model, str) and model.strip().lower() == "default":
        model = None
    return build_app(model, ov_config=ov_config, limits=limits, options=options, **a)


def connect(address: str | None = None, *, num_cpus: float | None = None) -> None:
    """Join the Ray cluster at ``address`` (``"auto"``, ``"ray://..."``, ``host:port``), or start a local one.

    A local cluster is on loopback only: its processes listen on and talk to 127.0.0.1, with no
    dashboard. (Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's public address
    unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, its single-machine mode, which this sets.)
    Ray's usage stats are off unless ``$RAY_USAGE_STATS_ENABLED`` says otherwise. Does nothing
    if Ray is already initialised.
    """
    import ray

    os.environ.setdefault(USAGE_STATS_ENV, "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    from ray._private import ray_constants  # read when the node address is resolved

    os.environ[_SINGLE_MACHINE_ENV] = "0"  # for the processes Ray starts
    ray_constants.ENABLE_RAY_CLUSTER = False  # for this one, which imported the constant already
    # the dashboard agent may take long to start on a busy machine; the raylet would abort after ~15 s
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    kwargs: dict[str, Any] = {} if num_cpus is None else {"num_cpus": num_cpus}
    ray.init(  # "local": a new cluster, never one that `ray start` left running on this machine
        address="local", _node_ip_address="127.0.0.1", include_dashboard=False, logging_level=logging.WARNING, **kwargs
    )


def deploy(
    app: Any, *, host: str = "127.0.0.1", port: int = 8000, name: str = APP_NAME, timeout_s: float = 600.0
) -> Any:
    """Start Serve's HTTP proxy on ``host:port`` (if Serve is not running yet) and deploy ``app``.

    Returns when every replica is up (a ``DeploymentHandle`` to the gateway); call :func:`connect`
    first to choose the cluster (else Ray starts a local one).
    """
    serve.start(http_options={"host": host, "port": port})
    t0 = time.monotonic()
    handle = serve.run(app, name=name, route_prefix="/", blocking=False)
    log.info("deployed %r in %.1f s on http://%s:%d", name, time.monotonic() - t0, host, port)
    return handle


def run_ray_server(
    app: Any, *, address: str | None = None, num_cpus: float | None = None, host: str = "127.0.0.1", port: int = 8000
) -> None:  # pragma: no cover - exercised through the CLI
    """Connect, deploy, and serve until interrupted; then drain in-flight requests and stop Serve."""
    import ray

    connect(address, num_cpus=num_cpus)
    deploy(app, host=host, port=port)
    print(f"openvino-llm on Ray Serve: http://{host}:{port}/v1 (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        if not address:
            ray.shutdown()


__all__ = [
    "APP_NAME",
    "REPLICA_HEADER",
    "OpenVINOLLMGateway",
    "OpenVINOLLMReplica",
    "RayOptions",
    "app_builder",
    "build_app",
    "connect",
    "deploy",
    "parse_autoscale",
    "run_ray_server",
]
