"""What long conversions tell the user: reports, sizes, progress bars, and failure messages that say the fix.

Shared by the optimum-intel export, the GGUF re-export and IR compression. Progress bars appear only
on an interactive terminal and never under ``$CI``; library chatter is silenced otherwise.

    >>> format_size(1536)
    '1.5 KB'
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ExportError, InvalidParameterError, OpenVINOLLMError
from .options import CompressionOptions

#: How to install what exporting Hugging Face checkpoints needs (optimum-intel, NNCF, torch).
EXPORT_INSTALL_HINT = 'pip install "openvino-llm[export]"'
_WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".gguf", ".h5", ".msgpack")

#: Called with the name of each stage of a conversion.
ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ExportReport:
    """What an export or compression produced: where, how big before/after, and how long it took.

    >>> r = ExportReport(Path("out"), "src", "text-generation", CompressionOptions("int8"), 4096, 1024, 1.5)
    >>> r.summary()
    'int8: 4.0 KB -> 1.0 KB in 1.5 s -> out'
    """

    path: Path
    source: str
    task: str
    options: CompressionOptions
    size_before: int
    size_after: int
    seconds: float

    def summary(self) -> str:
        """One line such as ``int4: 540.2 MB -> 180.1 MB in 41.3 s -> /path``."""
        return (
            f"{self.options.describe()}: {format_size(self.size_before)} -> {format_size(self.size_after)} "
            f"in {self.seconds:.1f} s -> {self.path}"
        )

    def moved_to(self, path: Path) -> ExportReport:
        """The same report for the folder the result was renamed to."""
        return dataclasses.replace(self, path=path)

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-able dict (stored in the cache entry's marker file)."""
        return {
            "path": str(self.path),
            "source": self.source,
            "task": self.task,
            "options": self.options.as_dict(),
            "size_before": self.size_before,
            "size_after": self.size_after,
            "seconds": round(self.seconds, 3),
        }


def format_size(n: int) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def weights_size(path: Path) -> int:
    """Bytes of model weights in a folder (or one file): safetensors/bin/... minus tokenizer models."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for f in path.rglob("*"):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES and "tokenizer" not in f.name:
            total += f.stat().st_size
    return total


def dir_size(path: Path) -> int:
    """Bytes of all files under ``path``."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal, and never when ``$CI`` is set."""
    if os.environ.get("CI"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Stage bar (tqdm) on a terminal; calls the user's callback at each stage either way."""

    def __init__(self, desc: str, stages: Sequence[str], callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.bar = None
        if progress_enabled():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(stages), desc=desc, unit="step", leave=False, file=sys.stderr)

    def stage(self, name: str) -> None:
        if self.bar is not None:
            if self.bar.n or self.bar.postfix:
                self.bar.update(1)
            self.bar.set_postfix_str(name)
        if self.callback is not None:
            self.callback(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def library_verbosity() -> Iterator[None]:
    """Silence transformers/optimum/NNCF chatter and their own progress bars when not on a terminal."""
    if progress_enabled():
        yield
        return
    names = ("transformers", "optimum", "nncf", "huggingface_hub", "torch")
    with contextlib.suppress(ImportError):
        import nncf  # noqa: F401  (it sets its logger level on import: import it before changing it)
    levels = {n: logging.getLogger(n).level for n in names}
    env_old = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    restore: list[Callable[[], None]] = []
    try:
        warn_ctx = warnings.catch_warnings()
        warn_ctx.__enter__()
        restore.append(lambda: warn_ctx.__exit__(None, None, None))
        warnings.simplefilter("ignore")
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with contextlib.suppress(Exception):
            import transformers.utils.logging as tlog

            if tlog.is_progress_bar_enabled():
                tlog.disable_progress_bar()
                restore.append(tlog.enable_progress_bar)
            old = tlog.get_verbosity()
            tlog.set_verbosity_error()
            restore.append(lambda: tlog.set_verbosity(old))
        with contextlib.suppress(Exception):  # NNCF's rich bar ("Applying Weight Compression") has no switch
            from nncf.common.logging import track_progress

            shown = track_progress.track.__init__

            def hidden(self: Any, *args: Any, **kwargs: Any) -> None:
                shown(self, *args, **{**kwargs, "disable": True})

            track_progress.track.__init__ = hidden  # type: ignore[method-assign]
            restore.append(lambda: setattr(track_progress.track, "__init__", shown))
        yield
    finally:
        for fn in reversed(restore):
            with contextlib.suppress(Exception):
                fn()
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)
        if env_old is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = env_old


@contextlib.contextmanager
def output_errors(out_dir: Path) -> Iterator[None]:
    """Turn a failure to write the output folder (missing permission, not a folder, disk full) into ExportError."""
    try:
        yield
    except OpenVINOLLMError:
        raise
    except OSError as e:
        what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
        raise ExportError(
            f"Cannot write {out_dir} ({what}); nothing was left there. Choose an output folder you can write to, "
            "with enough free space."
        ) from e


def check_output_dir(out_dir: Path) -> None:
    """Refuse an output folder that exists and is not empty (nothing is ever written over)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidParameterError(
            f"Output {str(out_dir)!r} already exists and is not empty: choose a new folder or delete it first."
        )


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
_WRITE_FAILURE_TEXT = (
    "iostream error",  # OpenVINO's serializer when a write fails
    "no space left",
    "file too large",
    "disk quota",
    "permission denied",
    "read-only file system",
    "failed to write",
    "cannot write",
)


def _is_write_failure(e: BaseException) -> bool:
    seen: BaseException | None = e
    for _ in range(8):  # the exception and its causes
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS:
            return True
        if any(t in str(seen).lower() for t in _WRITE_FAILURE_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _write_failure_hint(out: Path) -> str:
    folder = out.parent
    try:
        free = f"{format_size(shutil.disk_usage(folder).free)} free there"
    except OSError:
        free = "free space unknown"
    return (
        f" Writing the result into {folder} failed ({free}): free disk space or check write permission, "
        "or choose another folder (cache_dir=... / --cache-dir / $OPENVINO_LLM_CACHE for the cache). "
        "Nothing was left half-written."
    )


def failure_message(
    source: str,
    task: str,
    options: CompressionOptions,
    e: Exception,
    out: Path | None = None,
    *,
    what: str | None = None,
) -> str:
    """One line saying what failed and, where the cause is known, the fix (write failure, group size, ...).

    ``what`` names the target when ``options`` do not (e.g. an automatic choice of formats).
    """
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = f"Exporting {source} for {task} with {what or options.describe()} failed: {type(e).__name__}: {text}"
    low = str(e).lower()
    if out is not None and _is_write_failure(e):
        msg += _write_failure_hint(out)
    elif "group" in low and ("size" in low or "channel" in low):
        msg += " Choose a group_size that divides the layers' input sizes (e.g. 32 or 64), or -1 for per-channel."
    elif "trust_remote_code" in low:
        msg += (
            " This model needs trust_remote_code=True (--trust-remote-code on the command line), only for "
            "repositories whose code you trust."
        )
    elif "weights only load failed" in low or "weights_only" in low:
        msg += (
            " Its weights are a pickle (.bin/.pt) with more than tensors in it, which could run code when "
            "loaded; it is refused. Use a safetensors version of the model, or convert it on a machine and "
            "with code you trust."
        )
    return msg


__all__ = [
    "EXPORT_INSTALL_HINT",
    "ExportReport",
    "Progress",
    "ProgressCallback",
    "check_output_dir",
    "dir_size",
    "failure_message",
    "format_size",
    "library_verbosity",
    "output_errors",
    "progress_enabled",
    "weights_size",
]
