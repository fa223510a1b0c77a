"""One export of a bundle at a time: a second `edgetl export` to the same bundle refuses, naming the first.

Two exports of one run would both do all the work (minutes of ONNX export, calibration, QAT) and the last
swap would win. The lock is an advisory `flock` on `.<name>.lock` beside the bundle, holding the holder's
PID; the kernel releases it when that process ends, however it ends (a SIGKILL leaves no stale lock, only
the empty file, which the next export locks and removes). The file is removed while still locked, and a
process that locked a file that is no longer at that path tries again, so two exports never hold it at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from edgetl.errors import EdgetlError

__all__ = ["export_lock", "lock_path"]


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def export_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the export lock of bundle `out`, or raise EdgetlError naming the PID that holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): no lock, as before
        yield
        return
    out = Path(out)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise EdgetlError(
                f"{out}: another export of this bundle is running (PID {holder}); wait for it to finish "
                f"or stop it, then export again"
            ) from None
        try:  # the holder we waited on may have removed the file: lock the one now at `path`
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        try:  # removed while still held (no debris beside the bundle); a newcomer re-checks the inode
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)  # releases the flock
