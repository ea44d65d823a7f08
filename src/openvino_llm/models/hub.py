"""Hugging Face hub ids: recognising one, and fetching its snapshot (local hub cache first, fail fast offline).

>>> is_hub_id("org/model")
True
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ModelNotFoundError
from .report import EXPORT_INSTALL_HINT

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_HUB_PROBE_TIMEOUT = 4.0


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a hub id (``org/name``) rather than a file path.

    >>> is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"), is_hub_id("./model.gguf")
    (True, False)
    """
    if text.startswith((".", "/", "~")) or "\\" in text or text.lower().endswith((".gguf", ".xml")):
        return False
    return bool(_HUB_ID.match(text)) and ".." not in text


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT) -> bool:
    """A quick TCP probe of the Hugging Face endpoint (DNS included), bounded by ``timeout`` seconds."""
    url = urlparse(_hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="openvino-llm-hub-probe")
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _no_hub_error(model_id: str, why: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"Cannot fetch {model_id!r} from the Hugging Face hub: {why}. No local folder of that name exists "
        "either. Download the model on a machine with network (e.g. `hf download "
        f"{model_id} --local-dir ./model`) and pass the local folder, or pass an OpenVINO IR folder or a "
        ".gguf file."
    )


def _local_snapshot(model_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(model_id, revision=revision, local_files_only=True))
    except Exception:
        return None


def _download_snapshot(model_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    except ImportError as e:
        raise ModelNotFoundError(f"Downloading {model_id!r} needs huggingface_hub: {EXPORT_INSTALL_HINT}.") from e
    try:
        return Path(snapshot_download(model_id, revision=revision, etag_timeout=10))
    except RevisionNotFoundError as e:
        raise ModelNotFoundError(f"Revision {revision!r} of {model_id!r} does not exist on the hub.") from e
    except RepositoryNotFoundError as e:
        raise ModelNotFoundError(
            f"{model_id!r} is not a model on the Hugging Face hub (or it is private/gated: log in with `hf auth "
            "login`), and no local folder of that name exists."
        ) from e
    except Exception as e:
        raise _no_hub_error(model_id, f"{type(e).__name__}: {e}") from e


def fetch_hub_snapshot(model_id: str, revision: str | None = None) -> Path:
    """The local folder of a hub model: from the local hub cache, else downloaded.

    Fails fast with :class:`ModelNotFoundError` when offline (``HF_HUB_OFFLINE``) or when the hub
    cannot be reached (a TCP probe bounded to a few seconds), instead of hanging in retries.
    """
    snapshot = _local_snapshot(model_id, revision)
    if snapshot is not None:
        return snapshot
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        raise _no_hub_error(model_id, "HF_HUB_OFFLINE is set (offline mode) and it is not in the local hub cache")
    if not hub_reachable():
        raise _no_hub_error(model_id, f"there is no network connection to {_hub_endpoint()}")
    return _download_snapshot(model_id, revision)


__all__ = ["fetch_hub_snapshot", "hub_reachable", "is_hub_id"]
