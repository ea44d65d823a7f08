"""Faults: an export killed half-way, two processes exporting at once, damaged models, failed writes.

Plus the errors users can catch: every documented type is exported and re-raised unchanged by the
adapters; the CLI reports a damaged model in one line.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import openvino_genai
import pytest

import openvino_llm
from openvino_llm import load_engine
from openvino_llm.errors import (
    DeviceNotAvailableError,
    ExportError,
    InvalidParameterError,
    ModelNotFoundError,
    OpenVINOLLMError,
)
from openvino_llm.models import export_model, list_cache, resolve_model
from openvino_llm.models.cache import MARKER_FILE
from openvino_llm.models.ir import ir_damage

REPO_ROOT = Path(__file__).resolve().parents[2]
_EXPORT = """\
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from openvino_llm.models.resolve import resolve_model
import optimum.exporters.openvino  # imported before the start line, so both processes start together
if len(sys.argv) > 3:  # a start line: wait until every process has finished its imports
    open(os.path.join(sys.argv[3], str(os.getpid())), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(sys.argv[3])) < int(sys.argv[4]) and time.monotonic() < deadline:
        time.sleep(0.01)
print(resolve_model(sys.argv[1], cache_dir=sys.argv[2]).path, flush=True)
"""


def _export_process(model: Path, cache: Path, *start_line: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _EXPORT, str(model), str(cache), *start_line],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CI": "1"},
    )


def _generates(path: Path) -> str:
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = config.min_new_tokens = 4
    return openvino_genai.LLMPipeline(str(path), "CPU").generate(["Hello"], config).texts[0]


def _entries(cache: Path) -> list[str]:
    root = cache / "exports"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


# --- an export killed half-way ------------------------------------------------------------------


def test_export_killed_half_way_leaves_no_entry_and_the_next_load_exports(tiny_hf_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _export_process(tiny_hf_dir, cache)
    try:
        deadline = time.monotonic() + 180
        tmp_folder = None
        while time.monotonic() < deadline and proc.poll() is None:
            tmps = list((cache / "exports").glob(".tmp-*")) if (cache / "exports").is_dir() else []
            if tmps and any(tmps[0].iterdir()):  # the export has started writing its files
                tmp_folder = tmps[0]
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the export ended before it could be killed: {proc.communicate()}"
        assert tmp_folder is not None, "the export never started writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what is left does not look like an entry: only the temporary folder, no marker anywhere
    assert list_cache(cache) == []
    assert _entries(cache) == [tmp_folder.name]
    assert not list(cache.rglob(MARKER_FILE))
    # the next load exports cleanly, and removes the leftover
    resolved = resolve_model(tiny_hf_dir, cache_dir=cache)
    assert _entries(cache) == [resolved.path.name]
    assert [e.path for e in list_cache(cache)] == [resolved.path]
    assert ir_damage(resolved.path) is None
    assert _generates(resolved.path)


# --- two processes, one export ------------------------------------------------------------------


def test_two_processes_loading_the_same_new_model_export_it_once(tiny_hf_dir: Path, tmp_path: Path) -> None:
    """Through resolve_model (test_export.py covers build_cached alone): one exports, the other waits."""
    cache = tmp_path / "cache"
    start_line = tmp_path / "ready"
    start_line.mkdir()
    procs = [_export_process(tiny_hf_dir, cache, str(start_line), "2") for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    paths = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert paths[0] == paths[1]
    logs = [err for _, err in outputs]
    assert sum(log.count("Exporting ") for log in logs) == 1, logs
    assert sum("Waiting for another process exporting" in log for log in logs) == 1, logs
    assert _entries(cache) == [Path(paths[0]).name]
    assert ir_damage(Path(paths[0])) is None


# --- damaged cache entries, IR folders and GGUF files --------------------------------------------


@pytest.fixture
def entry_copy(tiny_hf_dir: Path, tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model's cache entry, found by resolve_model in a fresh cache."""
    cache = tmp_path / "cache"
    entry = cache / "exports" / tiny_model.name
    shutil.copytree(tiny_model, entry)
    assert resolve_model(tiny_hf_dir, cache_dir=cache).path == entry  # a valid entry: used as is
    return entry


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


_DAMAGES = {
    "truncated model weights": (lambda e: _truncate(e / "openvino_model.bin"), "openvino_model.bin is truncated"),
    "garbage model xml": (
        lambda e: (e / "openvino_model.xml").write_bytes(b"\x00garbage<<"),
        "openvino_model.xml is not a valid OpenVINO IR file",
    ),
    "xml that is no IR": (
        lambda e: (e / "openvino_model.xml").write_text("<html><body>404</body></html>"),
        "openvino_model.xml is XML but not an OpenVINO IR model",
    ),
    "missing detokenizer": (lambda e: (e / "openvino_detokenizer.xml").unlink(), "openvino_detokenizer.xml is missing"),
    "truncated tokenizer": (lambda e: _truncate(e / "openvino_tokenizer.bin"), "openvino_tokenizer.bin is truncated"),
}


@pytest.mark.parametrize("damage", list(_DAMAGES))
def test_damaged_cache_entry_names_the_file_and_the_fix(tiny_hf_dir: Path, entry_copy: Path, damage: str) -> None:
    spoil, problem = _DAMAGES[damage]
    spoil(entry_copy)
    cache = entry_copy.parent.parent
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(tiny_hf_dir, cache_dir=cache)
    message = str(info.value)
    assert problem in message
    assert f"`openvino-llm cache clear {entry_copy.name} --cache-dir {cache}`" in message
    assert "load the model again to export it afresh" in message


def test_damaged_entry_of_the_default_cache_needs_no_option(
    tiny_hf_dir: Path, entry_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENVINO_LLM_CACHE", str(entry_copy.parent.parent))
    _truncate(entry_copy / "openvino_model.bin")
    with pytest.raises(ModelNotFoundError, match=rf"`openvino-llm cache clear {entry_copy.name}` \(or delete"):
        resolve_model(tiny_hf_dir)


def test_load_engine_on_a_damaged_entry_raises_the_same_error(tiny_hf_dir: Path, entry_copy: Path) -> None:
    _truncate(entry_copy / "openvino_model.bin")
    with pytest.raises(ModelNotFoundError, match=r"openvino_model\.bin is truncated.*openvino-llm cache clear"):
        load_engine(tiny_hf_dir, device="CPU", cache_dir=entry_copy.parent.parent)


@pytest.mark.parametrize("damage", ["truncated model weights", "garbage model xml", "xml that is no IR"])
def test_damaged_ir_folder_says_to_export_again(tiny_model: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "my-model-ov"
    shutil.copytree(tiny_model, folder)
    spoil, problem = _DAMAGES[damage]
    spoil(folder)
    for load in (resolve_model, lambda m: load_engine(m, device="CPU", cache_dir=tmp_path / "cache")):
        with pytest.raises(ModelNotFoundError) as info:
            load(folder)
        assert f"{folder} is a damaged OpenVINO IR folder: {problem}" in str(info.value)
        assert "Export the model again" in str(info.value)


def test_compressing_a_damaged_ir_folder_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from openvino_llm.models import CompressionOptions, compress_ir

    folder = tmp_path / "my-model-ov"
    shutil.copytree(tiny_model, folder)
    _truncate(folder / "openvino_model.bin")
    with pytest.raises(ModelNotFoundError, match=r"damaged OpenVINO IR folder: openvino_model\.bin is truncated"):
        compress_ir(folder, tmp_path / "out", CompressionOptions("int8"))
    assert not (tmp_path / "out").exists()


def test_truncated_gguf_is_refused_instead_of_crashing(smollm2_gguf: Path, tmp_path: Path) -> None:
    """openvino-genai crashes the whole process (SIGSEGV) on a truncated GGUF: it must never get one."""
    cut = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(smollm2_gguf.stat().st_size - 4096))
    with pytest.raises(ModelNotFoundError, match=r"cut\.gguf is damaged: the file is truncated.*copy the file again"):
        load_engine(cut, device="CPU")
    # the intact file passes the same check (and, Q4_1 being read inexactly, is re-exported to an IR)
    assert resolve_model(smollm2_gguf).kind == "ir"


_GREEDY = """\
import sys
from openvino_llm import GenerationParams, load_engine
engine = load_engine(sys.argv[1], device="CPU", cache_dir=sys.argv[2])
print(repr(engine.generate("Hello", GenerationParams(max_new_tokens=4, temperature=0)).text))
"""


def test_damaged_compiled_model_cache_is_recompiled(tiny_model: Path, tmp_path: Path) -> None:
    """A truncated or overwritten blob in ``<cache>/compiled/``: OpenVINO recompiles, same greedy output."""
    cache = tmp_path / "cache"

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", _GREEDY, str(tiny_model), str(cache)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]

    expected = run()
    blobs = list((cache / "compiled").glob("*.blob"))
    assert blobs
    for blob in blobs:
        blob.chmod(0o600)  # OpenVINO writes them read-only
        _truncate(blob)
    assert run() == expected
    for blob in (cache / "compiled").glob("*.blob"):
        blob.chmod(0o600)
        blob.write_bytes(os.urandom(3000))
    assert run() == expected


# --- failed writes ------------------------------------------------------------------------------


def test_cache_folder_that_cannot_be_created(tiny_hf_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    cache = not_a_folder / "cache"
    with pytest.raises(ExportError, match=r"Cannot write to the openvino-llm cache folder .*a-file/cache") as info:
        resolve_model(tiny_hf_dir, cache_dir=cache)
    assert "cache_dir=" in str(info.value) and "--cache-dir" in str(info.value)
    with pytest.raises(ExportError, match=r"Cannot write .*a-file/out \((File exists|Not a directory)"):
        export_model(tiny_hf_dir, not_a_folder / "out")
    assert not_a_folder.read_text() == "x"
    # a model that needs no export still loads: only the compiled-model cache is skipped
    engine = load_engine(tiny_model, device="CPU", cache_dir=cache)
    assert engine.generate("Hi", openvino_llm.GenerationParams(max_new_tokens=2)).usage.output_tokens > 0


@pytest.fixture
def immutable(tmp_path: Path):
    """Make folders immutable (``chattr +i``): not even root may create files in them."""
    done: list[Path] = []

    def make(folder: Path) -> None:
        proc = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {proc.stderr.strip()}")
        done.append(folder)

    yield make
    for folder in done:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_permission_denied_in_the_cache(tiny_hf_dir: Path, tmp_path: Path, immutable) -> None:
    cache = tmp_path / "cache"
    (cache / "exports").mkdir(parents=True)
    immutable(cache / "exports")
    with pytest.raises(ExportError, match=r"Cannot write to the openvino-llm cache folder .*Operation not permitted"):
        resolve_model(tiny_hf_dir, cache_dir=cache)
    assert _entries(cache) == []


def test_read_only_cache_still_serves_its_entries(tiny_hf_dir: Path, entry_copy: Path, immutable) -> None:
    """A cache prepared once and then made read-only (a shared server cache): its exports load."""
    cache = entry_copy.parent.parent
    for folder in (cache, cache / "exports", entry_copy):
        immutable(folder)
    assert resolve_model(tiny_hf_dir, cache_dir=cache).path == entry_copy


_DISK_FULL = """\
import resource, signal, sys
from openvino_llm.errors import OpenVINOLLMError
from openvino_llm.models.resolve import resolve_model
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    resolve_model(sys.argv[1], cache_dir=sys.argv[2])
except OpenVINOLLMError as e:
    print(type(e).__name__, e)
"""


def test_write_failing_mid_export_leaves_nothing(tiny_hf_dir: Path, tmp_path: Path) -> None:
    """No file may grow past 200 KB (the weights are 590 KB): the export fails while writing its weights."""
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tiny_hf_dir), str(cache), str(200_000)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "CI": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("ExportError Exporting"), proc.stdout
    assert f"Writing the result into {cache / 'exports'} failed" in line
    assert "free disk space or check write permission" in line and "Nothing was left half-written" in line
    assert _entries(cache) == [] and list_cache(cache) == []


# --- errors users can catch ----------------------------------------------------------------------


def test_every_documented_error_is_exported_and_shares_the_base() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    names = openvino_llm.errors.__all__
    assert set(names) <= set(openvino_llm.__all__)
    for name in names:
        cls = getattr(openvino_llm, name)
        assert issubclass(cls, OpenVINOLLMError) and issubclass(cls, Exception)
        assert f"`{name}`" in readme, f"{name} is not documented in README.md"
    # the stdlib bases let generic handlers catch them too
    assert issubclass(openvino_llm.ModelNotFoundError, FileNotFoundError)
    assert issubclass(openvino_llm.InvalidParameterError, ValueError)
    assert issubclass(openvino_llm.ContextLengthExceededError, InvalidParameterError)


def test_langchain_adapter_reraises_core_errors(smollm2_gguf: Path) -> None:
    lc = pytest.importorskip("langchain_openvino")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        lc.ChatOpenVINO(model="/nonexistent")
    with pytest.raises(DeviceNotAvailableError, match="'NOPE' is not available"):
        lc.ChatOpenVINO(model=smollm2_gguf, device="NOPE")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        lc.OpenVINOEmbeddings(model="/nonexistent")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        lc.OpenVINORerank(model="/nonexistent")


def test_llama_index_adapter_reraises_core_errors(smollm2_gguf: Path) -> None:
    li = pytest.importorskip("llama_index_openvino")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        li.OpenVINO(model="/nonexistent")
    with pytest.raises(DeviceNotAvailableError, match="'NOPE' is not available"):
        li.OpenVINO(model=str(smollm2_gguf), device="NOPE")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        li.OpenVINOEmbedding(model="/nonexistent")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        li.OpenVINORerank(model="/nonexistent")


# --- the CLI on damaged models --------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openvino_llm.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CI": "1"},
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("openvino-llm: error: "), proc.stderr
    return lines[0]


def test_cli_reports_a_damaged_entry_in_one_line_and_its_fix_works(tiny_hf_dir: Path, entry_copy: Path) -> None:
    cache = entry_copy.parent.parent
    _truncate(entry_copy / "openvino_model.bin")
    line = _one_error_line(_cli("generate", str(tiny_hf_dir), "Hi", "--cache-dir", str(cache), "--device", "CPU"))
    assert "openvino_model.bin is truncated" in line
    fix = re.search(r"`(openvino-llm cache clear [^`]+)`", line)
    assert fix is not None, line
    proc = _cli(*fix.group(1).split()[1:])  # run exactly the command the message gives
    assert proc.returncode == 0 and f"removed {entry_copy.name}" in proc.stdout, proc.stderr
    assert not entry_copy.exists()


def test_cli_reports_a_damaged_ir_folder_in_one_line(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-model-ov"
    shutil.copytree(tiny_model, folder)
    (folder / "openvino_model.xml").write_text("not xml")
    line = _one_error_line(_cli("generate", str(folder), "Hi", "--cache-dir", str(tmp_path / "cache")))
    assert f"{folder} is a damaged OpenVINO IR folder: openvino_model.xml" in line
    assert "Export the model again" in line


class _KillsTheWorker:
    """A scheduler command whose request id ends the worker thread, as a bug in the worker would."""

    @property
    def rid(self) -> int:
        raise SystemExit("worker killed by the test")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the kill itself
def test_streams_waiting_on_a_dead_worker_raise_instead_of_hanging(tiny_model: Path) -> None:
    engine = load_engine(tiny_model, device="CPU")
    params = openvino_llm.GenerationParams(max_new_tokens=1000, temperature=0)

    def sync_stream() -> BaseException | None:
        try:
            for _ in engine.stream("Hello", params):
                pass
        except OpenVINOLLMError as e:
            return e
        return None

    async def async_stream() -> BaseException | None:
        try:
            async for _ in engine.astream("Hello", params):
                pass
        except OpenVINOLLMError as e:
            return e
        return None

    async def main() -> tuple[BaseException | None, BaseException | None]:
        sync_task = asyncio.create_task(asyncio.to_thread(sync_stream))
        async_task = asyncio.create_task(async_stream())
        while engine.active_requests < 2:  # both are generating
            await asyncio.sleep(0.01)
        engine._scheduler._inbox.put(("cancel", _KillsTheWorker()))
        return await asyncio.wait_for(asyncio.gather(sync_task, async_task), timeout=30)

    try:
        errors = asyncio.run(main())
    finally:
        engine.close()
    for error in errors:
        assert error is not None, "a stream on a dead worker ended as if generation had finished"
        assert "generation worker" in str(error) and "stopped" in str(error) and "load the model again" in str(error)
