"""Export as a transaction: build the new bundle beside the old one, verify it, then swap it in.

An interrupted or failed export (SIGINT, SIGKILL, a full disk) must never damage the last good bundle, and
must leave nothing a later command trusts. The new bundle is built in a hidden staging directory in the same
parent (`.<name>.staging-<pid>`, so renames stay on one file system), every hash is checked and every
artifact loaded, then the two directories are exchanged in one atomic step (Linux `renameat2`) and the old
bundle, now under the staging name, is removed. Where the kernel lacks the exchange, the old bundle is
renamed to `<name>.prev`, the staging directory to `<name>`, and `<name>.prev` removed. The next export
cleans stale staging directories (whose process is gone) and puts back a `<name>.prev` that a kill between
the two renames left without a `<name>`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from edgetl.bundle.export_lock import export_lock
from edgetl.errors import EdgetlError, StorageError
from edgetl.runtime.atomic import fsync_dir
from edgetl.runtime.manifest import MANIFEST_NAME, read_manifest
from edgetl.runtime.trust import SIGNATURE_NAME
from edgetl.runtime.verify import verify_bundle

__all__ = ["ExportInterrupted", "bundle_transaction", "os_error_line", "staging_dirs"]

_DEBRIS = re.compile(r"(^\.|\.tmp(\.|$)|\.tmp\.onnx$)")  # temp files of atomic writes and of the ONNX export


class ExportInterrupted(EdgetlError):
    """Ctrl-C during an export: one line saying what was kept; exit status 130 like any SIGINT."""

    exit_code = 130


def staging_dirs(out: Path) -> list[Path]:
    """Staging directories of exports of `out` (this process's included)."""
    return sorted(out.parent.glob(f".{out.name}.staging-*"))


def prev_dir(out: Path) -> Path:
    return out.with_name(out.name + ".prev")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def recover(out: Path) -> None:
    """Undo what a killed export left: a lone `<name>.prev` goes back; stale staging dirs are removed."""
    prev = prev_dir(out)
    if prev.is_dir() and not out.exists():
        os.rename(prev, out)  # killed between the two renames of a swap: the old bundle is the good one
    elif prev.is_dir():
        shutil.rmtree(prev)  # killed after the swap, before the old bundle was removed
    for d in staging_dirs(out):
        pid = d.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _kept(out: Path) -> str:
    if (out / MANIFEST_NAME).is_file():
        return f"the previous bundle {out} is unchanged"
    return f"no bundle was written to {out}"


def os_error_line(
    exc: BaseException, doing: str, kept: str, where: str | os.PathLike[str] = "a file", need: str = ""
) -> str | None:
    """One line for an OS error anywhere in `exc`'s chain (libraries wrap them), or None if there is none;
    `where` names the file when the error does not (a write deep inside a library), `need` says how much
    space the write needed (docs/bundle.md: the file, the bytes needed and free)."""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, OSError) and cur.errno is not None:
            if cur.filename is None:
                cur = OSError(cur.errno, cur.strerror or os.strerror(cur.errno), str(where))
            return f"{doing}: {cur.filename}: {cur.strerror}{_free(cur, need)}; {kept}"
        if "No space left on device" in str(cur):  # C++ writers (torch, protobuf) raise RuntimeError
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
            detail = str(cur).strip().splitlines()[0][:120]
            return f"{doing}: {where}: {full.strerror}{_free(full, need)} ({detail}); {kept}"
        cur = cur.__cause__ or cur.__context__
    return None


def _free(e: OSError, need: str = "") -> str:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or not e.filename:
        return ""
    if need:
        return f" ({need})"
    free = _free_at(Path(str(e.filename)))
    return f" ({free})" if free else ""


def _free_at(path: Path) -> str:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f"{shutil.disk_usage(path).free / 1e6:.1f} MB free there"
    except OSError:
        return ""


def _carry_over(out: Path, staging: Path) -> None:
    """Files the user or `bench` put in the old bundle (bench.json, bench_data.npz...) move to the new one;
    files the old manifest lists are the old export's and are replaced, temp files are dropped."""
    try:  # the old signature signs the old manifest: never carried over
        listed = set(read_manifest(out).files) | {MANIFEST_NAME, SIGNATURE_NAME}
    except EdgetlError:
        listed = {MANIFEST_NAME, SIGNATURE_NAME}
    for p in sorted(out.iterdir()):
        if p.name in listed or _DEBRIS.search(p.name) or (staging / p.name).exists():
            continue
        if p.is_dir() and not p.is_symlink():
            if any(name.startswith(p.name + "/") for name in listed):
                continue  # labels/, tokenizer/: rebuilt by the export
            shutil.copytree(p, staging / p.name, symlinks=True)
        elif p.is_file() and not p.is_symlink():
            shutil.copy2(p, staging / p.name)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Block SIGINT while the two renames of the swap run (SIGKILL is handled by `recover`)."""
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
    if main:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl without it
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # kernel or file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap(staging: Path, out: Path, done: list) -> None:
    """Put `staging` in place of `out`: one atomic exchange where the kernel offers it (the old bundle is then
    under the staging name, removed after), else old -> <name>.prev, staging -> <name>. SIGINT is held back
    meanwhile; `done` gets True once the new bundle is in place (a held-back Ctrl-C is raised when the mask
    is restored, before this returns)."""
    prev = prev_dir(out)
    with _sigint_deferred():
        if out.exists() and _exchange(staging, out):
            fsync_dir(out.parent)
            done.append(True)
            return
        had_old = out.exists()
        if had_old:
            os.rename(out, prev)
        try:
            os.rename(staging, out)
        except BaseException:
            if had_old:
                os.rename(prev, out)
            raise
        fsync_dir(out.parent)
        done.append(True)


@contextlib.contextmanager
def bundle_transaction(out: str | os.PathLike[str]) -> Iterator[Path]:
    """`with bundle_transaction(out) as staging:` write the bundle (manifest last) into `staging`; on a clean
    exit it is verified and swapped in; on any error or interruption `out` is left as it was."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgetlError(f"{out}: exists and is not a directory; pass a bundle directory with --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise EdgetlError(
            f"{out}: exists, is not empty and holds no {MANIFEST_NAME}; refusing to replace a "
            "directory that is not a bundle (pass an empty or new directory with --out)"
        )
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    swapped: list = []
    lock = export_lock(out)  # a second export of the same bundle refuses here, before any work
    lock.__enter__()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        recover(out)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        yield staging
        if out.is_dir():
            _carry_over(out, staging)
        for p in staging.rglob("*"):
            if p.is_file() and _DEBRIS.search(p.name):
                p.unlink()  # temp files of libraries that a clean run leaves (none expected)
        try:
            verify_bundle(staging, load=True)
        except EdgetlError as exc:
            raise EdgetlError(
                _named(
                    f"export failed verification: {exc.message}; {_kept(out)}, the new bundle was removed", staging, out
                )
            ) from None
        _swap(staging, out, swapped)
        shutil.rmtree(prev_dir(out), ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)  # the old bundle, after an exchange
    except KeyboardInterrupt:
        if swapped:  # a Ctrl-C held back during the swap lands here: the new bundle is complete and in place
            shutil.rmtree(staging, ignore_errors=True)  # the old bundle, after an exchange
            shutil.rmtree(prev_dir(out), ignore_errors=True)
            raise ExportInterrupted(
                f"export interrupted after the swap; {out} is the new, verified bundle and the previous one was removed"
            ) from None
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportInterrupted(f"export interrupted; {_kept(out)} and the partial new bundle was removed") from None
    except StorageError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(_named(f"export failed: {exc.message}; {_kept(out)}", staging, out), path=exc.path) from None
    except BaseException as exc:
        where, need = _disk_full_context(staging, out)  # before the staging directory is removed
        shutil.rmtree(staging, ignore_errors=True)
        line = os_error_line(exc, "export failed", _kept(out) + ", the partial new bundle was removed", where, need)
        if line and not isinstance(exc, EdgetlError):
            raise StorageError(_named(line, staging, out)) from None
        raise
    finally:
        lock.__exit__(None, None, None)


def _disk_full_context(staging: Path, out: Path) -> tuple[Path, str]:
    """What a disk-full line names when the library that failed did not: the file being written (the newest
    in staging) and the space needed (what was written, or the previous bundle's size when larger)."""
    files = [p for p in staging.rglob("*") if p.is_file()] if staging.is_dir() else []
    written = sum(p.stat().st_size for p in files)
    newest = max(files, key=lambda p: p.stat().st_mtime_ns, default=staging)
    old = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else 0
    if old > written:
        need = f"needs about {_mb(old)} like the previous bundle, {_mb(written)} written"
    else:
        need = f"needs more than the {_mb(written)} written"
    free = _free_at(newest)  # measured before the partial bundle is removed: what was free when it failed
    return newest, f"{need}, {free}" if free else need


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _named(line: str, staging: Path, out: Path) -> str:
    """Messages name the bundle's files, not the (removed) staging directory's."""
    return line.replace(str(staging), str(out))
