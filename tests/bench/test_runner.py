"""``openvino-llm bench``: the quick mode end to end on SmolLM2 (real inference), and its input checks.

No timed assertions: the numbers depend on the machine; only their sanity is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openvino_llm import InvalidParameterError, cli
from openvino_llm.bench.runner import (
    DEFAULT_PROMPTS,
    PROMPTS,
    _disk_size,
    build_parser,
    fresh,
    main,
    options_from_args,
)
from openvino_llm.models import resolve_model


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--concurrency", "0,2"], "--concurrency"),
        (["--concurrency", "two"], "--concurrency"),
        (["--peers", "vllm"], "vllm"),
        (["--systems", "nope"], "nope"),
        (["--max-new-tokens", "1"], "--max-new-tokens"),
        (["--runs", "0"], "--runs"),
        (["--ov-config", "KV_CACHE_PRECISION"], "--ov-config"),
        (["--ov-config", "=f16"], "--ov-config"),
        (["--prompts", "short,poem"], "poem"),
        (["--assistant-tokens", "0"], "--assistant-tokens"),
        (["--draft-model", "d", "--confidence", "1.5"], "between 0 and 1"),
        (["--draft-model", "d", "--confidence", "high"], "--confidence"),
        (["--draft-weight-format", "int8"], "need a --draft-model"),
        (["--prompt-lookup", "--confidence", "0.4"], "need a --draft-model"),
    ],
)
def test_bad_options_are_rejected_before_any_work(argv: list[str], match: str) -> None:
    args = build_parser().parse_args(argv)
    with pytest.raises(InvalidParameterError, match=match):
        options_from_args(args)


def test_every_request_is_fresh_after_the_system_prompt() -> None:
    messages = PROMPTS["long"]
    a, b = fresh(messages), fresh(messages)
    assert a[:-1] == b[:-1] == messages[:-1]  # the shared system prompt stays
    assert a[-1]["content"] != b[-1]["content"] and len(a[-1]["content"]) == len(b[-1]["content"])
    assert a[-1]["content"].endswith(messages[-1]["content"])


def test_bad_options_exit_code_and_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--concurrency", "0", "--out", str(tmp_path)]) == 2
    assert "--concurrency" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.slow
def test_quick_bench_writes_sane_results(smollm2_gguf: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = [str(smollm2_gguf), "--quick", "--out", str(out), "--cache-dir", str(cache_dir), "--max-new-tokens", "8"]
    assert cli.main(["bench", *argv, "--peers", "llama-cpp-python"]) == 0  # the `openvino-llm bench` subcommand

    results = json.loads((out / "bench.json").read_text())
    # SmolLM2's Q4_1 file is re-exported automatically (openvino-genai reads Q4_1 inexactly): the bench
    # measures and sizes what the engine loads, the cached IR
    resolved = resolve_model(smollm2_gguf, cache_dir=cache_dir)
    assert results["meta"]["model_kind"] == resolved.kind == "ir"
    assert results["meta"]["command"].startswith(f"openvino-llm bench {smollm2_gguf} --quick --concurrency 1,2 ")
    assert results["meta"]["model_size_bytes"]["default"] == _disk_size(resolved.path) > 0
    # the peer is reported whether or not it is installed, never dropped
    systems = {s["system"]: s for s in results["systems"]}
    assert set(systems) == {"core-engine", "langchain-stream", "llama-cpp-python"}
    assert systems["core-engine"]["status"] == systems["langchain-stream"]["status"] == "ok"
    if systems["llama-cpp-python"]["status"] != "ok":
        assert systems["llama-cpp-python"]["status"] == "not installed"
        assert "pip install llama-cpp-python" in systems["llama-cpp-python"]["error"]

    rows = {(r["system"], r["prompt"]): r for r in results["single_stream"]}
    for system in ("core-engine", "langchain-stream"):
        for prompt in DEFAULT_PROMPTS:
            r = rows[(system, prompt)]
            assert r["runs"] == 1
            assert 1 <= r["output_tokens"]["median"] <= 8
            assert r["ttft_ms"]["median"] > 0
            assert r["e2e_ms"]["median"] >= r["ttft_ms"]["median"]
            if r["output_tokens"]["median"] > 1:
                assert r["decode_tps"]["median"] > 0
        assert rows[(system, "long")]["input_tokens"] > rows[(system, "short")]["input_tokens"] > 0
    # the adapter saw exactly the prompt the engine saw
    assert rows[("langchain-stream", "long")]["input_tokens"] == rows[("core-engine", "long")]["input_tokens"]
    assert any(r["system"] == "langchain-stream" and r["baseline"] == "core-engine" for r in results["ratios"])

    conc = {(r["system"], r["n"]): r for r in results["concurrency"]}
    assert set(conc) == {(s, n) for s in ("core-engine.astream", "ChatOpenVINO.astream") for n in (1, 2)}
    for (_, n), r in conc.items():
        for mode in ("parallel", "sequential"):
            assert r[mode]["aggregate_tps"] > 0
            assert n <= r[mode]["output_tokens"] <= 8 * n
        assert r["speedup"] > 0

    (load,) = results["load"]
    assert load["system"] == "core-engine" and load["status"] == "ok"
    assert load["load_cold_ms"] > 0 and load["load_warm_ms"] > 0
    assert load["peak_rss_mb"] > 50  # a process that loaded a 98 MB model

    assert {t["verdict"] for t in results["targets"]} <= {"met", "missed", "not measured"}
    markdown = (out / "bench.md").read_text()
    assert "## Single stream" in markdown and "| core-engine | short |" in markdown
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bench_compares_weight_formats_of_a_gguf_with_an_ov_config(
    smollm2_gguf: Path, cache_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    argv = [str(smollm2_gguf), "--quick", "--out", str(out), "--cache-dir", str(cache_dir), "--max-new-tokens", "8"]
    argv += ["--weight-format", "default,int8", "--ov-config", "KV_CACHE_PRECISION=f16", "--systems", "core-engine"]
    peers = "llama-cpp-python,transformers-torch"
    assert main([*argv, "--concurrency", "none", "--no-load-probes", "--peers", peers]) == 0

    results = json.loads((out / "bench.json").read_text())
    meta = results["meta"]
    assert meta["ov_config"] == {"KV_CACHE_PRECISION": "f16"}
    assert "--weight-format default,int8 --ov-config KV_CACHE_PRECISION=f16" in meta["command"]
    sizes = meta["model_size_bytes"]
    assert sizes["default"] == _disk_size(resolve_model(smollm2_gguf, cache_dir=cache_dir).path) > 0
    assert sizes["int8"] == _disk_size(resolve_model(smollm2_gguf, weight_format="int8", cache_dir=cache_dir).path) > 0
    systems = {s["system"]: s["status"] for s in results["systems"]}
    assert systems["core-engine [default]"] == systems["core-engine [int8]"] == "ok"
    assert "llama-cpp-python" in systems  # one peer entry, run on the GGUF itself, whatever the formats
    assert systems["transformers-torch"] == "ok"  # transformers on PyTorch, on the GGUF's dequantized weights
    rows = {(r["system"], r["prompt"]): r for r in results["single_stream"]}
    assert {("core-engine [default]", "short"), ("core-engine [int8]", "long")} <= set(rows)
    torch_row = rows[("transformers-torch", "short")]
    assert 1 <= torch_row["output_tokens"]["median"] <= 12 and torch_row["decode_tps"]["median"] > 0


def test_a_gguf_draft_without_a_format_is_refused_before_any_export(
    smollm2_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    argv = [str(smollm2_gguf), "--weight-format", "int8", "--draft-model", str(smollm2_gguf), "--out", str(tmp_path)]
    assert main([*argv, "--cache-dir", str(cache)]) == 2
    assert "--draft-weight-format int8" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()
    assert not any(cache.rglob("openvino_model.xml"))  # the main model was not exported either


@pytest.mark.slow
def test_bench_measures_speculative_decoding(tiny_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A draft (the tiny model drafting for itself) and prompt lookup, each knob a system of one run."""
    out = tmp_path / "bench"
    argv = [str(tiny_model), "--quick", "--out", str(out), "--cache-dir", str(cache_dir), "--max-new-tokens", "12"]
    argv += ["--systems", "core-engine", "--prompts", "code,edit", "--concurrency", "none", "--no-load-probes"]
    argv += ["--draft-model", str(tiny_model), "--prompt-lookup", "--assistant-tokens", "2,4", "--confidence", "0.5"]
    assert main(argv) == 0

    results = json.loads((out / "bench.json").read_text())
    assert "--prompts code,edit --draft-model" in results["meta"]["command"]
    assert "--prompt-lookup --assistant-tokens 2,4 --confidence 0.5" in results["meta"]["command"]
    labels = ["engine-draft k=2", "engine-draft k=4", "engine-draft c=0.5", "engine-lookup k=2", "engine-lookup k=4"]
    assert {s["system"]: s["status"] for s in results["systems"]} == dict.fromkeys(["core-engine", *labels], "ok")
    assert (
        "assistant_confidence_threshold=0.5"
        in {s["system"]: s["description"] for s in results["systems"]}["engine-draft c=0.5"]
    )
    rows = {(r["system"], r["prompt"]): r for r in results["single_stream"]}
    assert set(rows) == {(s, p) for s in ["core-engine", *labels] for p in ("code", "edit")}
    for label in labels:  # the random tiny model never stops: every system produced the full length
        assert rows[(label, "edit")]["output_tokens"]["median"] == 12
        assert rows[(label, "edit")]["input_tokens"] == rows[("core-engine", "edit")]["input_tokens"]
    assert {r["system"] for r in results["ratios"] if r["baseline"] == "core-engine"} == set(labels)
    verdicts = {t["target"]: t for t in results["targets"]}
    draft = verdicts["a draft model decodes code (the code prompt) >= 1.5x faster than the plain engine"]
    lookup = verdicts["prompt lookup decodes a copy-heavy edit (the edit prompt) >= 1.5x faster than the plain engine"]
    assert draft["verdict"] in ("met", "missed") and draft["detail"].startswith("best engine-draft ")
    assert lookup["verdict"] in ("met", "missed") and lookup["detail"].startswith("best engine-lookup k=")


@pytest.mark.slow
def test_load_probe_measures_memory_under_eight_requests(tiny_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = [str(tiny_model), "--out", str(out), "--cache-dir", str(cache_dir), "--max-new-tokens", "8"]
    argv += ["--systems", "core-engine", "--peers", "none", "--concurrency", "none", "--runs", "1", "--warmup", "0"]
    assert main(argv) == 0

    (load,) = json.loads((out / "bench.json").read_text())["load"]
    assert load["status"] == "ok" and load["streams_at_once"] is True
    assert load["peak_rss_8_mb"] >= load["peak_rss_mb"] > 50
    assert "| peak RSS MB, 8 more requests |" in (out / "bench.md").read_text()


def _children() -> set[int]:
    psutil = pytest.importorskip("psutil")
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.slow
def test_bench_measures_the_server_path(tiny_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    """`openvino-llm serve` in a subprocess, streamed through RemoteEngine; stopped when the run ends."""
    pytest.importorskip("fastapi", reason="the server needs the serve extra")
    before = _children()
    out = tmp_path / "bench"
    argv = [str(tiny_model), "--quick", "--out", str(out), "--cache-dir", str(cache_dir), "--max-new-tokens", "8"]
    argv += ["--systems", "core-engine,server-stream", "--concurrency", "8", "--no-load-probes"]
    assert main(argv) == 0
    assert _children() <= before  # the server process is gone

    results = json.loads((out / "bench.json").read_text())
    assert {s["system"]: s["status"] for s in results["systems"]} == {"core-engine": "ok", "server-stream": "ok"}
    rows = {(r["system"], r["prompt"]): r for r in results["single_stream"]}
    for prompt in DEFAULT_PROMPTS:
        # the same prompt reached the same model: the server reports the engine's token counts
        assert rows[("server-stream", prompt)]["input_tokens"] == rows[("core-engine", prompt)]["input_tokens"]
        assert rows[("server-stream", prompt)]["output_tokens"]["median"] == 8  # the random tiny model never stops
    conc = {r["system"]: r for r in results["concurrency"]}
    assert set(conc) == {"core-engine.astream", "server-stream.astream"}
    assert conc["server-stream.astream"]["parallel"]["output_tokens"] == 64
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    assert {v for t, v in verdicts.items() if "openvino-llm serve" in t or "SSE clients" in t} <= {"met", "missed"}
    assert len([t for t in verdicts if "openvino-llm serve" in t or "SSE clients" in t]) == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_measures_one_and_two_ray_replicas(tiny_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    """`serve --ray --replicas 1` and `2`, each its own local cluster on loopback, under 8 clients."""
    pytest.importorskip("ray.serve", reason="needs the ray extra")
    before = _children()
    out = tmp_path / "bench"
    argv = [str(tiny_model), "--quick", "--out", str(out), "--cache-dir", str(cache_dir), "--max-new-tokens", "8"]
    argv += ["--systems", "server-stream,ray-serve-1,ray-serve-2", "--concurrency", "8", "--no-load-probes"]
    from tests._loopback import ConnectionWatch

    with ConnectionWatch() as watch:
        assert main(argv) == 0
    assert _children() <= before  # both clusters were shut down
    assert watch.samples > 10 and watch.remote == set()  # the clusters talked on loopback only
    assert {entry for entry in watch.listening if entry[1] not in ("::", "0.0.0.0")} == set()  # see test_ray

    results = json.loads((out / "bench.json").read_text())
    assert {s["system"]: s["status"] for s in results["systems"]} == dict.fromkeys(
        ("server-stream", "ray-serve-1", "ray-serve-2"), "ok"
    )
    conc = {r["system"]: r for r in results["concurrency"]}
    assert conc["ray-serve-2.astream"]["parallel"]["output_tokens"] == 64
    markdown = (out / "bench.md").read_text()
    assert "8 concurrent clients: 2 replicas" in markdown and "ray-serve-1 vs server-stream, short prompt" in markdown
