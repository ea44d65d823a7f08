"""Export, compression, the export cache (atomicity, locking, reuse) and the lazy torch import."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import openvino_genai
import pytest
from tests._tiny_model import corpus_lines

from openvino_llm.errors import ExportError, InvalidParameterError, ModelNotFoundError
from openvino_llm.models import (
    CompressionOptions,
    ExportReport,
    clear_cache,
    compress_ir,
    export_model,
    list_cache,
    resolve_model,
)
from openvino_llm.models.cache import MARKER_FILE, atomic_directory, build_cached
from openvino_llm.models.report import progress_enabled, weights_size


def _generates(path: Path) -> str:
    pipe = openvino_genai.LLMPipeline(str(path), "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 6
    config.min_new_tokens = 6  # the random model may pick EOS early; force tokens out
    result = pipe.generate(["Hello, how are you?"], config)
    return result.texts[0]


def _no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".tmp-")] if folder.exists() else True


# --- CompressionOptions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"weight_format": "int2"}, "Unknown weight_format 'int2': use one of fp32, fp16, int8, int4"),
        ({"weight_format": 4}, "Unknown weight_format 4"),
        ({"weight_format": "int4", "ratio": 0}, r"ratio must be in \(0, 1\]"),
        ({"weight_format": "int4", "ratio": 1.5}, r"ratio must be in \(0, 1\]"),
        ({"weight_format": "int4", "ratio": True}, r"ratio must be in \(0, 1\]"),
        ({"weight_format": "int4", "group_size": 0}, "group_size must be a positive int"),
        ({"weight_format": "int4", "group_size": -2}, "group_size must be a positive int"),
        ({"weight_format": "int8", "group_size": 64}, "only apply to weight_format='int4'"),
        ({"weight_format": "fp16", "ratio": 0.5}, "only apply to weight_format='int4'"),
        ({"weight_format": None, "sym": True}, "sym only applies to integer weight formats"),
        ({"weight_format": "int4", "awq": True}, "awq is data-aware: pass dataset="),
        ({"weight_format": "int4", "scale_estimation": True}, "scale_estimation is data-aware"),
        ({"weight_format": "int4", "sym": "yes"}, "sym must be True or False"),
        ({"weight_format": "int4", "dataset": "no-such-dataset"}, "neither a dataset name"),
        ({"weight_format": "int4", "dataset": ["", "  "]}, "at least one non-empty text"),
        ({"weight_format": "int4", "dataset": 5}, "dataset must be a dataset name"),
        ({"weight_format": "int8", "dataset": "wikitext2"}, "dataset has no effect on int8"),
    ],
)
def test_invalid_compression_options(kwargs: dict, pattern: str) -> None:
    with pytest.raises(InvalidParameterError, match=pattern):
        CompressionOptions(**kwargs)


def test_compression_options_mapping(tmp_path: Path) -> None:
    assert CompressionOptions("INT8").weight_format == "int8"
    assert CompressionOptions("int8", sym=True).optimum_quantization_config() == {
        "bits": 8,
        "sym": True,
        "group_size": -1,
        "ratio": 1.0,
        "dtype": "int8",
    }
    texts = tmp_path / "calib.txt"
    texts.write_text("first sample\n\nsecond sample\n")
    opts = CompressionOptions("int4", group_size=64, ratio=0.8, awq=True, scale_estimation=True, dataset=str(texts))
    assert opts.dataset == ("first sample", "second sample")
    config = opts.optimum_quantization_config("local/folder")
    assert config == {
        "bits": 4,
        "sym": False,
        "group_size": 64,
        "ratio": 0.8,
        "dtype": "int4",
        "quant_method": "awq",
        "scale_estimation": True,
        "dataset": ["first sample", "second sample"],
    }
    # the mapping is accepted by optimum-intel itself
    from optimum.intel import OVWeightQuantizationConfig

    q = OVWeightQuantizationConfig(**config)
    assert (q.bits, q.group_size, q.ratio, q.scale_estimation) == (4, 64, 0.8, True)
    assert CompressionOptions("fp16").optimum_quantization_config() is None
    assert json.dumps(opts.as_dict())  # JSON-able (cache key)


# --- exports of the tiny model -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_exports(tiny_hf_dir: Path, tiny_model: Path, cache_dir: Path) -> dict[str, Path]:
    """fp16 / int8 / int4 exports of the tiny model (cached in the session cache)."""
    return {
        "fp32": tiny_model,
        "fp16": resolve_model(tiny_hf_dir, weight_format="fp16").path,
        "int8": resolve_model(tiny_hf_dir, weight_format="int8").path,
        "int4": resolve_model(tiny_hf_dir, compression=CompressionOptions("int4", group_size=32)).path,
    }


def test_compressed_exports_are_smaller_and_generate(tiny_exports: dict[str, Path]) -> None:
    sizes = {fmt: weights_size(path) for fmt, path in tiny_exports.items()}
    assert sizes["fp16"] < sizes["fp32"]
    assert sizes["int8"] < sizes["fp16"]
    assert sizes["int4"] < sizes["int8"]
    for fmt, path in tiny_exports.items():
        meta = json.loads((path / MARKER_FILE).read_text())
        assert meta["options"]["weight_format"] == (None if fmt == "fp32" else fmt)
        assert meta["report"]["size_after"] == weights_size(path)
    for fmt in ("int8", "int4"):
        assert _generates(tiny_exports[fmt]), f"{fmt} export produced no text"


def test_data_aware_int4_export(tiny_hf_dir: Path, tiny_exports: dict[str, Path]) -> None:
    options = CompressionOptions(
        "int4", group_size=32, ratio=0.5, awq=True, scale_estimation=True, dataset=corpus_lines()
    )
    path = resolve_model(tiny_hf_dir, compression=options).path
    assert path not in tiny_exports.values()
    # ratio 0.5 keeps half of the layers in int8: between the int4 and int8 sizes
    assert weights_size(tiny_exports["int4"]) < weights_size(path) < weights_size(tiny_exports["int8"])
    assert _generates(path)


def test_failed_export_leaves_no_entry_then_a_clean_one_works(
    tiny_hf_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    # group size 128 does not divide hidden size 64: NNCF fails after the model was converted
    with pytest.raises(ExportError, match=r"group size.*divides the layers' input sizes"):
        resolve_model(tiny_hf_dir, compression=CompressionOptions("int4", group_size=128), cache_dir=cache)
    assert list_cache(cache) == []
    assert list((cache / "exports").iterdir()) == []
    # a KeyboardInterrupt from the progress callback (Ctrl-C) leaves nothing either
    out = tmp_path / "out"
    seen: list[str] = []

    def interrupt(stage: str) -> None:
        seen.append(stage)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_model(tiny_hf_dir, out, progress=interrupt)
    assert seen == ["export"]
    assert not out.exists() and _no_leftovers(tmp_path)
    # then a clean export of the same thing works, and a second resolve does not export again
    caplog.clear()  # count only the exports of the two resolves below
    with caplog.at_level(logging.INFO, logger="openvino_llm"):
        first = resolve_model(tiny_hf_dir, cache_dir=cache)
        second = resolve_model(tiny_hf_dir, cache_dir=cache)
    assert first == second
    exports = [r for r in caplog.records if r.getMessage().startswith("Exporting")]
    assert len(exports) == 1
    assert any("KB ->" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert [e.path for e in list_cache(cache)] == [first.path]
    assert _generates(first.path)


def test_export_of_an_unreachable_hub_id_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no-such-org/no-such-model.*local folder"):
        export_model("no-such-org/no-such-model", tmp_path / "out")
    with pytest.raises(ModelNotFoundError, match="does not exist and is not a hub id"):
        export_model(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- compress_ir --------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [CompressionOptions("int8"), CompressionOptions("int4", group_size=32, sym=True)])
def test_compress_ir(tiny_model: Path, tmp_path: Path, options: CompressionOptions) -> None:
    out = tmp_path / "compressed"
    report = compress_ir(tiny_model, out, options)
    assert isinstance(report, ExportReport) and report.path == out
    assert report.size_before == weights_size(tiny_model)
    assert report.size_after == weights_size(out) < report.size_before / 2
    assert options.weight_format in report.summary()
    for name in ("openvino_tokenizer.xml", "openvino_detokenizer.bin", "config.json", "generation_config.json"):
        assert (out / name).is_file()
    assert not (out / MARKER_FILE).exists()
    assert _no_leftovers(tmp_path)
    assert _generates(out)


def test_compress_ir_to_fp16(tiny_model: Path, tmp_path: Path) -> None:
    report = compress_ir(tiny_model, tmp_path / "fp16", CompressionOptions("fp16"))
    assert report.size_after < report.size_before


def test_compress_ir_bad_input(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="needs a weight_format"):
        compress_ir(tiny_model, tmp_path / "a", CompressionOptions())
    with pytest.raises(InvalidParameterError, match="need the original Hugging Face checkpoint"):
        compress_ir(tiny_model, tmp_path / "a", CompressionOptions("int4", dataset=["text"], awq=True))
    with pytest.raises(ModelNotFoundError, match="not an OpenVINO IR folder"):
        compress_ir(tmp_path, tmp_path / "a", CompressionOptions("int8"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    with pytest.raises(InvalidParameterError, match="already exists and is not empty"):
        compress_ir(tiny_model, taken, CompressionOptions("int8"))
    assert not (tmp_path / "a").exists() and _no_leftovers(tmp_path)


# --- cache mechanics ----------------------------------------------------------------------------


def test_atomic_directory_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), atomic_directory(target) as tmp:
            (tmp / "half-written").write_text("x")
            raise exc
        assert not target.exists() and _no_leftovers(tmp_path)
    with atomic_directory(target) as tmp:
        (tmp / "done").write_text("x")
    assert (target / "done").read_text() == "x"


def _build_in_process(cache: str, counter: str) -> str:
    def build(tmp: Path) -> ExportReport:
        with open(counter, "a") as f:  # one line per real build
            f.write(f"{os.getpid()}\n")
        (tmp / "payload").write_text("ok")
        import time

        time.sleep(0.5)  # hold the lock long enough for the other process to wait on it
        return ExportReport(tmp, "src", "text-generation", CompressionOptions(), 1, 1, 0.5)

    path, _ = build_cached(Path(cache), "entry-llm-default-0123456789abcdef", {"name": "x"}, build)
    return str(path)


def test_two_processes_build_once(tmp_path: Path) -> None:
    counter = tmp_path / "builds.txt"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.starmap(_build_in_process, [(str(tmp_path), str(counter))] * 2)
    assert paths[0] == paths[1]
    assert len(counter.read_text().splitlines()) == 1
    assert (Path(paths[0]) / "payload").read_text() == "ok"


def test_an_entry_is_found_by_its_hash_under_another_name(tmp_path: Path) -> None:
    """The same model loaded by path and by its embedded name (two names, one hash) is exported once."""
    built = []

    def build(tmp: Path) -> ExportReport:
        built.append(tmp)
        (tmp / "payload").write_text("ok")
        return ExportReport(tmp, "src", "text-generation", CompressionOptions(), 1, 1, 0.1)

    a, made = build_cached(tmp_path, "Model-Q4_K_M-llm-default-0123456789abcdef", {"name": "a"}, build)
    b, made_again = build_cached(tmp_path, "Model-llm-default-0123456789abcdef", {"name": "a"}, build)
    assert made and not made_again and a == b and len(built) == 1
    c, made = build_cached(tmp_path, "Model-llm-int8-0123456789abcdef", {"name": "a"}, build)
    assert made and c != a  # another format is another export


def test_list_and_clear_cache(tmp_path: Path) -> None:
    def build(tmp: Path) -> ExportReport:
        (tmp / "openvino_model.bin").write_bytes(b"0" * 100)
        return ExportReport(tmp, "src", "text-generation", CompressionOptions(), 100, 100, 0.1)

    a, _ = build_cached(tmp_path, "a-llm-default-0000000000000000", {"name": "a", "source": "s"}, build)
    b, _ = build_cached(tmp_path, "b-llm-default-1111111111111111", {"name": "b", "source": "s"}, build)
    leftover = tmp_path / "exports" / ".tmp-c-llm-default-2222222222222222-abc123"
    leftover.mkdir()
    assert {e.key for e in list_cache(tmp_path)} == {a.name, b.name}
    assert clear_cache(tmp_path) == [leftover.name]  # only leftovers
    assert clear_cache(tmp_path, a.name) == [a.name]
    assert [e.key for e in list_cache(tmp_path)] == [b.name]
    with pytest.raises(InvalidParameterError, match="No cache entry"):
        clear_cache(tmp_path, "nope")
    with pytest.raises(InvalidParameterError, match="is not a cache key"):
        clear_cache(tmp_path, "../etc")
    (tmp_path / "compiled").mkdir()
    assert set(clear_cache(tmp_path, all_entries=True)) == {b.name, "compiled"}
    assert list_cache(tmp_path) == []


def test_progress_is_quiet_in_ci_and_without_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    assert progress_enabled() is False
    monkeypatch.delenv("CI")
    assert progress_enabled() is sys.stderr.isatty()


def test_nncf_bar_is_quiet_in_ci(tiny_model: Path, tmp_path: Path) -> None:
    """NNCF's own rich bar ("Applying Weight Compression") stays off in CI like ours."""
    cli = [sys.executable, "-m", "openvino_llm.cli", "export", str(tiny_model), str(tmp_path / "int8")]
    env = {**os.environ, "CI": "1", "OPENVINO_LLM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([*cli, "--weight-format", "int8"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "int8" / "openvino_model.xml").exists()
    assert "Applying Weight Compression" not in proc.stdout + proc.stderr
    assert "━" not in proc.stdout + proc.stderr


# --- the GGUF and IR paths need neither torch nor optimum --------------------------------------


def test_gguf_and_ir_work_without_torch(
    smollm2_gguf: Path, tiny_model: Path, tiny_hf_dir: Path, tmp_path: Path
) -> None:
    nope = tmp_path / "cache"
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "optimum"):
            sys.modules[name] = None  # make the import fail as if not installed
        from openvino_llm.models.resolve import resolve_model, read_model_config
        from openvino_llm.errors import ExportError
        print(resolve_model({str(smollm2_gguf)!r}).kind)
        print(read_model_config(resolve_model({str(tiny_model)!r})).context_window)
        try:
            resolve_model({str(tiny_hf_dir)!r}, weight_format="fp16", cache_dir={str(nope)!r})
        except ExportError as e:
            print("ExportError:", e)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["ir", "2048"]  # the Q4_1 GGUF re-exported (torch-free), or its cache entry
    assert lines[2].startswith("ExportError:") and 'pip install "openvino-llm[export]"' in lines[2]
    assert not nope.exists()  # the missing extra is reported before the cache is touched
