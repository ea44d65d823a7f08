"""Device validation and compile properties, checked against the real OpenVINO runtime."""

from __future__ import annotations

from pathlib import Path

import openvino as ov
import pytest

from openvino_llm.devices import (
    available_devices,
    check_device,
    compile_properties,
    default_cache_dir,
    device_full_name,
)
from openvino_llm.errors import DeviceNotAvailableError, InvalidParameterError


def test_available_devices_match_openvino() -> None:
    assert available_devices() == list(ov.Core().available_devices)
    assert "CPU" in available_devices()
    assert device_full_name("CPU") == ov.Core().get_property("CPU", "FULL_DEVICE_NAME")


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("CPU", "CPU"),
        ("cpu", "CPU"),
        (" AUTO ", "AUTO"),
        ("AUTO:CPU", "AUTO:CPU"),
        ("auto:-cpu", "AUTO:-CPU"),
        ("HETERO:CPU", "HETERO:CPU"),
        ("MULTI:CPU", "MULTI:CPU"),
    ],
)
def test_valid_devices(device: str, expected: str) -> None:
    assert check_device(device) == expected


@pytest.mark.parametrize(
    ("device", "missing"),
    [
        ("GPU", "GPU"),
        ("GPU.1", "GPU.1"),
        ("NPU", "NPU"),
        ("FPGA", "FPGA"),
        ("HETERO:GPU,CPU", "GPU"),
        ("AUTO:CPU,NPU", "NPU"),
        ("MULTI:GPU.1,CPU", "GPU.1"),
        ("AUTO:AUTO", "AUTO"),
    ],
)
def test_unavailable_devices_list_what_is_available(device: str, missing: str) -> None:
    if missing in available_devices():
        pytest.skip(f"{missing} exists on this machine")
    with pytest.raises(DeviceNotAvailableError) as info:
        check_device(device)
    message = str(info.value)
    assert repr(missing) in message
    assert "Available devices: " + ", ".join(available_devices()) in message


@pytest.mark.parametrize("device", ["", "   ", None, 3, "HETERO", "CPU:GPU", "AUTO:", "MULTI:CPU,,CPU"])
def test_malformed_devices(device: object) -> None:
    with pytest.raises(InvalidParameterError):
        check_device(device)  # type: ignore[arg-type]


def test_compile_properties(tmp_path: Path) -> None:
    user = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "KV_CACHE_PRECISION": "u8"}
    props = compile_properties(user, tmp_path)
    assert props == {**user, "CACHE_DIR": str(tmp_path / "compiled")}
    assert user == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "KV_CACHE_PRECISION": "u8"}  # not mutated
    assert compile_properties({"CACHE_DIR": "/elsewhere"}, tmp_path) == {"CACHE_DIR": "/elsewhere"}
    assert compile_properties({"CACHE_DIR": ""}, tmp_path) == {}
    assert compile_properties(None, tmp_path) == {"CACHE_DIR": str(tmp_path / "compiled")}


@pytest.mark.parametrize("bad", [["PERFORMANCE_HINT", "LATENCY"], "PERFORMANCE_HINT=LATENCY", 5, {1: "x"}, {"": 1}])
def test_compile_properties_rejects_non_mappings(bad: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="ov_config"):
        compile_properties(bad, tmp_path)  # type: ignore[arg-type]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENVINO_LLM_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert compile_properties(None) == {"CACHE_DIR": str(tmp_path / "c" / "compiled")}
    monkeypatch.delenv("OPENVINO_LLM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "openvino-llm"


def test_properties_compile_a_real_model_and_fill_the_cache(tiny_model: Path, tmp_path: Path) -> None:
    device = check_device("AUTO:CPU")
    props = compile_properties({"PERFORMANCE_HINT": "LATENCY"}, tmp_path)
    compiled = ov.Core().compile_model(str(tiny_model / "openvino_model.xml"), device, props)
    assert compiled.get_property("PERFORMANCE_HINT") == ov.properties.hint.PerformanceMode.LATENCY
    assert any((tmp_path / "compiled").iterdir())  # the compiled blob was cached
