"""``openvino-llm bench``'s report: statistics, ratios to the baselines and the targets' verdicts,
computed from a results dictionary (as ``bench.json`` holds it), no model needed."""

from __future__ import annotations

from typing import Any

from openvino_llm.bench.report import ratios, render_markdown, scale_out, summarize, targets
from openvino_llm.bench.systems import Sample


def test_summarize_median_p90_and_per_token_rates() -> None:
    # 11 tokens, first after 100 ms, the other 10 over 1000 ms -> TPOT 100 ms, 10 tok/s
    samples = [Sample(100.0, 1100.0, 11), Sample(200.0, 1200.0, 11), Sample(300.0, 2300.0, 11)]
    stats = summarize(samples)
    assert stats["runs"] == 3
    assert stats["ttft_ms"] == {"median": 200.0, "p90": 300.0}
    assert stats["tpot_ms"] == {"median": 100.0, "p90": 200.0}
    assert stats["decode_tps"] == {"median": 10.0, "p90": 10.0}
    assert stats["e2e_ms"]["median"] == 1200.0
    assert Sample(50.0, 50.0, 1).decode_tps == 0.0  # one token: no decode phase to measure


def _row(system: str, prompt: str, ttft: float, tps: float, cpu_token: float = 0.0, cpu_ttft: float = 0.0) -> Any:
    def stat(x: float) -> dict[str, float]:
        return {"median": x, "p90": x}

    return {
        "system": system,
        "prompt": prompt,
        "runs": 3,
        "input_tokens": 40,
        "ttft_ms": stat(ttft),
        "tpot_ms": stat(1000.0 / tps),
        "decode_tps": stat(tps),
        "e2e_ms": stat(ttft + 127000.0 / tps),
        "output_tokens": stat(128),
        "caller_cpu_per_token_ms": stat(cpu_token),
        "caller_cpu_ttft_ms": stat(cpu_ttft),
        "internal": {},
    }


def _results(rows: list[Any], systems: dict[str, dict[str, str]], concurrency: list[Any] | None = None) -> Any:
    meta = {
        "model": "m",
        "date": "2026-12-02 06:00 UTC",
        "cpu": "cpu",
        "cores": 2,
        "device": "CPU",
        "load_avg_1m": 1.0,
        "command": "openvino-llm bench",
        "model_path": "m.gguf",
        "model_kind": "gguf",
        "model_size_bytes": {"default": 1000},
        "weight_formats": ["default"],
        "max_new_tokens": 128,
        "runs": 3,
        "warmup": 1,
        "versions": {},
    }
    systems_ = [{"system": name, "description": name, **st} for name, st in systems.items()]
    results = {"meta": meta, "systems": systems_, "single_stream": rows, "concurrency": concurrency or [], "load": []}
    results["ratios"] = ratios(results)
    return results


def test_ratios_and_verdicts_from_the_medians() -> None:
    rows = [
        _row("genai-raw", "short", 50.0, 100.0),
        _row("core-engine", "short", 52.0, 99.0, cpu_token=0.30, cpu_ttft=2.0),
        _row("langchain-stream", "short", 53.0, 98.5, cpu_token=0.40, cpu_ttft=3.0),
        _row("llama-cpp-python", "short", 40.0, 110.0),
        _row("langchain-huggingface", "short", 80.0, 50.0),
        _row("genai-raw", "long", 500.0, 90.0),
        _row("core-engine", "long", 510.0, 89.0, cpu_token=0.30, cpu_ttft=2.0),
        _row("langchain-stream", "long", 512.0, 88.9, cpu_token=0.35, cpu_ttft=2.5),
        _row("llama-cpp-python", "long", 300.0, 100.0),
        _row("langchain-huggingface", "long", 900.0, 60.0),
    ]
    systems = {name: {"status": "ok"} for name in dict.fromkeys(r["system"] for r in rows)}
    conc = [{"system": "ChatOpenVINO.astream", "n": 8, "speedup": 4.5}]
    results = _results(rows, systems, conc)

    by = {(r["system"], r["baseline"], r["prompt"]): r for r in results["ratios"]}
    # peers are compared with raw openvino-genai only; adapters with both baselines; genai-raw with none
    assert ("llama-cpp-python", "genai-raw", "short") in by and ("llama-cpp-python", "core-engine", "short") not in by
    assert not any(system == "genai-raw" for system, _, _ in by)
    lc = by[("langchain-stream", "core-engine", "short")]
    assert lc["ttft_delta_ms"] == 1.0 and lc["caller_cpu_delta_ms_per_token"] == 0.1
    assert by[("langchain-stream", "genai-raw", "short")]["caller_cpu_delta_ms_per_token"] is None

    verdicts = [(t["verdict"], t["detail"]) for t in targets(results)]
    wall, cpu, llama, conc8, hf, int4, server, server8, draft, lookup = verdicts
    assert server[0] == server8[0] == draft[0] == lookup[0] == "not measured"  # no server or speculation here
    assert wall == ("missed", "worst: +1.5% decode time, +12.0 ms TTFT")  # 12 ms over raw TTFT: more than 5
    assert cpu == ("met", "worst: +0.100 ms/token = 1.00% of raw TPOT 10.0 ms; +1.00 ms before the first token")
    # llama.cpp: each of our systems on its worst prompt; met if one of them meets both
    assert llama == (
        "missed",
        "genai-raw/llama.cpp: decode 0.90x, TTFT 1.67x; core-engine/llama.cpp: decode 0.89x, TTFT 1.70x "
        "(worst prompt each)",
    )
    assert conc8 == ("met", "4.50x")
    assert hf == ("met", "1.48x (worst prompt)")  # 98.5/50 on the short prompt, 88.9/60 on the long one
    assert int4 == ("not measured", "needs --weight-format fp16,int4 on a Hugging Face checkpoint or a GGUF file")


def test_int4_against_fp16_on_decode_and_size() -> None:
    rows = [
        _row(f"core-engine [{f}]", p, 50.0, tps)
        for f, tps in (("fp16", 50.0), ("int4", 80.0))
        for p in ("short", "long")
    ]
    results = _results(rows, {r["system"]: {"status": "ok"} for r in rows})
    results["meta"]["weight_formats"] = ["fp16", "int4"]
    results["meta"]["model_size_bytes"] = {"fp16": 1000, "int4": 300}
    target = next(t for t in targets(results) if t["target"].startswith("int4"))
    assert (target["verdict"], target["detail"]) == ("met", "decode 1.60x, size 0.30x")


def test_targets_not_measured_say_why() -> None:
    rows = [_row("core-engine", "short", 52.0, 99.0), _row("core-engine", "long", 510.0, 89.0)]
    error = "pip install llama-cpp-python (No module named 'llama_cpp')"
    systems = {"core-engine": {"status": "ok"}, "llama-cpp-python": {"status": "not installed", "error": error}}
    results = _results(rows, systems)
    results["targets"] = targets(results)
    assert [t["verdict"] for t in results["targets"]] == ["not measured"] * 10
    details = [t["detail"] for t in results["targets"]]
    assert details[2] == error
    assert details[4] == "needs langchain-huggingface and langchain-stream"
    markdown = render_markdown(results)
    assert "| core-engine | long | 40 | 128 | 510.0 / 510.0 |" in markdown
    assert f"| decode tok/s >= llama-cpp-python's, TTFT <= 1.5x its | not measured | {error} |" in markdown


def _conc(system: str, n: int, tps: float) -> Any:
    mode = {"aggregate_tps": tps, "ttft_ms_median": 100.0}
    return {"system": system, "n": n, "parallel": mode, "sequential": {**mode, "aggregate_tps": 30.0}, "speedup": 1.0}


def test_server_targets_and_the_scale_out_findings() -> None:
    rows = [
        _row("core-engine", "short", 50.0, 100.0),
        _row("server-stream", "short", 58.0, 98.0),  # 0.98x: met
        _row("ray-serve-1", "short", 70.0, 96.0),
        _row("core-engine", "long", 500.0, 90.0),
        _row("server-stream", "long", 505.0, 86.4),  # 0.96x: the worst prompt decides, missed
        _row("ray-serve-1", "long", 530.0, 85.0),
    ]
    conc = [
        _conc("core-engine.astream", 8, 200.0),
        _conc("server-stream.astream", 8, 192.0),
        _conc("ray-serve-1.astream", 8, 180.0),
        _conc("ray-serve-2.astream", 8, 189.0),
    ]
    results = _results(rows, {name: {"status": "ok"} for name in dict.fromkeys(r["system"] for r in rows)}, conc)
    by_name = {t["target"]: (t["verdict"], t["detail"]) for t in targets(results)}
    single = by_name["one stream through `openvino-llm serve` decodes >= 0.97x the in-process engine"]
    assert single == ("missed", "decode 0.960x the in-process engine (worst prompt), TTFT +8.0 ms")
    eight = by_name["8 concurrent SSE clients of the server reach >= 0.95x the in-process aggregate tok/s"]
    assert eight == ("met", "192.0 vs 200.0 tok/s = 0.960x")
    # the adapters' own CPU target is about the adapters, not the served systems
    assert by_name[next(t for t in by_name if "own CPU" in t)][0] == "not measured"

    findings = scale_out(results)
    assert findings[0] == "8 concurrent clients: 2 replicas 189.0 tok/s vs 1 replica 180.0 tok/s = 1.05x"
    assert findings[1].startswith("ray-serve-1 vs server-stream, short prompt, one client: TTFT 70.0 vs 58.0 ms (+12.0")
    results["targets"] = targets(results)
    assert "## Scale-out on Ray Serve" in render_markdown(results)


def test_speculation_targets_take_the_best_setting_on_their_prompt() -> None:
    rows = [
        _row("core-engine", "code", 60.0, 13.0),
        _row("engine-draft k=3", "code", 70.0, 17.0),
        _row("engine-draft k=5", "code", 72.0, 20.0),  # 1.54x: the best setting decides
        _row("core-engine", "edit", 300.0, 12.0),
        _row("engine-lookup k=5", "edit", 310.0, 16.8),  # 1.4x
        _row("engine-draft k=5", "edit", 320.0, 30.0),  # a draft on the edit prompt does not count for lookup
    ]
    results = _results(rows, {name: {"status": "ok"} for name in dict.fromkeys(r["system"] for r in rows)})
    by_name = {t["target"]: (t["verdict"], t["detail"]) for t in targets(results)}
    draft = by_name["a draft model decodes code (the code prompt) >= 1.5x faster than the plain engine"]
    assert draft == ("met", "best engine-draft k=5: 1.54x (engine-draft k=3 1.31x)")
    lookup = by_name["prompt lookup decodes a copy-heavy edit (the edit prompt) >= 1.5x faster than the plain engine"]
    assert lookup == ("missed", "best engine-lookup k=5: 1.40x")
    results["ratios"] = [r for r in results["ratios"] if r["prompt"] != "code"]
    missing = {t["target"]: t for t in targets(results)}
    assert missing[next(t for t in missing if "draft model" in t)]["detail"] == (
        "needs --draft-model, core-engine in --systems and the code prompt in --prompts"
    )
