"""Limits before work: a file is checked to be a regular file of sane size before anything parses it.

A FIFO, a device or a socket blocks or never ends when read; a 26 MB recipe makes the YAML parser build
millions of objects before any validation runs. Both are refused here, in one line, from `stat` alone.
Import-light (stdlib only): the device runtime uses it for manifests.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgetl.errors import EdgetlError

__all__ = ["MAX_MANIFEST_BYTES", "MAX_RECIPE_BYTES", "file_kind", "read_limited", "regular_file"]

MAX_RECIPE_BYTES = 1_000_000  # 1 MB: recipes are a few kB
MAX_MANIFEST_BYTES = 10_000_000  # 10 MB: manifests are tens of kB (labels and per-class metrics included)

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def file_kind(mode: int) -> str:
    """What a stat mode is, in words ("a regular file", "a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def regular_file(path: str | os.PathLike[str], what: str, max_bytes: int | None = None) -> os.stat_result:
    """stat `path` (following links) and refuse, in one line, a missing path, anything but a regular file, or
    one larger than `max_bytes`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EdgetlError(f"{what}: {path}: not found") from None
    except OSError as e:
        raise EdgetlError(f"{what}: {path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise EdgetlError(f"{what}: {path} is {file_kind(st.st_mode)}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise EdgetlError(
            f"{what}: {path} is {st.st_size / 1e6:.1f} MB, over the {max_bytes / 1e6:g} MB limit "
            "(refused before parsing)"
        )
    return st


def read_limited(path: str | os.PathLike[str], what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (re-checked while reading: the file may grow)."""
    regular_file(path, what, max_bytes)
    try:  # O_NONBLOCK + fstat: a file swapped for a FIFO after the stat above cannot block the open
        fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise EdgetlError(f"{what}: {path} is {file_kind(mode)}, not a regular file")
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise EdgetlError(f"{what}: {path}: cannot read ({e.strerror})") from None
    if len(data) > max_bytes:
        raise EdgetlError(f"{what}: {path} is over the {max_bytes / 1e6:g} MB limit (refused before parsing)")
    return data
