"""The export cache: keys, entries, locks, atomic folders, listing and clearing.

An entry is ``<cache>/exports/<key>/`` with a marker file written last; it is built in a
``.tmp-*`` folder under a per-key file lock (``<cache>/locks/``) and renamed when complete, so an
interrupted build never looks valid and two processes never build the same entry twice.

    >>> [entry.key for entry in list_cache(Path("~/.cache/openvino-llm").expanduser())]  # doctest: +SKIP
    ['SmolLM2-360M-Instruct-llm-int4-3f2a9c0d1e2b4a5c']
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..devices import default_cache_dir
from ..errors import ExportError, InvalidParameterError, ModelNotFoundError, OpenVINOLLMError
from .ir import ir_damage
from .report import ExportReport, dir_size

logger = logging.getLogger("openvino_llm")

#: The file that marks a complete cache entry (its metadata: name, source, options, report).
MARKER_FILE = "openvino_llm_export.json"
_TMP_PREFIX = ".tmp-"
_CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "modules.json",
    "config_sentence_transformers.json",
)


@contextlib.contextmanager
def atomic_directory(target: Path, *, extra_prefix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``target``; rename it to ``target`` on success.

    On any exception (KeyboardInterrupt included) the temporary folder is deleted and nothing
    appears at ``target``. ``target`` must not exist already (or be an empty folder).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{extra_prefix}{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()
            else:
                raise ExportError(f"{target} appeared while exporting; it was left untouched.")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def package_versions() -> dict[str, str]:
    """Versions that change what an export produces (part of the cache key)."""
    out = {}
    for dist in ("openvino", "openvino-tokenizers", "optimum-intel", "nncf"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def cache_key(name: str, parts: Mapping[str, Any]) -> str:
    """A readable, collision-safe folder name: ``<name>-<short task>-<format>-<hash>``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:48] or "model"
    task = {"text-generation": "llm", "feature-extraction": "embed", "text-classification": "rerank"}.get(
        str(parts.get("task")), "model"
    )
    wf = (parts.get("options") or {}).get("weight_format") or "default"
    return f"{slug}-{task}-{wf}-{digest}"


def exports_dir(cache_dir: Path) -> Path:
    """The folder holding the export entries of a cache."""
    return Path(cache_dir) / "exports"


def lock_file(cache_dir: Path, key: str) -> Path:
    """The lock file of ``key`` in ``<cache>/locks/`` (the folder is created)."""
    locks = Path(cache_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{key}.lock"


@dataclass(frozen=True)
class CacheEntry:
    """One completed export in the cache (see ``openvino-llm cache list``).

    >>> [entry.key for entry in list_cache(Path("~/.cache/openvino-llm").expanduser())]  # doctest: +SKIP
    ['SmolLM2-360M-Instruct-llm-int4-3f2a9c0d1e2b4a5c']
    """

    key: str
    path: Path
    name: str
    source: str
    task: str
    options: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    created: float = 0.0


def cached_entry(cache_dir: Path, key: str) -> Path | None:
    """The folder of a complete cache entry, or ``None``.

    The hash identifies the export (source, options, versions); the name before it only reads well.
    So an entry made under another name (the same GGUF loaded by path and by its embedded name) is
    found too, instead of exporting the same model twice.
    """
    path = exports_dir(cache_dir) / key
    if (path / MARKER_FILE).is_file():
        return path
    identity = "-".join(key.rsplit("-", 3)[1:])  # "<task>-<format>-<hash>"
    if not re.fullmatch(r"[a-z]+-[A-Za-z0-9_]+-[0-9a-f]{16}", identity):
        return None
    for other in sorted(exports_dir(cache_dir).glob(f"*-{identity}")):
        if not other.name.startswith(_TMP_PREFIX) and (other / MARKER_FILE).is_file():
            return other
    return None


def build_cached(
    cache_dir: Path,
    key: str,
    metadata: Mapping[str, Any],
    build: Callable[[Path], ExportReport],
) -> tuple[Path, bool]:
    """Return the entry ``key``, building it with ``build(tmp_folder)`` if absent. -> (path, built).

    A file lock per key serializes processes exporting the same model; the result is built in a
    temporary folder and renamed, with the marker file written last, so a crash leaves no entry.
    """
    found = cached_entry(cache_dir, key)
    if found is not None:
        return found, False
    try:
        return _build_locked(Path(cache_dir), key, metadata, build)
    except OpenVINOLLMError:
        raise
    except OSError as e:  # cannot create the folder, the lock, the temporary folder or the marker
        raise ExportError(_cache_write_message(Path(cache_dir), e)) from e


def _cache_write_message(cache_dir: Path, e: OSError) -> str:
    what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
    return (
        f"Cannot write to the openvino-llm cache folder {cache_dir} ({what}); nothing was cached. Choose a "
        "writable folder with enough free space: cache_dir=... in Python, --cache-dir on the command line, "
        "or $OPENVINO_LLM_CACHE."
    )


def _build_locked(
    cache_dir: Path, key: str, metadata: Mapping[str, Any], build: Callable[[Path], ExportReport]
) -> tuple[Path, bool]:
    lock = FileLock(str(lock_file(cache_dir, key)))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        logger.info("Waiting for another process exporting %s ...", key)
        lock.acquire()
    try:
        found = cached_entry(cache_dir, key)
        if found is not None:
            return found, False
        root = exports_dir(cache_dir)
        target = root / key
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{_TMP_PREFIX}{key}-*"):  # left by a killed process (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # a folder without marker: not ours to trust
            shutil.rmtree(target)
        with atomic_directory(target) as tmp:
            report = build(tmp)
            meta = {
                **metadata,
                "key": key,
                "created": time.time(),
                "size_bytes": dir_size(tmp),
                "report": report.moved_to(target).as_dict(),
            }
            (tmp / MARKER_FILE).write_text(json.dumps(meta, indent=2, default=str))
        logger.info("Cached %s: %s", key, report.moved_to(target).summary())
        return target, True
    finally:
        lock.release()


def list_cache(cache_dir: Path) -> list[CacheEntry]:
    """The complete exports in ``cache_dir``, newest first."""
    entries = []
    root = exports_dir(cache_dir)
    if not root.is_dir():
        return []
    for path in root.iterdir():
        marker = path / MARKER_FILE
        if path.name.startswith(".") or not marker.is_file():
            continue
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        entries.append(
            CacheEntry(
                key=path.name,
                path=path,
                name=str(meta.get("name", "")),
                source=str(meta.get("source", "")),
                task=str(meta.get("task", "")),
                options=dict(meta.get("options") or {}),
                size_bytes=int(meta.get("size_bytes", 0)),
                created=float(meta.get("created", 0.0)),
            )
        )
    return sorted(entries, key=lambda e: e.created, reverse=True)


def clear_cache(cache_dir: Path, key: str | None = None, *, all_entries: bool = False) -> list[str]:
    """Delete cache content; returns what was removed.

    ``key``: that entry. ``all_entries``: every export plus the compiled-model cache. Neither:
    only leftovers of interrupted exports (temporary folders whose export is not running).
    """
    cache_dir = Path(cache_dir)
    root = exports_dir(cache_dir)
    removed: list[str] = []
    if key is not None:
        if "/" in key or key.startswith(".") or not key:
            raise InvalidParameterError(f"{key!r} is not a cache key; see `openvino-llm cache list`.")
        path = root / key
        if not path.is_dir():
            raise InvalidParameterError(f"No cache entry {key!r} in {root}; see `openvino-llm cache list`.")
        with FileLock(str(lock_file(cache_dir, key))):
            shutil.rmtree(path)
        return [key]
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.name.startswith(_TMP_PREFIX):
                entry_key = _key_of_tmp(path.name)
                lock = FileLock(str(lock_file(cache_dir, entry_key))) if entry_key else None
                try:
                    if lock is not None:
                        lock.acquire(timeout=0)
                except Timeout:
                    continue  # an export is running
                try:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
                finally:
                    if lock is not None:
                        lock.release()
            elif all_entries and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    if all_entries:
        compiled = cache_dir / "compiled"
        if compiled.is_dir():
            shutil.rmtree(compiled, ignore_errors=True)
            removed.append("compiled")
    return removed


def _key_of_tmp(name: str) -> str | None:
    # ".tmp-<key>-<random>" where key ends with a 16-hex digest
    m = re.match(rf"^{re.escape(_TMP_PREFIX)}(.+-[0-9a-f]{{16}})-[^-]+$", name)
    return m.group(1) if m else None


def checked_entry(entry: Path, task: str) -> Path:
    """``entry`` (a cache entry folder) if its files are intact, else :class:`ModelNotFoundError` with the fix.

    A cache entry can be damaged after it was written (a disk error, a copy cut short, a file
    edited by hand); the error names the file and the ``openvino-llm cache clear`` command.
    """
    problem = ir_damage(entry, task)
    if problem is None:
        return entry
    cache = entry.parent.parent
    option = "" if cache == default_cache_dir().resolve() else f" --cache-dir {cache}"
    raise ModelNotFoundError(
        f"The cached export {entry} is damaged: {problem}. Remove it with `openvino-llm cache clear "
        f"{entry.name}{option}` (or delete that folder), then load the model again to export it afresh."
    )


def folder_fingerprint(path: Path) -> dict[str, Any]:
    """Sizes and mtimes of every file plus a hash of the small config files: changes when content does."""
    files = []
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        st = f.stat()
        files.append([rel.as_posix(), st.st_size, st.st_mtime_ns])
        if f.name in _CONFIG_FILES or (f.suffix == ".json" and st.st_size < 1_000_000):
            digest.update(rel.as_posix().encode())
            digest.update(f.read_bytes())
    return {"files": files, "configs_sha256": digest.hexdigest()}


__all__ = [
    "MARKER_FILE",
    "CacheEntry",
    "atomic_directory",
    "build_cached",
    "cache_key",
    "cached_entry",
    "checked_entry",
    "clear_cache",
    "exports_dir",
    "folder_fingerprint",
    "list_cache",
    "lock_file",
    "package_versions",
]
