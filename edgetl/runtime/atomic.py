"""Atomic file writes for the whole package.

A crash or a full disk in the middle of a write must never leave a half-written manifest or model that a
later `Predictor.load` would trust. Each writer goes to a temporary file in the same directory (so the
rename cannot cross file systems), fsyncs it, then `os.replace`s it over the target. An OS error (disk full,
read-only, permissions) removes the temporary file and becomes one `StorageError` line naming the file and
the bytes needed. Import-light: no torch.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from edgetl.errors import StorageError

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_dir", "storage_error"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        _chmod_like_open(fd, path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise storage_error(exc, path, len(data)) from None
        raise
    fsync_dir(path.parent)
    return path


def storage_error(exc: OSError, path: str | os.PathLike[str], needed: int | None = None) -> StorageError:
    """One line for a failed write of `path`: the OS reason, bytes needed and free when known."""
    reason = exc.strerror or str(exc)
    extra = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        free = _free_bytes(Path(path))
        parts = ([f"needs {_mb(needed)}"] if needed is not None else []) + (
            [f"{_mb(free)} free there"] if free is not None else []
        )
        extra = f" ({', '.join(parts)})" if parts else ""
    return StorageError(f"{path}: cannot write: {reason}{extra}; no partial file was left", path=str(path))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _free_bytes(path: Path) -> int | None:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """`atomic_write_bytes` for text (UTF-8 by default, newlines written as given)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _chmod_like_open(fd: int, target: Path) -> None:
    """mkstemp creates 0600 files; give the result the mode a plain open() would (or the old file's)."""
    if not hasattr(os, "fchmod"):
        return
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.fchmod(fd, mode)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide, racy under threads)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); silently skipped where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
