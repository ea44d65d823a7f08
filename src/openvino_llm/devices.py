"""OpenVINO devices: what is available, validating a device string, and compile properties.

>>> from openvino_llm.devices import available_devices, check_device
>>> "CPU" in available_devices()
True
>>> check_device("cpu")
'CPU'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import DeviceNotAvailableError, InvalidParameterError

#: Devices that stand for a choice among other devices (``AUTO:GPU,CPU``) rather than hardware.
VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")

_CACHE_ENV = "OPENVINO_LLM_CACHE"


def default_cache_dir() -> Path:
    """The openvino-llm cache folder: ``$OPENVINO_LLM_CACHE`` or ``~/.cache/openvino-llm`` (an absolute path).

    >>> default_cache_dir().name  # doctest: +SKIP
    'openvino-llm'
    """
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "openvino-llm").resolve()


@lru_cache(maxsize=1)
def _core() -> Any:
    import openvino as ov

    return ov.Core()


def available_devices() -> list[str]:
    """The devices OpenVINO sees on this machine, e.g. ``["CPU", "GPU.0", "GPU.1", "NPU"]``.

    >>> "CPU" in available_devices()
    True
    """
    return list(_core().available_devices)


def device_full_name(device: str) -> str:
    """The human name of a device (``FULL_DEVICE_NAME``), or ``""`` when the plugin does not say."""
    try:
        return str(_core().get_property(device, "FULL_DEVICE_NAME"))
    except Exception:  # a plugin that cannot answer is not an error worth failing for
        return ""


def _hardware_available(name: str, available: list[str]) -> bool:
    """``GPU`` matches ``GPU`` or any ``GPU.<n>``; ``GPU.1`` must be listed (``GPU.0`` also matches a lone ``GPU``)."""
    if name in available:
        return True
    base, _, index = name.partition(".")
    if not index:
        return any(dev.split(".", 1)[0] == base for dev in available)
    return index == "0" and base in available


def _not_available(device: str, component: str, available: list[str]) -> DeviceNotAvailableError:
    what = f"Device {device!r}" if component == device else f"Device {component!r} (in {device!r})"
    return DeviceNotAvailableError(
        f"{what} is not available on this machine. Available devices: {', '.join(available) or 'none'}. "
        f'Use one of them, or "AUTO" to let OpenVINO choose.'
    )


def check_device(device: str) -> str:
    """Validate an OpenVINO device string and return it normalised (upper case).

    Accepts hardware devices (``CPU``, ``GPU``, ``GPU.1``, ``NPU``) and virtual ones with an optional
    priority list (``AUTO``, ``AUTO:GPU,CPU``, ``HETERO:GPU,CPU``, ``MULTI:GPU,CPU``). Raises
    :class:`DeviceNotAvailableError` naming the available devices when a device is missing.

    >>> check_device("AUTO:cpu")
    'AUTO:CPU'
    """
    if not isinstance(device, str):
        raise InvalidParameterError(f'device must be a string such as "CPU", "GPU" or "AUTO", got {device!r}.')
    text = device.strip().upper()
    if not text:
        raise InvalidParameterError('device must not be empty: use "AUTO", "CPU", "GPU", "NPU", ...')
    available = available_devices()
    head, sep, tail = text.partition(":")
    head = head.strip()
    if head in VIRTUAL_DEVICES:
        if not sep:
            if head == "AUTO":
                return "AUTO"
            raise InvalidParameterError(
                f"{head} needs a list of devices, e.g. {head}:GPU,CPU (available: {', '.join(available)})."
            )
        parts = [p.strip() for p in tail.split(",")]
        if not parts or any(not p for p in parts):
            raise InvalidParameterError(
                f"Device {device!r} has an empty entry in its device list; write e.g. {head}:GPU,CPU."
            )
        for part in parts:
            name = part[1:] if head == "AUTO" and part.startswith("-") else part  # AUTO:-CPU excludes CPU
            if name.split(".", 1)[0] in VIRTUAL_DEVICES or not _hardware_available(name, available):
                raise _not_available(device, part, available)
        return f"{head}:{','.join(parts)}"
    if sep:
        raise InvalidParameterError(
            f"Device {device!r}: only {', '.join(VIRTUAL_DEVICES)} take a device list after ':'."
        )
    if not _hardware_available(text, available):
        raise _not_available(device, device, available)
    return text


def compile_properties(ov_config: Mapping[str, Any] | None, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Properties for compiling a model: ``ov_config`` plus ``CACHE_DIR=<cache_dir>/compiled``.

    ``ov_config`` is passed through unchanged (``PERFORMANCE_HINT``, ``INFERENCE_PRECISION_HINT``,
    ``KV_CACHE_PRECISION``, ``NUM_STREAMS``, ...). ``CACHE_DIR`` is added unless the user set it;
    ``CACHE_DIR=""`` disables the compiled-model cache.

    >>> compile_properties({"PERFORMANCE_HINT": "LATENCY"}, "/tmp/c")
    {'PERFORMANCE_HINT': 'LATENCY', 'CACHE_DIR': '/tmp/c/compiled'}
    >>> compile_properties({"CACHE_DIR": ""}, "/tmp/c")
    {}
    """
    if ov_config is None:
        props: dict[str, Any] = {}
    elif isinstance(ov_config, Mapping):
        props = dict(ov_config)
    else:
        raise InvalidParameterError(
            f"ov_config must be a mapping of OpenVINO properties such as "
            f'{{"PERFORMANCE_HINT": "LATENCY"}}, got {type(ov_config).__name__}: {ov_config!r}.'
        )
    for key in props:
        if not isinstance(key, str) or not key:
            raise InvalidParameterError(f"ov_config keys must be property names (non-empty strings), got {key!r}.")
    if "CACHE_DIR" in props:
        value = props["CACHE_DIR"]
        if value is None or str(value) == "":
            del props["CACHE_DIR"]
        else:
            props["CACHE_DIR"] = str(Path(str(value)).expanduser().resolve())
    else:
        base = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()).resolve()
        props["CACHE_DIR"] = str(base / "compiled")
    return props


__all__ = [
    "VIRTUAL_DEVICES",
    "available_devices",
    "check_device",
    "compile_properties",
    "default_cache_dir",
    "device_full_name",
]
