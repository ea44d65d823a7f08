"""The ``openvino-llm`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import openvino as ov
import pytest
from tests._shared import EXACT

from openvino_llm.models import CompressionOptions, ExportReport
from openvino_llm.models.cache import MARKER_FILE, build_cached
from openvino_llm.models.report import weights_size

ENTRY_POINT = Path(sys.executable).parent / "openvino-llm"


def run_cli(*args: str, stdin: str | None = None, cache: Path | None = None, timeout: float = 240):
    env = {**os.environ, "CI": "1"}
    if cache is not None:
        env["OPENVINO_LLM_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "openvino_llm.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("openvino-llm: error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_bad_ov_config_is_refused_before_any_work(tmp_path: Path) -> None:
    for bad, says in (("[1]", "must be a JSON object"), ("{oops", "--ov-config is not JSON")):
        proc = run_cli("generate", "smollm2-135m", "Hi", "--ov-config", bad, cache=tmp_path)
        assert_one_line_error(proc, says)
    assert not (tmp_path / "exports").exists()  # nothing was resolved or exported


_STATS = re.compile(r"\[finish: (\w+), (\d+) prompt \+ (\d+) generated tokens, TTFT \d+ ms, [\d.]+ tok/s\]")


@pytest.mark.slow
def test_generate_with_smollm2_knows_paris(smollm2_gguf: Path, cache_dir: Path) -> None:
    proc = run_cli(
        "generate",
        "smollm2-135m",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
        "--ov-config",
        json.dumps(EXACT),  # what a 135M model answers is only the same on every CPU in exact precision
        cache=cache_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    stats = _STATS.search(proc.stderr)
    assert stats, proc.stderr
    assert 0 < int(stats.group(3)) <= 24


@pytest.mark.slow
def test_chat_keeps_history_and_stops_at_exit(smollm2_gguf: Path, cache_dir: Path) -> None:
    proc = run_cli(
        "chat",
        "smollm2-135m",
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
        "--system",
        "You are terse.",
        stdin="My name is Ada.\n\nWhat is my name?\n/exit\nThis line is never read.\n",
        cache=cache_dir,
    )
    assert proc.returncode == 0, proc.stderr
    turns = [tuple(int(g) for g in m.groups()[1:]) for m in _STATS.finditer(proc.stderr)]
    assert len(turns) == 2, proc.stderr  # the empty line is skipped, nothing after /exit runs
    (prompt1, out1), (prompt2, _) = turns
    # the second prompt holds the first exchange: previous prompt + reply + the new question
    assert prompt2 > prompt1 + out1


def test_export_hf_folder_then_generate_from_it(tiny_hf_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-int8"
    proc = run_cli("export", str(tiny_hf_dir), str(out), "--weight-format", "int8", cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "int8" in proc.stdout
    assert (out / "openvino_model.xml").is_file() and (out / "openvino_detokenizer.xml").is_file()
    assert not (out / MARKER_FILE).exists()  # an explicit output folder is not a cache entry
    proc = run_cli(
        "generate",
        str(out),
        "Hello",
        "--max-new-tokens",
        "4",
        "--device",
        "CPU",
        "--system",
        "Be brief.",
        cache=tmp_path / "cache",
    )
    assert proc.returncode == 0, proc.stderr
    stats = _STATS.search(proc.stderr)
    assert stats and int(stats.group(3)) <= 4
    # the same OUT again: refused, nothing touched
    proc = run_cli("export", str(tiny_hf_dir), str(out), "--weight-format", "int8")
    assert_one_line_error(proc, "already exists")


def test_export_compresses_an_ir_folder(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "int4"
    proc = run_cli("export", str(tiny_model), str(out), "--weight-format", "int4", "--group-size", "32", "--sym")
    assert proc.returncode == 0, proc.stderr
    assert "int4 (group 32, sym)" in proc.stdout
    assert weights_size(out) < weights_size(tiny_model) / 3
    assert (out / "openvino_tokenizer.xml").is_file()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("export", "/no/such/dir", "OUT"), ("does not exist",)),
        (
            ("export", "SRC", "OUT", "--weight-format", "int5"),
            ("Unknown weight_format 'int5'", "fp32, fp16, int8, int4"),
        ),
        (("export", "SRC", "OUT", "--weight-format", "int4", "--ratio", "2"), ("ratio must be in (0, 1]",)),
        (("export", "no-such-org/no-such-model", "OUT"), ("no-such-org/no-such-model", "local folder")),
        (("generate", "/no/such/model.gguf", "Hi"), ("/no/such/model.gguf", "does not exist")),
        (("generate", "Hi", "--device", "NPU.7"), ("'NPU.7'", "Available devices")),
        (("generate", "Hi", "--temperature", "-1"), ("temperature",)),
        (("generate", "a", "b", "c"), ("[MODEL] PROMPT",)),
        (("chat", "/no/such/folder"), ("does not exist",)),
        (("cache", "clear", "no-such-key"), ("No cache entry 'no-such-key'",)),
    ],
)
def test_bad_input_gives_one_line_and_status_2(
    tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    src = tmp_path / "SRC"
    src.mkdir()
    args = tuple(str(src) if a == "SRC" else str(tmp_path / "OUT") if a == "OUT" else a for a in args)
    proc = run_cli(*args, cache=tmp_path / "cache", timeout=60)
    assert_one_line_error(proc, *fragments)


def test_devices_lists_full_names() -> None:
    proc = subprocess.run([str(ENTRY_POINT), "devices"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    core = ov.Core()
    expected = [f"{d}\t{core.get_property(d, 'FULL_DEVICE_NAME')}" for d in core.available_devices]
    assert proc.stdout.splitlines() == expected


def test_cache_list_and_clear(tmp_path: Path) -> None:
    def build(tmp: Path) -> ExportReport:
        (tmp / "openvino_model.bin").write_bytes(b"0" * 2048)
        return ExportReport(tmp, "src", "text-generation", CompressionOptions("int8"), 4096, 2048, 0.1)

    meta = {"name": "m", "source": "/models/m", "task": "text-generation", "options": {"weight_format": "int8"}}
    a, _ = build_cached(tmp_path, "m-llm-int8-0123456789abcdef", meta, build)
    b, _ = build_cached(tmp_path, "n-llm-int8-fedcba9876543210", meta, build)
    proc = run_cli("cache", "list", "--cache-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert sorted(r[0] for r in rows) == sorted([a.name, b.name])
    assert all(r[1:3] == ["text-generation", "int8"] and r[-1] == "/models/m" for r in rows)
    proc = run_cli("cache", "clear", a.name, cache=tmp_path)  # the cache from $OPENVINO_LLM_CACHE
    assert proc.returncode == 0 and f"removed {a.name}" in proc.stdout
    assert not a.exists() and b.exists()
    proc = run_cli("cache", "clear", "--all", "--cache-dir", str(tmp_path))
    assert proc.returncode == 0 and not b.exists()
    proc = run_cli("cache", "list", "--cache-dir", str(tmp_path))
    assert proc.returncode == 0 and proc.stdout == "" and "No exports" in proc.stderr
