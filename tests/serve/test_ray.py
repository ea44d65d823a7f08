"""The server on Ray Serve: a local cluster on loopback, 2 replicas of the tiny model on 2 cores.

One cluster per module (started and stopped here, ~1-2 min in all). The tests run in order:
the API through the gateway, spreading over replicas, a replica killed under load, nothing off
loopback, and last a graceful shutdown that must drain the streams in flight.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests._loopback import ConnectionWatch, is_loopback
from tests._shared import EXACT
from tests.serve.conftest import API_KEY

from openvino_llm import GenerationParams, InvalidParameterError
from openvino_llm.engine import Engine
from openvino_llm.serve import Limits

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'openvino-llm[ray]'")
psutil = pytest.importorskip("psutil")
openai = pytest.importorskip("openai")
yaml = pytest.importorskip("yaml")

import ray  # noqa: E402
from ray import serve  # noqa: E402

from openvino_llm.serve.ray import (  # noqa: E402
    APP_NAME,
    REPLICA_HEADER,
    RayOptions,
    app_builder,
    build_app,
    connect,
    deploy,
    parse_autoscale,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a saturated 2-core machine starts Ray ~5x slower

PROMPT = "hello there, how are you"
LONG = 1500  # tokens: a stream of the tiny model lasts seconds, long enough to be in flight when a replica dies
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# ---- loopback watch ---------------------------------------------------------------------------------


def test_loopback_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("192.0.2.2") and not is_loopback("::ffff:192.0.2.2") and not is_loopback("0.0.0.0")


# ---- the cluster ------------------------------------------------------------------------------------


@dataclass
class Cluster:
    url: str
    watch: ConnectionWatch


def _start_ray(attempts: int = 3) -> None:
    """``connect(num_cpus=2)``: ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, ...) on loopback.

    Ray 2.60's raylet aborts when its dashboard agent takes more than 15 s to start (a fixed wait),
    which happens when the 2 cores are saturated by other work; then the processes of that attempt
    are stopped (by pid: only this process's new children) and Ray is started again.
    """
    for attempt in range(attempts):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            connect(num_cpus=2)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            ray.shutdown()
            for proc in psutil.Process().children(recursive=True):
                if proc.pid not in before:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
            time.sleep(1)


@pytest.fixture(scope="module")
def cluster(tiny_model: Path, cache_dir: Path) -> Iterator[Cluster]:
    """Ray on 127.0.0.1 (2 CPUs, no dashboard, no usage stats), Serve's proxy on a free loopback port."""
    names = ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_raylet_start_wait_time_s")
    old = {name: os.environ.get(name) for name in names}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    with ConnectionWatch() as watch:
        _start_ray()
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            app = build_app(
                tiny_model,
                device="CPU",
                ov_config=EXACT,
                cache_dir=cache_dir,
                api_key=API_KEY,
                limits=Limits(max_tokens=2000, max_concurrent=16, max_body_bytes=64 * 1024),
                options=RayOptions(replicas=2, num_cpus=0.5, health_check_period_s=1, graceful_shutdown_timeout_s=30),
            )
            deploy(app, host="127.0.0.1", port=port)
            yield Cluster(f"http://127.0.0.1:{port}", watch)
        finally:
            serve.shutdown()
            ray.shutdown()
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> openai.OpenAI:
    return openai.OpenAI(base_url=cluster.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def _replica_actor(tag: str) -> Any:
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if name.startswith("SERVE_REPLICA::") and name.endswith(f"#OpenVINOLLMReplica#{tag}"):
            return ray.get_actor(name, namespace=actor["namespace"])
    raise AssertionError(f"no actor for replica {tag}")


def _running_replicas() -> int:
    status = serve.status().applications[APP_NAME].deployments["OpenVINOLLMReplica"]
    return status.replica_states.get("RUNNING", 0)


# ---- streams in threads -----------------------------------------------------------------------------


@dataclass
class StreamRecord:
    status: int = 0
    replica: str = ""
    started: threading.Event = field(default_factory=threading.Event)
    events: list[Any] = field(default_factory=list)  # parsed JSON events, then "[DONE]"
    error: BaseException | None = None
    ended_at: float = 0.0

    @property
    def text(self) -> str:
        return "".join(
            e["choices"][0]["delta"].get("content") or ""
            for e in self.events
            if isinstance(e, dict) and e.get("choices")
        )

    @property
    def finish(self) -> str | None:
        reasons = [e["choices"][0]["finish_reason"] for e in self.events if isinstance(e, dict) and e.get("choices")]
        return next((r for r in reasons if r), None)


def _stream(url: str, max_tokens: int, rec: StreamRecord) -> StreamRecord:
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH, timeout=120) as r:
            rec.status = r.status_code
            rec.replica = r.headers.get(REPLICA_HEADER, "")
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                rec.events.append(data if data == "[DONE]" else json.loads(data))
                rec.started.set()
    except BaseException as e:  # a cut connection is what a clean end must not be
        rec.error = e
    finally:
        rec.ended_at = time.monotonic()
        rec.started.set()
    return rec


# ---- without a cluster: options, the Serve config file, the CLI -------------------------------------


def test_options_are_checked_before_any_work() -> None:
    assert parse_autoscale("1:4") == (1, 4)
    for bad in ("4", "a:b", "3:1", "-1:2", "0:0"):
        with pytest.raises(InvalidParameterError, match="autoscale"):
            parse_autoscale(bad)
    with pytest.raises(InvalidParameterError, match="replicas"):
        RayOptions(replicas=0)
    with pytest.raises(InvalidParameterError, match="num_cpus"):
        RayOptions(num_cpus=-1)
    with pytest.raises(InvalidParameterError, match=r"unknown args.*'replica'"):
        app_builder({"model": "default", "replica": 2})


def test_serve_config_file_is_valid_and_builds_the_app(tiny_model: Path, cache_dir: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "ray-serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.port == 8000
    (app_config,) = config["applications"]
    module, _, attr = app_config["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), attr)
    assert builder is app_builder
    args = {**app_config["args"], "model": str(tiny_model), "cache_dir": str(cache_dir), "autoscale": "1:3"}
    assert isinstance(builder(args), serve.Application)  # every documented key is accepted


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replicas", "2"], "need --ray"),
        (["--ray", "--autoscale", "3:1"], "autoscale"),
        (["--ray", "--replicas", "0"], "replicas"),
    ],
)
def test_cli_rejects_bad_ray_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from openvino_llm.cli import main

    assert main(["serve", "no-such-model", *argv]) == 2
    assert message in capsys.readouterr().err


# ---- tests on the cluster ---------------------------------------------------------------------------


def test_same_api_through_the_gateway(cluster: Cluster, client: openai.OpenAI, tiny_engine: Engine) -> None:
    expected = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=20))
    raw = client.chat.completions.with_raw_response.create(
        model=client.models.list().data[0].id,
        messages=[{"role": "user", "content": PROMPT}],
        temperature=0,
        max_tokens=20,
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.completion_tokens == 20
    assert raw.headers[REPLICA_HEADER]
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=reply.model, messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=20, stream=True
        )
        if c.choices
    )
    assert text == expected.text
    # the limits, the API key and the metrics of the single-process app
    with httpx.Client(base_url=cluster.url, timeout=60) as http:
        r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers[REPLICA_HEADER]
        assert http.get("/health").json() == {"status": "ok"}
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2001}
        r = http.post("/v1/chat/completions", json=body, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["code"] == "max_tokens_too_large"
        r = http.post("/v1/chat/completions", content=b"x" * (64 * 1024 + 1), headers=AUTH)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = http.get("/metrics", headers=AUTH)
        assert r.status_code == 200 and "openvino_llm_requests_total" in r.text


def test_requests_spread_over_both_replicas(cluster: Cluster) -> None:
    seen: set[str] = set()
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200, "temperature": 0}

    def one(_: int) -> str:
        r = httpx.post(cluster.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 200
        return r.headers[REPLICA_HEADER]

    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):  # at most 3 rounds of 8 concurrent requests
            seen |= set(pool.map(one, range(8)))
            if len(seen) == 2:
                break
    assert len(seen) == 2, seen


def test_the_core_remote_engine_through_the_deployment(cluster: Cluster, tiny_engine: Engine) -> None:
    """RemoteEngine (what the adapters' remote mode is built on) gives the local engine's output."""
    from openvino_llm.engine.remote import RemoteEngine

    remote = RemoteEngine(cluster.url + "/v1", api_key=API_KEY, timeout=60, max_retries=0)
    try:
        params = GenerationParams(temperature=0, max_new_tokens=20)
        expected = tiny_engine.generate(PROMPT, params)
        generation = remote.generate(PROMPT, params)
        assert generation.text == expected.text
        assert generation.usage.output_tokens == 20
        assert "".join(c.text for c in remote.stream(PROMPT, params)) == expected.text
    finally:
        remote.close()


def test_langchain_batch_through_the_deployment(cluster: Cluster, tiny_engine: Engine) -> None:
    """ChatOpenVINO(base_url=...) unchanged: a batch spread over the replicas gives the local answers."""
    langchain_openvino = pytest.importorskip("langchain_openvino")
    llm = langchain_openvino.ChatOpenVINO(
        base_url=cluster.url + "/v1", api_key=API_KEY, temperature=0, max_tokens=12, max_retries=0
    )
    prompts = [f"{PROMPT} ({n})" for n in range(6)]
    replies = llm.batch(prompts, config={"max_concurrency": 6})
    params = GenerationParams(temperature=0, max_new_tokens=12)
    expected = [tiny_engine.generate([{"role": "user", "content": p}], params) for p in prompts]
    assert [r.content for r in replies] == [e.text for e in expected]
    assert [r.usage_metadata["output_tokens"] for r in replies] == [e.usage.output_tokens for e in expected]


def test_llama_index_query_engine_through_the_deployment(
    cluster: Cluster, tiny_model: Path, minilm_dir: Path, cache_dir: Path
) -> None:
    """A LlamaIndex query engine with OpenVINO(base_url=...) answers as the same engine run locally."""
    pytest.importorskip("llama_index_openvino")
    from llama_index.core import Document, VectorStoreIndex

    from llama_index_openvino import OpenVINO, OpenVINOEmbedding

    embed_model = OpenVINOEmbedding(model=minilm_dir, device="CPU", cache_dir=str(cache_dir))
    docs = ["The Eiffel Tower is 330 metres tall.", "Bananas are yellow.", "Python was created by Guido van Rossum."]
    index = VectorStoreIndex.from_documents([Document(text=t) for t in docs], embed_model=embed_model)
    remote = OpenVINO(base_url=cluster.url + "/v1", api_key=API_KEY, temperature=0, max_new_tokens=16)
    local = OpenVINO(model=tiny_model, device="CPU", ov_config=EXACT, cache_dir=cache_dir, temperature=0,
                     max_new_tokens=16)  # fmt: skip
    answers = []
    for llm in (remote, local):
        response = index.as_query_engine(llm=llm, similarity_top_k=2).query("How tall is the Eiffel Tower?")
        assert "Eiffel" in response.source_nodes[0].node.get_content()
        answers.append(str(response))
    assert answers[0] and answers[0] == answers[1]


def test_a_replica_killed_under_load(cluster: Cluster, tiny_engine: Engine) -> None:
    expected = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=LONG))
    assert expected.finish_reason == "length"
    records = [StreamRecord() for _ in range(6)]
    with ThreadPoolExecutor(len(records)) as pool:
        futures = [pool.submit(_stream, cluster.url, LONG, rec) for rec in records]
        for rec in records:
            assert rec.started.wait(90), "a stream did not start"
        replicas = {rec.replica for rec in records}
        assert len(replicas) == 2, replicas  # both replicas have streams in flight
        victim = records[0].replica
        assert not any(rec.ended_at for rec in records), "a stream ended before the kill: make LONG larger"
        ray.kill(_replica_actor(victim), no_restart=True)
        killed_at = time.monotonic()
        done = [f.result(timeout=120) for f in futures]

    for rec in done:
        assert rec.error is None, f"stream on {rec.replica} was cut: {rec.error!r}"
        assert rec.status == 200
        assert rec.events[-1] == "[DONE]"
        if rec.replica == victim:  # ended early with a clean error event
            assert rec.ended_at - killed_at < 30
            error = rec.events[-2]["error"]
            assert error["code"] == "replica_unavailable" and error["type"] == "server_error"
            assert expected.text.startswith(rec.text)
            assert len(rec.text) < len(expected.text)
        else:  # intact
            assert rec.text == expected.text
            assert rec.finish == "length"
            assert rec.events[-2]["usage"]["completion_tokens"] == LONG

    # Ray replaces the replica; the deployment serves again within a bounded time
    deadline = time.monotonic() + 90
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8, "temperature": 0}
    while _running_replicas() < 2:
        assert time.monotonic() < deadline, "the killed replica was not replaced in 90 s"
        time.sleep(0.5)
    tags: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        while len(tags) < 2:  # rounds of 8 concurrent requests until the new replica answers too
            assert time.monotonic() < deadline, f"only {tags} answered in 90 s"
            answers = list(
                pool.map(
                    lambda _: httpx.post(cluster.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60),
                    range(8),
                )
            )
            for r in answers:
                assert r.status_code == 200, r.text
                tags.add(r.headers[REPLICA_HEADER])
    assert victim not in tags
    assert time.monotonic() - killed_at < 90


def test_non_streamed_requests_on_a_killed_replica_end_cleanly(cluster: Cluster) -> None:
    """Non-streaming requests in flight when a replica dies: each one is a complete 200 or a clean 503.

    (In the runs here every one came back 200: Serve re-sent the dead replica's unanswered requests,
    or none was on it; not established. Either way no client may see a 500 or a cut connection.)
    """
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": LONG, "temperature": 0}

    def one(_: int) -> httpx.Response:
        return httpx.post(cluster.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=180)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(8)]
        time.sleep(1.0)  # all eight are generating (a request takes seconds), spread over both replicas
        assert not any(f.done() for f in futures)
        victim = sorted(_replica_tags())[0]
        ray.kill(_replica_actor(victim), no_restart=True)
        answers = [f.result(timeout=200) for f in futures]
    for r in answers:
        assert r.status_code in (200, 503), r.text
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "replica_unavailable"
            assert r.headers["retry-after"] == "1"
        else:
            assert r.json()["usage"]["completion_tokens"] == LONG
            assert r.headers[REPLICA_HEADER] != victim
    deadline = time.monotonic() + 90
    while _running_replicas() < 2:
        assert time.monotonic() < deadline, "the killed replica was not replaced in 90 s"
        time.sleep(0.5)


def _replica_tags() -> set[str]:
    prefix = f"SERVE_REPLICA::{APP_NAME}#OpenVINOLLMReplica#"
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    return {n[len(prefix) :] for n in names if n.startswith(prefix)}


def test_nothing_leaves_loopback(cluster: Cluster) -> None:
    cluster.watch.sample()
    assert cluster.watch.samples > 10
    assert cluster.watch.remote == set()  # no connection to anything but loopback, in any process
    # Nothing is bound to the machine's own address. (Serve 2.60's replicas open their gRPC server on
    # the wildcard address "::", which this cannot change; nothing connects to it off loopback.)
    assert {entry for entry in cluster.watch.listening if entry[1] not in ("::", "0.0.0.0")} == set()


def test_graceful_shutdown_drains_streams(cluster: Cluster, tiny_engine: Engine) -> None:
    expected = tiny_engine.generate(PROMPT, GenerationParams(temperature=0, max_new_tokens=LONG // 2))
    records = [StreamRecord() for _ in range(4)]
    with ThreadPoolExecutor(len(records)) as pool:
        futures = [pool.submit(_stream, cluster.url, LONG // 2, rec) for rec in records]
        for rec in records:
            assert rec.started.wait(90)
        t0 = time.monotonic()
        serve.delete(APP_NAME, _blocking=False)
        done = [f.result(timeout=120) for f in futures]
    for rec in done:
        assert rec.error is None, repr(rec.error)
        assert rec.text == expected.text and rec.finish == "length"
        assert rec.events[-1] == "[DONE]"
    deadline = t0 + 60
    while APP_NAME in serve.status().applications:
        assert time.monotonic() < deadline, "the application did not stop after draining"
        time.sleep(0.5)
    r = httpx.post(cluster.url + "/v1/chat/completions", json={"messages": []}, headers=AUTH, timeout=10)
    assert r.status_code == 404  # gone: new requests are not served
