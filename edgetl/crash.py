"""Internal errors (a bug in edgetl or a dependency, not a user mistake): one line on screen, the whole story in a
crash log.

The line names the step that failed, the exception and the versions of the libraries the process had loaded
(most crashes after an upgrade are a dependency's API moving); the log holds the traceback and the command line.
The log goes into the run directory when the failing command had one, else into ~/.cache/edgetl/crashes.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from edgetl.versions import library_versions


def crash_dir(run_dir: Path | None) -> Path:
    if run_dir is not None and Path(run_dir).is_dir() and os.access(run_dir, os.W_OK):
        return Path(run_dir)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgetl" / "crashes"


def failing_step(exc: BaseException) -> str:
    """module:function of the innermost edgetl frame (where edgetl handed over or failed), else the last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}edgetl{os.sep}" in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    parts = Path(f.filename).with_suffix("").parts
    module = (
        ".".join(parts[len(parts) - 1 - parts[::-1].index("edgetl") :]) if "edgetl" in parts else Path(f.filename).stem
    )
    return f"{module}:{f.name}"


def report_crash(exc: BaseException, command: str, run_dir: Path | None = None) -> tuple[str, Path | None]:
    """Write the crash log; return (the one line to print, the log's path or None if it could not be written)."""
    versions = library_versions(loaded_only=True)
    message = " ".join(str(exc).split())[:300] or "(no message)"
    step = failing_step(exc)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = (
        f"edgetl {command} failed at {stamp}\ncommand line: {' '.join(sys.argv)}\n"
        f"python {sys.version.split()[0]} on {sys.platform}\n"
        + "".join(f"{k} {v}\n" for k, v in library_versions().items())
        + "\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )
    path: Path | None = crash_dir(run_dir) / f"crash-{command}-{stamp}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:
        path = None
    vers = ", ".join(f"{k} {v}" for k, v in versions.items()) or "no ML libraries loaded"
    line = (
        f"internal error in edgetl {command} ({step}): {type(exc).__name__}: {message} [{vers}]; "
        + (f"traceback in {path}" if path else "run with --debug for the traceback")
        + "; please report it"
    )
    return line, path
