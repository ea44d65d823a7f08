"""What ``openvino-llm bench`` reports: statistics, ratios to the baselines, the targets' verdicts,
and the files ``bench.json``, ``bench.md`` (tables) and ``bench.png`` (chart).

Everything here works from the results dictionary alone (as written to ``bench.json``), so a saved
run can be summarized again.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .peers import PEERS
from .systems import OURS, Sample, system_name


def _stats(values: Sequence[float]) -> dict[str, float]:
    """Median and p90 (nearest rank) of ``values``."""
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 3), "p90": round(p90, 3)}


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Median/p90 of TTFT, TPOT, decode tokens/s, end-to-end latency and output tokens of ``samples``."""
    return {
        "runs": len(samples),
        "ttft_ms": _stats([s.ttft_ms for s in samples]),
        "tpot_ms": _stats([s.tpot_ms for s in samples]),
        "decode_tps": _stats([s.decode_tps for s in samples]),
        "e2e_ms": _stats([s.total_ms for s in samples]),
        "output_tokens": _stats([s.output_tokens for s in samples]),
        "caller_cpu_per_token_ms": _stats([s.caller_cpu_per_token_ms for s in samples]),
        "caller_cpu_ttft_ms": _stats([s.caller_cpu_ttft_ms for s in samples]),
        "input_tokens": samples[0].input_tokens,
        "internal": {
            k: round(statistics.median(s.internal[k] for s in samples), 3) for k in (samples[0].internal or {})
        },
    }


Row = dict[str, Any]
#: A target's verdict: met (True), missed (False) or not measured (None), and the numbers behind it.
Verdict = tuple[bool | None, str]


def _prompts(rows: list[Row]) -> list[str]:
    """The prompts of the single-stream rows, in the order they were run."""
    return list(dict.fromkeys(r["prompt"] for r in rows))


def _find(rows: list[Row], system: str, prompt: str) -> Row | None:
    """The row of the label ``system`` for ``prompt``."""
    return next((r for r in rows if r["system"] == system and r["prompt"] == prompt), None)


def _find_name(rows: list[Row], name: str, prompt: str) -> Row | None:
    """The row of the system ``name`` (on whichever weight format it ran) for ``prompt``."""
    return next((r for r in rows if system_name(r["system"]) == name and r["prompt"] == prompt), None)


def _pairs(rows: list[Row], ours: str, other: str, *, by_name: bool = False) -> list[tuple[Row, Row]]:
    """(ours, other) rows of every prompt both answered, ``other``'s decode rate and TTFT measured."""
    find = _find_name if by_name else _find
    pairs = [(find(rows, ours, p), find(rows, other, p)) for p in _prompts(rows)]
    return [(a, b) for a, b in pairs if a and b and b["decode_tps"]["median"] and b["ttft_ms"]["median"]]


def _worst_ratio(pairs: list[tuple[Row, Row]], key: str) -> float:
    """Ours over the other system's median ``key``, on the prompt where ours does worst."""
    values = [a[key]["median"] / b[key]["median"] for a, b in pairs]
    return max(values) if key == "ttft_ms" else min(values)  # time: higher is worse; rates: lower is worse


def _delta(row: Row, base: Row, key: str) -> float:
    return round(row[key]["median"] - base[key]["median"], 4)


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each system against raw openvino-genai (and the adapters against the core engine), per prompt."""
    rows = results["single_stream"]
    out = []
    for row in rows:
        name = system_name(row["system"])
        fmt = row["system"][len(name) :]  # "" or " [int4]": the baseline on the same weight format
        for base_name in ("genai-raw", "core-engine"):
            base = _find(rows, base_name + fmt, row["prompt"])
            if base is None or name in ("genai-raw", base_name) or (base_name == "core-engine" and name in PEERS):
                continue
            b_tpot, tpot = base["tpot_ms"]["median"], row["tpot_ms"]["median"]
            out.append(
                {
                    "system": row["system"],
                    "baseline": base["system"],
                    "prompt": row["prompt"],
                    "ttft_delta_ms": round(row["ttft_ms"]["median"] - base["ttft_ms"]["median"], 2),
                    "ttft_ratio": round(row["ttft_ms"]["median"] / base["ttft_ms"]["median"], 3)
                    if base["ttft_ms"]["median"]
                    else None,
                    "decode_time_delta_pct": round((tpot / b_tpot - 1) * 100, 2) if b_tpot else None,
                    "decode_tps_ratio": round(row["decode_tps"]["median"] / base["decode_tps"]["median"], 3)
                    if base["decode_tps"]["median"]
                    else None,
                    # the calling thread's extra CPU (per token; before the first text): what a wrapper itself
                    # costs, far less noisy than wall time. Only against the core engine: raw openvino-genai
                    # runs inference on the calling thread too.
                    "caller_cpu_delta_ms_per_token": _delta(row, base, "caller_cpu_per_token_ms")
                    if base_name == "core-engine"
                    else None,
                    "caller_cpu_ttft_delta_ms": _delta(row, base, "caller_cpu_ttft_ms")
                    if base_name == "core-engine"
                    else None,
                }
            )
    return out


_ADAPTERS = "adapters add <= 2% decode time and <= 5 ms TTFT over raw openvino-genai"


def _adapters_wall_clock(results: dict[str, Any]) -> Verdict:
    adapters = [
        r for r in results["ratios"] if r["baseline"].startswith("genai-raw") and system_name(r["system"]) in OURS
    ]
    if not adapters:
        return None, "needs genai-raw and an adapter"
    worst_pct = max(r["decode_time_delta_pct"] or 0.0 for r in adapters)
    worst_ms = max(r["ttft_delta_ms"] for r in adapters)
    return worst_pct <= 2.0 and worst_ms <= 5.0, f"worst: {worst_pct:+.1f}% decode time, {worst_ms:+.1f} ms TTFT"


def _adapters_cpu(results: dict[str, Any]) -> Verdict:
    on_engine = [
        r for r in results["ratios"] if r["baseline"].startswith("core-engine") and system_name(r["system"]) in OURS
    ]
    raw_tpots = [r["tpot_ms"]["median"] for r in results["single_stream"] if r["system"].startswith("genai-raw")]
    if not on_engine or not raw_tpots:
        return None, "needs genai-raw, core-engine and an adapter"
    per_token = max(r["caller_cpu_delta_ms_per_token"] for r in on_engine)
    before_first = max(r["caller_cpu_ttft_delta_ms"] for r in on_engine)
    share = per_token / min(raw_tpots)
    detail = (
        f"worst: {per_token:+.3f} ms/token = {share * 100:.2f}% of raw TPOT {min(raw_tpots):.1f} ms; "
        f"{before_first:+.2f} ms before the first token"
    )
    return share <= 0.02 and before_first <= 5.0, detail


def _versus_llama_cpp(results: dict[str, Any]) -> Verdict:
    rows = results["single_stream"]
    ours = dict.fromkeys(r["system"] for r in rows if system_name(r["system"]) in ("genai-raw", "core-engine"))
    versus = []  # (our system, decode tok/s ratio, TTFT ratio), worst prompt, for each format
    for system in ours:
        pairs = _pairs(rows, system, "llama-cpp-python")
        if pairs:
            versus.append((system, _worst_ratio(pairs, "decode_tps"), _worst_ratio(pairs, "ttft_ms")))
    if not versus:
        return None, _error(results, "llama-cpp-python", "llama-cpp-python not in --peers")
    best = max(versus, key=lambda v: (v[1] >= 1 and v[2] <= 1.5, v[1]))
    detail = "; ".join(f"{label}/llama.cpp: decode {tps:.2f}x, TTFT {ttft:.2f}x" for label, tps, ttft in versus)
    return best[1] >= 1 and best[2] <= 1.5, detail + " (worst prompt each)"


def _concurrent_chat(results: dict[str, Any]) -> Verdict:
    conc = [r for r in results["concurrency"] if r["system"] == "ChatOpenVINO.astream" and r["n"] == 8]
    if not conc:
        return None, "no N=8 ChatOpenVINO run"
    speedup = conc[0]["speedup"]
    return speedup >= 4, f"{speedup:.2f}x"


def _versus_huggingface(results: dict[str, Any]) -> Verdict:
    pairs = _pairs(results["single_stream"], "langchain-stream", "langchain-huggingface", by_name=True)
    if not pairs:
        return None, _error(results, "langchain-huggingface", "needs langchain-huggingface and langchain-stream")
    x = _worst_ratio(pairs, "decode_tps")
    return x >= 1.2, f"{x:.2f}x (worst prompt)"


def _int4_versus_fp16(results: dict[str, Any]) -> Verdict:
    pairs = _pairs(results["single_stream"], "core-engine [int4]", "core-engine [fp16]")
    if not pairs:
        return None, "needs --weight-format fp16,int4 on a Hugging Face checkpoint or a GGUF file"
    sizes = results["meta"]["model_size_bytes"]
    x = _worst_ratio(pairs, "decode_tps")
    size = sizes["int4"] / sizes["fp16"]
    return x >= 1.3 and size <= 0.35, f"decode {x:.2f}x, size {size:.2f}x"


def _n8(results: dict[str, Any], system: str) -> float | None:
    """Aggregate tok/s of 8 parallel requests of ``system`` in the concurrency table, if measured."""
    row = next((r for r in results["concurrency"] if r["system"] == system and r["n"] == 8), None)
    return row["parallel"]["aggregate_tps"] if row else None


def _server_single_stream(results: dict[str, Any]) -> Verdict:
    pairs = _pairs(results["single_stream"], "server-stream", "core-engine", by_name=True)
    if not pairs:
        return None, _error(results, "server-stream", "needs server-stream and core-engine in --systems")
    x = _worst_ratio(pairs, "decode_tps")
    ttft = max(a["ttft_ms"]["median"] - b["ttft_ms"]["median"] for a, b in pairs)
    return x >= 0.97, f"decode {x:.3f}x the in-process engine (worst prompt), TTFT {ttft:+.1f} ms"


def _server_concurrent(results: dict[str, Any]) -> Verdict:
    server, engine = _n8(results, "server-stream.astream"), _n8(results, "core-engine.astream")
    if not server or not engine:
        return None, "needs --concurrency with 8 and server-stream, core-engine in --systems"
    return server / engine >= 0.95, f"{server:.1f} vs {engine:.1f} tok/s = {server / engine:.3f}x"


def _speculation(results: dict[str, Any], mode: str, prompt: str) -> Verdict:
    """The best ``engine-{mode}`` setting's decode tok/s over the plain core engine on ``prompt``."""
    rows = [
        r
        for r in results["ratios"]
        if system_name(r["system"]).startswith(f"engine-{mode} ")
        and r["baseline"].startswith("core-engine")
        and r["prompt"] == prompt
        and r["decode_tps_ratio"]
    ]
    if not rows:
        flag = "--draft-model" if mode == "draft" else "--prompt-lookup"
        return None, f"needs {flag}, core-engine in --systems and the {prompt} prompt in --prompts"
    best = max(rows, key=lambda r: r["decode_tps_ratio"])
    others = ", ".join(f"{system_name(r['system'])} {r['decode_tps_ratio']:.2f}x" for r in rows if r is not best)
    detail = f"best {system_name(best['system'])}: {best['decode_tps_ratio']:.2f}x" + (f" ({others})" if others else "")
    return best["decode_tps_ratio"] >= 1.5, detail


def scale_out(results: dict[str, Any]) -> list[str]:
    """What the Ray systems measured: 1 vs 2 replicas under 8 clients, the proxy's TTFT over the server's."""
    out = []
    one, two = _n8(results, "ray-serve-1.astream"), _n8(results, "ray-serve-2.astream")
    if one and two:
        out.append(f"8 concurrent clients: 2 replicas {two:.1f} tok/s vs 1 replica {one:.1f} tok/s = {two / one:.2f}x")
    rows = results["single_stream"]
    for ray in ("ray-serve-1", "ray-serve-2"):
        for prompt in _prompts(rows):
            a, b = _find_name(rows, ray, prompt), _find_name(rows, "server-stream", prompt)
            if a and b:
                out.append(
                    f"{ray} vs server-stream, {prompt} prompt, one client: TTFT {a['ttft_ms']['median']:.1f} vs "
                    f"{b['ttft_ms']['median']:.1f} ms ({a['ttft_ms']['median'] - b['ttft_ms']['median']:+.1f} ms "
                    f"through Serve's proxy and gateway), decode {a['decode_tps']['median']:.1f} vs "
                    f"{b['decode_tps']['median']:.1f} tok/s"
                )
    return out


def _error(results: dict[str, Any], system: str, default: str) -> str:
    """Why ``system`` was not measured: its error, else ``default``."""
    status = {system_name(s["system"]): s for s in results["systems"]}
    return str(status.get(system, {}).get("error", default))


#: The issue's targets: what each promises, and how this run's numbers decide it.
TARGETS: tuple[tuple[str, Callable[[dict[str, Any]], Verdict]], ...] = (
    (f"{_ADAPTERS} (wall clock)", _adapters_wall_clock),
    (f"{_ADAPTERS} (the adapter layer's own CPU on the calling thread, over the core engine)", _adapters_cpu),
    ("decode tok/s >= llama-cpp-python's, TTFT <= 1.5x its", _versus_llama_cpp),
    ("8 concurrent ChatOpenVINO.astream >= 4x aggregate tok/s of 8 sequential", _concurrent_chat),
    (
        ">= 1.2x HuggingFacePipeline(backend='openvino') single-stream decode (ChatOpenVINO.stream vs ChatHuggingFace)",
        _versus_huggingface,
    ),
    ("int4 decodes >= 1.3x fp16, size <= 0.35x", _int4_versus_fp16),
    ("one stream through `openvino-llm serve` decodes >= 0.97x the in-process engine", _server_single_stream),
    ("8 concurrent SSE clients of the server reach >= 0.95x the in-process aggregate tok/s", _server_concurrent),
    (
        "a draft model decodes code (the code prompt) >= 1.5x faster than the plain engine",
        lambda results: _speculation(results, "draft", "code"),
    ),
    (
        "prompt lookup decodes a copy-heavy edit (the edit prompt) >= 1.5x faster than the plain engine",
        lambda results: _speculation(results, "lookup", "edit"),
    ),
)


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets, each "met", "missed" or "not measured" (with why) from this run's numbers."""
    out = []
    for target, check in TARGETS:
        met, detail = check(results)
        verdict = "not measured" if met is None else "met" if met else "missed"
        out.append({"target": target, "verdict": verdict, "detail": detail})
    return out


def _fmt(stat: dict[str, float]) -> str:
    return f"{stat['median']:.1f} / {stat['p90']:.1f}"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(status: Any, error: str | None) -> str:
    text = f"{status}: {error}" if error else str(status)
    return " ".join(text.split()).replace("|", "/")


def render_markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables."""
    meta = results["meta"]
    lines = [
        f"# openvino-llm bench: {meta['model']}",
        "",
        f"- Date: {meta['date']}; CPU: {meta['cpu']} ({meta['cores']} cores); device {meta['device']}; "
        f"1-min load average at the end: {meta['load_avg_1m']}",
        f"- Command: `{meta['command']}`",
        f"- Model: `{meta['model_path']}` ({meta['model_kind']}), size on disk: "
        + ", ".join(f"{k}: {v / 1e6:.1f} MB" for k, v in meta["model_size_bytes"].items()),
        f"- Greedy, max_new_tokens={meta['max_new_tokens']}, {meta['runs']} measured run(s) after "
        f"{meta['warmup']} warm-up, systems interleaved; values are median / p90.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "## Single stream",
        "",
        "| system | prompt | in tok | out tok | TTFT ms | TPOT ms | decode tok/s | end-to-end ms "
        "| caller CPU ms/token |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["single_stream"]:
        lines.append(
            f"| {r['system']} | {r['prompt']} | {r['input_tokens'] if r['input_tokens'] is not None else '-'} | "
            f"{r['output_tokens']['median']:.0f} | {_fmt(r['ttft_ms'])} | {_fmt(r['tpot_ms'])} | "
            f"{_fmt(r['decode_tps'])} | {_fmt(r['e2e_ms'])} | {r['caller_cpu_per_token_ms']['median']:.3f} |"
        )
    lines += [
        "",
        "## Against the baseline (medians)",
        "",
        "| system | baseline | prompt | TTFT delta ms | decode time delta | decode tok/s ratio "
        "| caller CPU delta ms/token | caller CPU delta before 1st token ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["ratios"]:
        pct = "-" if r["decode_time_delta_pct"] is None else f"{r['decode_time_delta_pct']:+.1f}%"
        lines.append(
            f"| {r['system']} | {r['baseline']} | {r['prompt']} | {r['ttft_delta_ms']:+.1f} | {pct} "
            f"| {r['decode_tps_ratio']} | {_num(r['caller_cpu_delta_ms_per_token'], '+.3f')} "
            f"| {_num(r['caller_cpu_ttft_delta_ms'], '+.2f')} |"
        )
    if results["concurrency"]:
        lines += [
            "",
            "## Concurrency (short prompt, N requests on one engine)",
            "",
            "| system | N | parallel agg tok/s | sequential agg tok/s | speedup "
            "| TTFT ms parallel | TTFT ms sequential |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["concurrency"]:
            p, s = r["parallel"], r["sequential"]
            lines.append(
                f"| {r['system']} | {r['n']} | {p['aggregate_tps']:.1f} | {s['aggregate_tps']:.1f} | "
                f"{r['speedup']}x | {p['ttft_ms_median']:.0f} | {s['ttft_ms_median']:.0f} |"
            )
    if results["load"]:
        lines += [
            "",
            "## Load time and memory (each in a fresh process)",
            "",
            "| system | load, empty compiled cache ms | load, warm compiled cache ms | peak RSS MB, one request "
            "| peak RSS MB, 8 more requests | status |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in results["load"]:
            eight = r.get("peak_rss_8_mb", "-")
            if "streams_at_once" in r:
                eight = f"{eight} ({'at once' if r['streams_at_once'] else 'one after another'})"
            lines.append(
                f"| {r['system']} | {r.get('load_cold_ms', '-')} | {r.get('load_warm_ms', '-')} | "
                f"{r.get('peak_rss_mb', '-')} | {eight} | {_cell(r.get('status'), r.get('error'))} |"
            )
    findings = scale_out(results)
    if findings:
        lines += ["", "## Scale-out on Ray Serve", "", *(f"- {f}" for f in findings)]
    lines += ["", "## Systems", "", "| system | what | status |", "|---|---|---|"]
    for s in results["systems"]:
        lines.append(f"| {s['system']} | {s['description']} | {_cell(s['status'], s.get('error'))} |")
    lines += ["", "## Targets", "", "| target | verdict | detail |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['verdict']} | {t['detail']} |")
    return "\n".join(lines) + "\n"


def render_chart(results: dict[str, Any], path: Path) -> bool:
    """Decode tokens/s, TTFT and concurrency speedup as a PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = results["single_stream"]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    prompts = _prompts(rows)
    panels = 3 if results["concurrency"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    width = 0.8 / max(1, len(prompts))
    for ax, key, title in (
        (axes[0], "decode_tps", "decode tokens/s (median)"),
        (axes[1], "ttft_ms", "TTFT ms (median)"),
    ):
        for i, prompt in enumerate(prompts):
            values = [(_find(rows, s, prompt) or {}).get(key, {}).get("median", 0.0) for s in systems]
            ax.barh([y + i * width for y in range(len(systems))], values, height=width, label=prompt)
        ax.set_yticks([y + width * (len(prompts) - 1) / 2 for y in range(len(systems))], systems, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.legend(fontsize=8)
    if results["concurrency"]:
        ax = axes[2]
        for label in dict.fromkeys(r["system"] for r in results["concurrency"]):
            pts = [r for r in results["concurrency"] if r["system"] == label]
            ax.plot(
                [r["n"] for r in pts],
                [r["parallel"]["aggregate_tps"] for r in pts],
                marker="o",
                label=f"{label} parallel",
            )
            ax.plot(
                [r["n"] for r in pts],
                [r["sequential"]["aggregate_tps"] for r in pts],
                marker="x",
                ls="--",
                label=f"{label} sequential",
            )
        ax.set_xlabel("requests N")
        ax.set_title("aggregate tokens/s")
        ax.legend(fontsize=7)
    fig.suptitle(f"{results['meta']['model']} on {results['meta']['cpu']} ({results['meta']['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` (when matplotlib is installed) into ``out``."""
    results["meta"]["chart"] = render_chart(results, out / "bench.png")
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(render_markdown(results))


__all__ = ["ratios", "render_chart", "render_markdown", "scale_out", "summarize", "targets", "write_outputs"]
