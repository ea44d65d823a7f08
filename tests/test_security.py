"""Security: no model code or pickle runs unless asked, nothing is written outside the cache, paths are resolved."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openvino_llm.devices import compile_properties, default_cache_dir
from openvino_llm.errors import ExportError
from openvino_llm.models import list_cache, resolve_model
from openvino_llm.models.cache import MARKER_FILE
from openvino_llm.models.ir import ir_damage

# --- model code and pickles --------------------------------------------------------------------

_REMOTE_CODE = """\
import pathlib
pathlib.Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import LlamaConfig, LlamaForCausalLM


class CustomConfig(LlamaConfig):
    model_type = "tiny-custom"


class CustomModel(LlamaForCausalLM):
    config_class = CustomConfig
"""


def _remote_code_checkpoint(tiny_hf_dir: Path, folder: Path, marker: Path) -> Path:
    """The tiny checkpoint whose config.json says: load me with my own Python code (auto_map)."""
    shutil.copytree(tiny_hf_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="tiny-custom",
        architectures=["CustomModel"],
        auto_map={"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(_REMOTE_CODE.format(marker=str(marker)))
    return folder


def test_checkpoint_code_runs_only_with_trust_remote_code(tiny_hf_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran.txt"
    folder = _remote_code_checkpoint(tiny_hf_dir, tmp_path / "custom-ckpt", marker)
    cache = tmp_path / "cache"
    with pytest.raises(ExportError, match=r"custom code.*needs trust_remote_code=True .*repositories whose code"):
        resolve_model(folder, cache_dir=cache)
    assert not marker.exists(), "the checkpoint's Python code was executed without trust_remote_code"
    assert list_cache(cache) == [] and not [p for p in (cache / "exports").iterdir()]
    # the switch is what allows it: with it the code runs (this architecture is then unknown to optimum-intel)
    with pytest.raises(ExportError):
        resolve_model(folder, cache_dir=cache, trust_remote_code=True)
    assert marker.read_text() == "the checkpoint's code ran"
    assert list_cache(cache) == []


class _Payload:
    """A pickle that runs code when loaded: what a malicious pytorch_model.bin does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "the pickle ran"))


def _write_pickle_weights(folder: Path, marker: Path) -> None:
    with (folder / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"model.embed_tokens.weight": _Payload(marker)}, f)


def test_pickled_weights_are_never_unpickled(tiny_hf_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran.txt"
    folder = tmp_path / "pickle-only"
    shutil.copytree(tiny_hf_dir, folder)
    (folder / "model.safetensors").unlink()
    _write_pickle_weights(folder, marker)
    with pytest.raises(ExportError, match=r"UnpicklingError.*it is refused\. Use a safetensors version"):
        resolve_model(folder, cache_dir=tmp_path / "cache")
    assert not marker.exists(), "a pickle in pytorch_model.bin was executed"


_EXPORT_AND_GENERATE = """\
import json, sys
from openvino_llm import GenerationParams, load_engine
engine = load_engine(sys.argv[1], device="CPU", cache_dir=sys.argv[2])
gen = engine.generate("Hello", GenerationParams(max_new_tokens=3, temperature=0))
print(json.dumps({"tokens": gen.usage.output_tokens}))
"""


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run_isolated(code: str, *args: str, root: Path, name: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``code`` in a fresh process whose HOME, working folder and TMPDIR are empty folders under ``root``."""
    base = root / name
    home, work, tmpdir = base / "home", base / "work", base / "tmpdir"
    for folder in (home, work, tmpdir):
        folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_", "OPENVINO_LLM", "TRANSFORMERS_"))}
    env.update(HOME=str(home), TMPDIR=str(tmpdir), CI="1")
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=work, env=env, capture_output=True, text=True, timeout=240
    )
    return proc, base


def test_export_reads_safetensors_and_writes_only_into_the_cache(tiny_hf_dir: Path, tmp_path: Path) -> None:
    """A checkpoint with both safetensors and a (malicious) pickle: the safetensors are what is read.

    Export, load and generate in a fresh process whose HOME, working folder and TMPDIR are empty:
    afterwards only the cache has new files, apart from what ``import openvino`` itself writes in
    every process (openvino-telemetry's ``~/intel/`` files; see the README's limits).
    """
    marker = tmp_path / "pickle-ran.txt"
    model = tmp_path / "both-formats"
    shutil.copytree(tiny_hf_dir, model)
    _write_pickle_weights(model, marker)
    model_before = _files_under(model)
    cache = tmp_path / "cache"
    proc, base = _run_isolated(_EXPORT_AND_GENERATE, str(model), str(cache), root=tmp_path, name="run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["tokens"] > 0
    assert not marker.exists(), "the pickle was loaded although safetensors were there"
    # nothing new outside the cache folder, beyond what OpenVINO writes on import
    baseline_proc, baseline = _run_isolated("import openvino", root=tmp_path, name="baseline")
    assert baseline_proc.returncode == 0, baseline_proc.stderr
    assert _files_under(base) == _files_under(baseline)
    assert not [p for p in _files_under(base) if not p.startswith(("home", "work", "tmpdir"))]
    assert _files_under(model) == model_before
    assert {p.name for p in tmp_path.iterdir()} == {"both-formats", "run", "baseline", "cache"}
    # and the cache holds the export (complete and intact) and the compiled-model cache
    (entry,) = list_cache(cache)
    assert (entry.path / MARKER_FILE).is_file() and ir_damage(entry.path) is None
    assert sorted(p.name for p in cache.iterdir()) == ["compiled", "exports", "locks"]
    assert any((cache / "compiled").iterdir())


# --- paths are resolved before use --------------------------------------------------------------


def test_paths_are_resolved_before_use(
    tiny_hf_dir: Path, tiny_model: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink, a relative path and ``~`` all name the same checkpoint: the same (absolute) cache entry."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "my-model").symlink_to(tiny_hf_dir)
    (tmp_path / "cache-link").symlink_to(cache_dir)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    for model, cache in [
        ("~/my-model", str(cache_dir)),
        ("home/my-model", "cache-link"),  # relative, through symlinks
        (home / "my-model", Path("~/../cache-link")),
    ]:
        resolved = resolve_model(model, cache_dir=cache)
        assert resolved.path == tiny_model, (model, cache)  # reused, not exported again
        assert resolved.path.is_absolute()
    # the compiled-model cache and the default cache are absolute too, whatever the working folder
    assert compile_properties(None, "cache-link")["CACHE_DIR"] == str(cache_dir / "compiled")
    assert compile_properties({"CACHE_DIR": "~/blobs"})["CACHE_DIR"] == str(home / "blobs")
    monkeypatch.setenv("OPENVINO_LLM_CACHE", "cache-link")
    assert default_cache_dir() == cache_dir
    monkeypatch.delenv("OPENVINO_LLM_CACHE")
    assert default_cache_dir() == home / ".cache" / "openvino-llm"


def test_export_output_path_is_resolved(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openvino_llm.models import CompressionOptions, compress_ir

    monkeypatch.chdir(tmp_path)
    report = compress_ir(Path(os.path.relpath(tiny_model, tmp_path)), "out-int8", CompressionOptions("int8"))
    assert report.path == tmp_path / "out-int8" and report.path.is_absolute()
    assert ir_damage(report.path) is None
