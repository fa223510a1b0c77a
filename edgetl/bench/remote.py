"""Benchmark a bundle on remote devices over SSH: one host, or a fleet of them concurrently.

For each host (`user@addr[:port]`, validated by `edgetl.bench.hosts.parse_host`):

1. `ssh HOST mkdir -p JOB`                      JOB = <remote dir>/edgetl-bench-<id>, unique per host and run
2. `scp -r STAGE HOST:JOB/bundle`               the bundle's files (only the artifacts asked for) + bench_data.npz
3. `ssh HOST <python> -m edgetl bench JOB/bundle --device auto --out JOB/out ...`
4. `scp HOST:JOB/out/bench.json LOCAL`          then bench.md / bench.png are rendered here
5. `ssh HOST rm -rf -- JOB`                      unless keep_remote

Every ssh/scp call is an argument vector (no local shell); the remote command is quoted word by word
(`hosts.remote_command`), because ssh joins it into one string for the remote login shell. The only program
the remote side runs besides mkdir/rm on the job directory is the edgetl entry point. ssh runs with
`BatchMode=yes` (never a password prompt), `ConnectTimeout`, server-alive probes, and every subprocess has a
timeout, so a dead or hung device costs a bounded time.

The device side needs the light install only: numpy, onnxruntime (or TensorRT), edgetl installed with
`--no-deps`, and the CLI's small pure-python deps (typer, rich, pydantic, pyyaml). `edgetl bench` on a
bundle imports no torch (tests/test_remote.py proves it through a real sshd with torch blocked).

Several hosts run in threads, one per host; a host that fails or times out becomes a row with its error in
the merged comparison (`edgetl.bench.merge`) and does not stop the others.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.bench.hosts import Host, parse_host, safe_remote_path
from edgetl.bench.ssh_options import check_ssh_option
from edgetl.errors import EdgetlError
from edgetl.runtime.limits import regular_file

__all__ = [
    "DEFAULT_REMOTE_DIR",
    "HostResult",
    "SshSettings",
    "bench_host",
    "bench_remote",
    "read_hosts_file",
    "remote_bench_args",
    "stage_bundle",
]

DEFAULT_REMOTE_DIR = "~/.cache/edgetl/bench"
LOCAL_DEVICE_NAMES = ("cpu", "auto", "local")
LIGHT_INSTALL = "pip install numpy onnxruntime typer rich pydantic pyyaml && pip install --no-deps edgetl"
_RENDER_LOCK = threading.Lock()
_BENCH_DATA = "bench_data.npz"  # == edgetl.bench.harness.BENCH_DATA (kept import-free here)
_SSH_NOISE = ("Warning: Permanently added", "** ", "Pseudo-terminal")


@dataclass(frozen=True)
class SshSettings:
    """How to reach the hosts. `options` are extra `Key=Value` ssh options (allow-listed, passed as `-o`)."""

    identity: Path | None = None
    config: Path | None = None  # ssh -F (default: ~/.ssh/config)
    options: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
    ssh: str = "ssh"
    scp: str = "scp"

    def __post_init__(self) -> None:
        # an allow-list (edgetl.bench.ssh_options); what is kept is what was checked
        object.__setattr__(self, "options", tuple(check_ssh_option(opt) for opt in self.options))
        if self.identity is not None and not Path(self.identity).is_file():
            raise EdgetlError(f"--identity {self.identity}: no such key file")
        if self.config is not None and not Path(self.config).is_file() and str(self.config) != os.devnull:
            raise EdgetlError(f"--ssh-config {self.config}: no such file")
        if not self.connect_timeout_s > 0:
            raise EdgetlError(f"--connect-timeout {self.connect_timeout_s}: must be > 0 seconds")
        for tool in (self.ssh, self.scp):
            if shutil.which(tool) is None:
                raise EdgetlError(
                    f"{tool}: not found on this machine; install the OpenSSH client (apt install openssh-client)"
                )

    def argv_options(self) -> list[str]:
        opts = ["-F", str(self.config)] if self.config is not None else []
        opts += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={max(1, round(self.connect_timeout_s))}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
        ]
        if self.identity is not None:
            opts += ["-i", str(self.identity)]
        for o in self.options:
            opts += ["-o", o]
        return opts


@dataclass
class HostResult:
    """What one host gave: its report (fetched and re-rendered here), or the one-line error."""

    host: str
    report: dict | None = None
    error: str | None = None
    wall_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report is not None


# -------------------------------------------------------------------------------------------------- hosts
def read_hosts_file(path: str | os.PathLike) -> list[str]:
    """Hosts from a file: one `user@addr[:port]` per line; blank lines and `#` comments are skipped."""
    p = Path(path)
    if p.exists():
        regular_file(p, "--hosts-file")  # a FIFO would block the read
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgetlError(f"--hosts-file {p}: not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgetlError(f"--hosts-file {p}: cannot read ({e})") from None
    hosts = []
    for i, line in enumerate(text.splitlines(), 1):
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        try:
            parse_host(spec)
        except EdgetlError as e:
            raise EdgetlError(f"{p}:{i}: {e.message}") from None
        hosts.append(spec)
    if not hosts:
        raise EdgetlError(f"--hosts-file {p}: no hosts in it (one user@addr[:port] per line)")
    return hosts


def _parse_hosts(hosts: Sequence[str | Host]) -> list[Host]:
    parsed = [h if isinstance(h, Host) else parse_host(h) for h in hosts]
    if not parsed:
        raise EdgetlError("--host: give at least one user@addr[:port]")
    seen: set[str] = set()
    for h in parsed:
        if str(h) in seen:
            raise EdgetlError(f"--host {h}: given twice")
        seen.add(str(h))
    return parsed


def _slug(host: Host) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(host)).strip("_") or "host"


def _remote_path(path: str) -> str:
    """A validated remote path; `~/x` becomes `x`: ssh commands and scp both start in the remote home."""
    p = safe_remote_path(path)
    if p == "~":
        return "."
    rest = p[2:] if p.startswith("~/") else p
    return f"./{rest}" if rest.startswith("-") else rest  # "~/-x" must not become the option "-x"


# -------------------------------------------------------------------------------------------------- staging
def stage_bundle(
    bundle: Path, data_file: Path | None, artifacts: Sequence[str] | None, dest: Path, public_key=None
) -> tuple[Path, int]:
    """Copy (hard-link where possible) what the remote bench needs into `dest`; returns (dest, bytes).

    The manifest, every file it lists except the model files of artifacts that were not asked for, and
    the bench data (as `bench_data.npz`, where the remote `edgetl bench` finds it). The bundle is verified
    here first (`edgetl.runtime.trust`, with the manifest's signature when `public_key` is given).
    """
    from edgetl.bench.harness import BENCH_DATA
    from edgetl.runtime.manifest import MANIFEST_NAME, files_for_artifacts, resolve_in_bundle
    from edgetl.runtime.trust import SIGNATURE_NAME, check_bundle, read_trusted_manifest

    manifest = read_trusted_manifest(bundle, public_key)
    wanted = [a for a in artifacts if a != "pytorch"] if artifacts else None
    names = [MANIFEST_NAME] + files_for_artifacts(manifest, wanted)
    check_bundle(bundle, manifest, names[1:])
    total = 0
    dest.mkdir(parents=True)
    for rel in names:
        src = resolve_in_bundle(bundle, rel, "file") if rel != MANIFEST_NAME else bundle / MANIFEST_NAME
        if not src.is_file():
            raise EdgetlError(f"{src}: listed in {bundle / MANIFEST_NAME} but missing from the bundle")
        _link_or_copy(src, dest / rel)
        total += src.stat().st_size
    if (bundle / SIGNATURE_NAME).is_file() and SIGNATURE_NAME not in names:  # the device can check it too
        _link_or_copy(bundle / SIGNATURE_NAME, dest / SIGNATURE_NAME)
    if data_file is not None:
        _link_or_copy(Path(data_file), dest / BENCH_DATA)
        total += Path(data_file).stat().st_size
    return dest, total


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def remote_bench_args(
    python: str,
    bundle: str,
    out: str,
    *,
    artifacts: Sequence[str] | None,
    batch_sizes: Sequence[int],
    budget_s: float,
    threads: int | None,
    providers: Sequence[str] | None,
    data: str | None = None,
) -> list[str]:
    """The words of the remote command: only the edgetl entry point, with validated values."""
    py = safe_remote_path(python) if "/" in python or python.startswith("~") else python
    if not re.fullmatch(r"[A-Za-z0-9_.~/+-]+", py) or py.startswith("-"):
        raise EdgetlError(
            f"--remote-python {python!r}: expected a program name or path such as python3 or ~/venv/bin/python"
        )
    args = [
        py,
        "-m",
        "edgetl",
        "bench",
        bundle,
        "--device",
        "auto",
        "--measure",
        "--out",
        out,
        "--batch",
        ",".join(str(int(b)) for b in batch_sizes),
        "--budget",
        repr(float(budget_s)),
    ]
    if threads:
        args += ["--threads", str(int(threads))]
    if data:
        args += ["--data", data]
    for a in artifacts or ():
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", a):
            raise EdgetlError(f"--artifact {a!r}: not an artifact name")
        args += ["--artifact", a]
    for p in providers or ():
        if not re.fullmatch(r"[A-Za-z0-9_]+", p):
            raise EdgetlError(f"--provider {p!r}: not an execution provider name")
        args += ["--provider", p]
    return args


# -------------------------------------------------------------------------------------------------- one host
class _Ssh:
    """Runs ssh/scp argument vectors for one host and turns failures into one line."""

    def __init__(self, host: Host, settings: SshSettings):
        self.host, self.settings = host, settings
        self.opts = settings.argv_options()

    def run(self, argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise EdgetlError(f"{self.host}: {what} timed out after {timeout:.0f} s") from None
        except OSError as e:
            raise EdgetlError(f"{self.host}: cannot run {argv[0]} ({e})") from None
        ssh_failed = argv[0] == self.settings.ssh and proc.returncode == 255
        scp_failed = argv[0] == self.settings.scp and proc.returncode != 0 and _looks_like_connection_error(proc.stderr)
        if ssh_failed or scp_failed:
            line = _last_line(proc.stderr) or f"exit {proc.returncode}"
            if "Permission denied" in line or "Host key verification failed" in line:
                raise EdgetlError(
                    f"{self.host}: ssh login refused ({line}); check the user, --identity and known_hosts"
                )
            raise EdgetlError(f"{self.host}: unreachable over ssh ({line})")
        return proc

    def ssh(self, *words: str, timeout: float, what: str) -> subprocess.CompletedProcess:
        return self.run(self.host.ssh_argv(*words, ssh=self.settings.ssh, options=self.opts), timeout, what)

    def check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            raise EdgetlError(
                f"{self.host}: {what} failed (exit {proc.returncode}): {_last_line(proc.stderr) or 'no message'}"
            )


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.strip().startswith(_SSH_NOISE)]
    return lines[-1] if lines else ""


def _looks_like_connection_error(stderr: str) -> bool:
    s = stderr or ""
    return any(
        k in s
        for k in (
            "Connection refused",
            "Connection timed out",
            "No route to host",
            "Could not resolve",
            "Permission denied (publickey",
            "Connection closed",
            "Host key verification failed",
            "Name or service not known",
            "Network is unreachable",
            "lost connection",
        )
    )


def _remote_bench_error(host: Host, python: str, proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr or ""
    if proc.returncode == 127 or "not found" in _last_line(err) and python in _last_line(err):
        return f"{host}: remote python {python!r} not found; install Python 3.10+ there or pass --remote-python"
    if "No module named edgetl" in err:
        return f"{host}: edgetl is not installed for {python} there; on the device: {LIGHT_INSTALL}"
    if "No module named" in err:
        mod = re.findall(r"No module named '([^']+)'", err)
        return f"{host}: the device lacks the Python module {mod[-1] if mod else '?'!r}; on the device: {LIGHT_INSTALL}"
    errors = [ln.strip()[len("error:") :].strip() for ln in err.splitlines() if ln.strip().startswith("error:")]
    if errors:
        return f"{host}: remote bench failed: {errors[-1]}"
    return f"{host}: remote bench failed (exit {proc.returncode}): {_last_line(err) or 'no message'}"


def default_timeout_s(n_artifacts: int, batch_sizes: Sequence[int], budget_s: float) -> float:
    """A bound on one remote bench: per artifact ~ (2 + batches) timed budgets + warm-ups + scoring + load."""
    per = budget_s * (2 + len(batch_sizes)) + 0.8 + 0.5 * len(batch_sizes) + 60.0
    return 120.0 + max(1, n_artifacts) * per


def bench_host(
    host: str | Host,
    stage: Path,
    stage_bytes: int,
    *,
    settings: SshSettings,
    python: str = "python3",
    remote_dir: str = DEFAULT_REMOTE_DIR,
    remote_bundle: str | None = None,
    artifacts: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 8, 32),
    budget_s: float = 3.0,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    timeout_s: float | None = None,
    keep_remote: bool = False,
    say: Callable[[str], None] | None = None,
) -> tuple[dict, dict]:
    """Copy the staged bundle to one host, bench it there, fetch bench.json. Returns (report, remote info).

    With `remote_bundle` (a bundle already on the device, e.g. with engines `edgetl build` made there), the
    stage holds only bench_data.npz (or nothing) and the device benches that bundle with `--data`.

    Raises EdgetlError (one line naming the host) when the host is unreachable, lacks python/edgetl, the
    remote bench fails, or a step times out. Removes the remote job directory unless `keep_remote`.
    """
    host = host if isinstance(host, Host) else parse_host(host)
    say = say or (lambda m: None)
    s = _Ssh(host, settings)
    ct = settings.connect_timeout_s
    job = f"{_remote_path(remote_dir).rstrip('/')}/edgetl-bench-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    job = safe_remote_path(job)
    n_art = len(artifacts) if artifacts else 4
    timeout_s = timeout_s or default_timeout_s(n_art, batch_sizes, budget_s)
    t0, started = time.perf_counter(), time.time()
    created = False
    try:
        say(f"{host}: connecting")
        s.check(s.ssh("mkdir", "-p", "--", job, timeout=ct + 30, what="mkdir"), f"mkdir -p {job}")
        created = True
        staged = any(stage.iterdir())
        if staged:
            what = "the bench data" if remote_bundle else "the bundle"
            say(f"{host}: copying {what} ({stage_bytes / 1e6:.1f} MB)")
            up = s.run(
                host.scp_to_argv(
                    str(stage), f"{job}/bundle", recursive=True, scp=settings.scp, options=["-q", *s.opts]
                ),
                ct + 60 + stage_bytes / 1e6,
                f"copying {what}",
            )
            s.check(up, f"copying {what} (scp)")
        say(f"{host}: benchmarking")
        data = f"{job}/bundle/{_BENCH_DATA}" if remote_bundle and (stage / _BENCH_DATA).is_file() else None
        words = remote_bench_args(
            python,
            _remote_path(remote_bundle) if remote_bundle else f"{job}/bundle",
            f"{job}/out",
            artifacts=artifacts,
            batch_sizes=batch_sizes,
            budget_s=budget_s,
            threads=threads,
            providers=providers,
            data=data,
        )
        t_bench = time.perf_counter()
        proc = s.ssh(*words, timeout=timeout_s, what=f"the remote bench (--timeout {timeout_s:.0f} s)")
        bench_s = time.perf_counter() - t_bench
        if proc.returncode != 0:
            raise EdgetlError(_remote_bench_error(host, python, proc))
        with tempfile.TemporaryDirectory(prefix="edgetl-fetch-") as tmp:
            local = Path(tmp) / "bench.json"
            down = s.run(
                host.scp_from_argv(f"{job}/out/bench.json", str(local), scp=settings.scp, options=["-q", *s.opts]),
                ct + 60,
                "fetching bench.json",
            )
            s.check(down, "fetching bench.json (scp)")
            try:
                report = json.loads(local.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise EdgetlError(f"{host}: the fetched bench.json is not readable ({e})") from None
    finally:
        if created and not keep_remote:
            try:
                s.ssh("rm", "-rf", "--", job, timeout=ct + 30, what="cleanup")
            except EdgetlError:
                pass  # best effort: the result (or the first error) matters more than the leftover directory
    info = {
        "host": str(host),
        "python": python,
        "job_dir": job,
        "kept": keep_remote,
        "bundle_bytes": stage_bytes,
        "remote_bundle": _remote_path(remote_bundle) if remote_bundle else None,
        "bench_s": round(bench_s, 2),
        "wall_s": round(time.perf_counter() - t0, 2),
        "started_unix": round(started, 3),
        "finished_unix": round(time.time(), 3),
    }
    return report, info


def _adopt(report: dict, info: dict, *, local_bundle: Path, requested: str | None) -> dict:
    """Make a fetched report this machine's: host, local bundle, device name from our profile registry."""
    from edgetl.bench.devices import get_device_profile
    from edgetl.bench.sysinfo import detect_local_device

    report = dict(report)
    report["host"] = info["host"]
    report["remote"] = {**info, "bundle": report.get("bundle")}
    report["bundle"] = f"{info['host']}:{info['remote_bundle']}" if info.get("remote_bundle") else str(local_bundle)
    warnings = list(report.get("warnings") or [])
    try:
        name = detect_local_device(report.get("system") or {})
        report["device"], report["device_display"] = name, get_device_profile(name).display_name
    except EdgetlError:
        pass  # keep what the device said about itself
    if requested and requested not in LOCAL_DEVICE_NAMES:
        want = get_device_profile(requested).name
        report["device_requested"] = want
        if want != report.get("device"):
            warnings.append(f"--device {want} was asked for, but {info['host']} looks like {report.get('device')}")
    if warnings:
        report["warnings"] = warnings
    return report


# -------------------------------------------------------------------------------------------------- entry
def bench_remote(
    target: str | os.PathLike,
    hosts: Sequence[str | Host],
    device: str = "auto",
    artifacts: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 8, 32),
    budget_s: float = 3.0,
    out: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    python: str = "python3",
    remote_dir: str = DEFAULT_REMOTE_DIR,
    remote_bundle: str | None = None,
    identity: str | os.PathLike | None = None,
    ssh_config: str | os.PathLike | None = None,
    ssh_options: Sequence[str] = (),
    connect_timeout_s: float = 10.0,
    timeout_s: float | None = None,
    keep_remote: bool = False,
    data_path: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    public_key=None,
) -> dict:
    """Bench a run or bundle on one or more remote devices over SSH.

    One host: returns that device's report (written to `<out>/<host>/bench.{json,md,png}`); any failure is
    an EdgetlError. Several hosts: runs them concurrently and returns the merged comparison
    (`<out>/compare.{json,md,png}` + one directory per host); failed hosts are rows with their error, and
    only if every host fails is it an EdgetlError. `out` defaults to `<run or bundle>/bench-remote`.
    """
    from edgetl.bench.devices import get_device_profile
    from edgetl.bench.harness import (
        BENCH_DATA,
        BenchData,
        locate,
        missing_artifact_message,
        write_bench_data,
        write_report,
    )
    from edgetl.bench.merge import merge_reports, write_comparison

    if device not in LOCAL_DEVICE_NAMES:
        get_device_profile(device)  # unknown names: one line listing the known ones, before any connection
    parsed = _parse_hosts(hosts)
    settings = SshSettings(
        identity=Path(identity) if identity else None,
        config=Path(ssh_config) if ssh_config else None,
        options=tuple(ssh_options),
        connect_timeout_s=connect_timeout_s,
    )
    if not budget_s > 0:
        raise EdgetlError(f"--budget {budget_s}: must be > 0 seconds")
    if timeout_s is not None and not timeout_s > 0:
        raise EdgetlError(f"--timeout {timeout_s}: must be > 0 seconds")
    remote_bench_args(
        python,
        "b",
        "o",
        artifacts=artifacts,
        batch_sizes=batch_sizes,
        budget_s=budget_s,
        threads=threads,
        providers=providers,
    )  # validate every value before connecting
    _remote_path(remote_dir)
    if remote_bundle is not None:
        _remote_path(remote_bundle)
    say = progress or (lambda m: None)

    bundle, run_dir, data_file = locate(target)
    from edgetl.runtime.manifest import read_manifest

    manifest = read_manifest(bundle)
    if "pytorch" in (artifacts or ()):
        raise EdgetlError("--artifact pytorch: the PyTorch row needs the run and torch; bench it here without --host")
    unknown = [a for a in artifacts or () if a not in manifest.artifacts]
    if unknown and remote_bundle is None:  # a bundle on the device may hold more (engines built there)
        raise EdgetlError(missing_artifact_message(unknown[0], bundle, manifest))
    if data_path:
        data_file = Path(data_path)
        BenchData(data_file)  # a bad file fails here, not on every device
    elif data_file is None and run_dir is not None:
        data_file = run_dir / BENCH_DATA
        if not data_file.is_file():
            from edgetl.runs.loaded import load_run

            say(f"writing {data_file} (held-out inputs + labels for the device)")
            write_bench_data(load_run(run_dir), data_file)
    if data_file is None:
        say(
            f"warning: {bundle} has no {BENCH_DATA}: the devices measure latency only (bench the run dir to score accuracy)"
        )
    out_dir = Path(out) if out else (run_dir or bundle) / "bench-remote"

    lock = threading.Lock()

    def locked_say(msg: str) -> None:
        with lock:
            say(msg)

    with tempfile.TemporaryDirectory(prefix="edgetl-stage-") as tmp:
        if remote_bundle is None:
            stage, nbytes = stage_bundle(bundle, data_file, artifacts, Path(tmp) / "bundle", public_key)
        else:  # only the bench data travels
            stage, nbytes = Path(tmp) / "bundle", 0
            stage.mkdir()
            if data_file is not None:
                _link_or_copy(Path(data_file), stage / _BENCH_DATA)
                nbytes = Path(data_file).stat().st_size

        def one(h: Host) -> HostResult:
            t0 = time.perf_counter()
            try:
                report, info = bench_host(
                    h,
                    stage,
                    nbytes,
                    settings=settings,
                    python=python,
                    remote_dir=remote_dir,
                    remote_bundle=remote_bundle,
                    artifacts=artifacts,
                    batch_sizes=batch_sizes,
                    budget_s=budget_s,
                    threads=threads,
                    providers=providers,
                    timeout_s=timeout_s,
                    keep_remote=keep_remote,
                    say=locked_say,
                )
                report = _adopt(report, info, local_bundle=bundle, requested=device)
                with _RENDER_LOCK:  # matplotlib (bench.png) is not thread-safe
                    files = write_report(report, out_dir / _slug(h))
                locked_say(f"{h}: done in {info['wall_s']:.0f} s")
                return HostResult(
                    str(h), report=report, wall_s=info["wall_s"], files={k: str(v) for k, v in files.items()}
                )
            except EdgetlError as e:
                locked_say(f"{h}: FAILED: {e.message}")
                return HostResult(str(h), error=e.message, wall_s=round(time.perf_counter() - t0, 2))
            except Exception as e:  # a bug on one host must not lose the others' results
                msg = f"{h}: {type(e).__name__}: {' '.join(str(e).split())}"
                locked_say(f"{h}: FAILED: {msg}")
                return HostResult(str(h), error=msg, wall_s=round(time.perf_counter() - t0, 2))

        if len(parsed) == 1:
            res = one(parsed[0])
            if not res.ok:
                raise EdgetlError(res.error)
            return res.report
        with ThreadPoolExecutor(max_workers=min(len(parsed), 32), thread_name_prefix="edgetl-remote") as pool:
            results = list(pool.map(one, parsed))

    merged = merge_reports(
        [r.report for r in results if r.ok],
        [{"host": r.host, "label": r.host, "error": r.error, "wall_s": r.wall_s} for r in results if not r.ok],
    )
    merged["hosts"] = [
        {"host": r.host, "status": "ok" if r.ok else "failed", "error": r.error, "wall_s": r.wall_s, "files": r.files}
        for r in results
    ]
    merged["bundle"] = str(bundle)
    write_comparison(merged, out_dir)
    failed = [r for r in results if not r.ok]
    if len(failed) == len(results):
        raise EdgetlError(f"all {len(results)} hosts failed; first: {failed[0].error} (see {out_dir / 'compare.md'})")
    return merged
