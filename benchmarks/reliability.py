"""Issue 6 acceptance figures: kills survived, fuzzed inputs tried, tracebacks seen.

    python benchmarks/reliability.py [--fsync-kills 3,8,13,6,11] [--timed-kills 5] [--fuzz-scale 4]
                                     [--workdir /tmp/edgetl-reliability] [--skip-kills] [--skip-fuzz]
                                     [--skip-export-kills] [--skip-disk-full] [--skip-ssh-options]
                                     [--skip-signatures] [--skip-security-fuzz] [--security-fuzz-scale 10]

1. Kill campaign (tests/test_resume_kill.py `run_campaign`): a reference `edgetl train` run, then the same
   recipe (MobileNetV2 offline weights, digits at 32 px, hflip, a checkpoint every step, 3 epochs x 6 steps)
   SIGKILLed again and again — inside checkpoint writes (the Nth fsync of a checkpoint file/directory) and at
   seeded random moments after a commit — and resumed with `--resume` each time. Reports kills, resumes,
   corrupt checkpoints, tracebacks, and the largest difference to the uninterrupted run over every number in
   metrics.jsonl and every weight of last/best.safetensors.
2. Fuzzing (tests/test_fuzz_loaders.py, hypothesis, shrinking off so every crash is counted): recipes as dicts,
   recipe YAML files, key=value overrides, bundle manifests, CSV/JSONL datasets. Every input must end in
   success or an EdgetlError with a one-line message; anything else is counted as a crash (traceback).

3. Export interruption campaign (issue 16): a tiny run exported with INT8 + QAT, then the same export
   interrupted by SIGINT and by SIGKILL at points spread over FP32 export, FP32 evaluation, INT8 calibration,
   the gate, QAT, the manifest write, verification and the swap (after a progress line plus a delay, or from
   inside the child at the Nth fsync / rename). After each: the bundle must verify and be byte-identical to
   the last good one (or be the complete new one), `edgetl predict` and `edgetl bench` must run on it, and
   after a SIGKILL a re-run export must succeed and leave no staging debris.
4. Disk-full campaign (issue 16): a small tmpfs (mounted by this script; needs root) filled to leave less
   space than `edgetl train` / `edgetl export` need, at several sizes so the failure lands at different
   writes. Each must fail with one line (no traceback), leave no partial or temporary files and leave the
   previous bundle byte-identical; predict/bench then run and a re-run with space succeeds.

5. Hostile `--ssh-option` values (issue 23): every ssh_config keyword `ssh -G` knows, with hostile and
   ordinary values (a script, a config with ProxyCommand, a canary shared library whose constructor writes a
   file, /dev/null, %-tokens, ${VAR}, option injection), through SshSettings; each accepted option then goes
   to a real ssh that connects to a local port (code-loading options would act there) and a canary directory
   must stay empty. A positive control runs plain ssh with PKCS11Provider=<canary library>.
6. Signed bundles (issue 23): a signed bundle tampered in ~70 ways (manifest fields, hashes made consistent,
   re-serialised JSON, single bytes, signature bits, a signature that is missing, empty, huge, a FIFO,
   /dev/zero, another key's) and loaded with the public key through Predictor.load, verify_bundle, the
   local bench and the remote bench's staging: each must be refused in one line, no traceback, no hang.
7. Randomised fuzzing of hosts, remote paths, ssh options and remote commands: tests/test_security_hosts.py
   under the "fuzz-campaign" hypothesis profile (new examples every run; CI runs a derandomized one), the CI
   budgets times --security-fuzz-scale. A failure is a finding: pin its example with @example.

Counts: bundles left damaged, tracebacks, debris files (targets: 0).

Prints a table and writes benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def kill_campaign(args) -> dict:
    import shutil

    from test_resume_kill import run_campaign

    work = Path(args.workdir) / "kills"
    shutil.rmtree(work, ignore_errors=True)
    fs = tuple(int(x) for x in args.fsync_kills.split(",") if x)
    res = run_campaign(
        work,
        fsync_kills=fs,
        timed_kills=args.timed_kills,
        seed=args.seed,
        overrides={"train.epochs": 3},
        log=lambda s: print("  " + s, flush=True),
    )
    killed = [k for k in res.kills if k["killed"]]
    return {
        "kills_planned": len(fs) + args.timed_kills,
        "kills": len(killed),
        "kills_inside_checkpoint_writes": sum(k["how"] == "fsync" for k in killed),
        "kills_at_random_times": sum(k["how"] == "timed" for k in killed),
        "resumes": res.resumes,
        "processes": res.processes,
        "corrupt_checkpoints": len(res.corrupt),
        "tracebacks": res.tracebacks,
        "max_metric_diff": res.max_metric_diff,
        "max_weight_diff": res.max_weight_diff,
        "seconds": round(res.seconds, 1),
        "detail": res.kills,
    }


def fuzz(args) -> dict:
    import test_fuzz_loaders as F
    from hypothesis import Phase

    F.FUZZ_SETTINGS["phases"] = [Phase.explicit, Phase.generate]  # no shrinking: count every crash
    crashes: list[str] = []
    real = F._outcome

    def counting(counter, fn, *a, **kw):
        try:
            return real(counter, fn, *a, **kw)
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001  (anything but EdgetlError is a crash)
            counter["crash"] += 1
            tb = traceback.extract_tb(e.__traceback__)
            where = next(
                (f"{f.filename.split('edgetl/')[-1]}:{f.lineno}" for f in reversed(tb) if "/edgetl/" in f.filename), "?"
            )
            crashes.append(f"{type(e).__name__} at {where}: {str(e)[:100]}")
            return None

    F._outcome = counting
    out = {}
    for name, (_, n) in F.FUZZERS.items():
        t0 = time.perf_counter()
        c = F.run_fuzzer(name, int(n * args.fuzz_scale))
        out[name] = {
            "tried": c["tried"],
            "ok": c["ok"],
            "edgetl_error": c["error"],
            "crash": c["crash"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"  {name}: {out[name]}", flush=True)
    F._outcome = real
    total = Counter()
    for v in out.values():
        total.update({k: v[k] for k in ("tried", "ok", "edgetl_error", "crash")})
    return {"per_loader": out, "total": dict(total), "crashes": sorted(set(crashes))}


# ------------------------------------------------------------------------------ issue 16: bundles
# The real CLI in a child; EDGETL_TEST_SIGNAL="fsync:<substring>:<n>:<signal>" signals itself after the nth
# fsync of a file whose path holds <substring> ("fsyncdir:<suffix>:..." a directory whose path ends with it:
# the swap's fsync of the bundle's parent); "rename:<suffix>:1:<signal>" right after an os.rename onto it.
SIGNAL_DRIVER = r"""
import os, signal, sys
spec = os.environ.get("EDGETL_TEST_SIGNAL", "")
if spec:
    kind, sub, n, sig = spec.split(":")
    n, sig, count = int(n), getattr(signal, sig), [0]
    if kind.startswith("fsync"):  # fsync: path holds <substring>; fsyncdir: path ends with it (a directory)
        _fsync = os.fsync
        def _hook(fd):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            r = _fsync(fd)
            if (target.endswith(sub) if kind == "fsyncdir" else sub in target):
                count[0] += 1
                if count[0] == n:
                    os.kill(os.getpid(), sig)
            return r
        os.fsync = _hook
    else:
        _rename = os.rename
        def _hook(src, dst, *a, **kw):
            r = _rename(src, dst, *a, **kw)
            if str(dst).endswith(sub):
                os.kill(os.getpid(), sig)
            return r
        os.rename = _hook
from edgetl.cli import main
sys.argv = ["edgetl", *sys.argv[1:]]
main()
"""

# Interruption points: (name, phase, trigger). trigger: ("line", text in a progress line, delay s) or
# ("hook", EDGETL_TEST_SIGNAL spec without the signal).
EXPORT_POINTS = [
    ("fp32-export", "FP32 export", ("line", "exporting ONNX", 1.5)),
    ("fp32-verify", "FP32 export", ("line", "exporting ONNX", 4.0)),
    ("fp32-eval", "FP32 export", ("line", "verified vs PyTorch", 0.3)),
    ("calibration", "INT8 calibration", ("line", "calibrating activation ranges", 0.5)),
    ("gate-try", "gate", ("line", "gate try 0", 0.05)),
    ("gate-latency", "gate", ("line", "gate try 0", 1.0)),
    ("int8-eval", "gate", ("line", "int8-ort:", 0.0)),
    ("qat-start", "QAT", ("line", "QAT (", 0.2)),
    ("qat-train", "QAT", ("line", "QAT (", 2.0)),
    ("qat-onnx", "QAT", ("line", "QAT epoch", 0.5)),
    ("labels-write", "manifest write", ("hook", "fsync:digit.txt:1")),
    ("manifest-write", "manifest write", ("hook", "fsync:manifest.json:1")),
    ("verify", "verify + swap", ("line", "verifying the new bundle", 0.2)),
    ("swap", "verify + swap", ("hook", "fsyncdir:runs/xk:1")),
]


def _cli_env(extra: dict | None = None) -> dict:
    import os

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "200",
    }
    env.pop("EDGETL_TEST_SIGNAL", None)
    env.update(extra or {})
    return env


def _edgetl(*args, env=None, timeout=900):
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", SIGNAL_DRIVER, *map(str, args)],
        capture_output=True,
        text=True,
        env=env or _cli_env(),
        timeout=timeout,
    )


def _tree_hashes(d: Path) -> dict:
    from edgetl.runtime.manifest import sha256_file

    return {p.relative_to(d).as_posix(): sha256_file(p) for p in sorted(d.rglob("*")) if p.is_file()}


def _debris(root: Path) -> list[str]:
    """Files and dirs an interrupted or failed command must not leave: staging dirs, .prev bundles,
    temp files of atomic writes and of the ONNX export."""
    import re

    pat = re.compile(r"(\.staging-\d+$|\.prev$|^\..*\.tmp$|\.tmp\.(onnx|npy|png)$)")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if pat.search(p.name))


def _check_bundle(bundle: Path, good: dict, png: Path, bench_out: Path) -> dict:
    """verify + predict + bench on what an interrupted command left; 'damaged' unless the bundle is the last
    good one byte for byte, or a complete new one that verifies."""
    from edgetl.errors import EdgetlError
    from edgetl.runtime.verify import verify_bundle

    out = {"identical": bundle.is_dir() and _tree_hashes(bundle) == good, "verifies": False, "tracebacks": 0}
    try:
        verify_bundle(bundle, load=True)
        out["verifies"] = True
    except EdgetlError as e:
        out["verify_error"] = str(e)
    p = _edgetl("predict", bundle, png)
    out["predict_rc"] = p.returncode
    b = _edgetl("bench", bundle, "--budget", "0.05", "--batch", "1", "--out", bench_out)
    out["bench_rc"] = b.returncode
    out["tracebacks"] = p.stderr.count("Traceback") + b.stderr.count("Traceback")
    out["damaged"] = not (out["verifies"] and p.returncode == 0 and b.returncode == 0)
    out["new_bundle"] = out["verifies"] and not out["identical"]
    return out


def _interrupt(cmd_args, trigger, sig, timeout=900):
    """Run an export, signal it at the trigger; returns (returncode, stderr, fired)."""
    import signal as _signal
    import subprocess
    import threading

    kind = trigger[0]
    env = _cli_env({"EDGETL_TEST_SIGNAL": f"{trigger[1]}:{sig}"} if kind == "hook" else None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_DRIVER, *map(str, cmd_args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    fired = [kind == "hook"]

    def watch():
        for line in proc.stderr:
            lines.append(line)
            if kind == "line" and not fired[0] and trigger[1] in line:
                fired[0] = True
                t = threading.Timer(trigger[2], lambda: proc.poll() is None and proc.send_signal(getattr(_signal, sig)))
                t.start()

    th = threading.Thread(target=watch)
    th.start()
    proc.stdout.read()
    proc.wait(timeout=timeout)
    th.join()
    return proc.returncode, "".join(lines), fired[0]


def _tiny_run(work: Path, name: str, over: dict) -> Path:
    import yaml
    from conftest import tiny_recipe_dict

    recipe = work / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(**{"name": name, **over})))
    r = _edgetl("train", recipe, "--runs-dir", work / "runs", "--quiet", "--logger", "none")
    assert r.returncode == 0, r.stderr[-2000:]
    return work / "runs" / name


EXPORT_RECIPE = {
    "export.qat.epochs": 1,
    "export.qat.max_steps": 4,
    "data.split.limit_train": 160,
    "data.split.limit_val": 80,
    "data.split.limit_test": 80,
}
EXPORT_ARGS = ("--int8", "--target", "cpu", "--qat", "--threads", "1")


def _png(work: Path) -> Path:
    import numpy as np
    from PIL import Image

    p = work / "digit.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(p)
    return p


def export_kill_campaign(args) -> dict:
    import shutil

    work = Path(args.workdir) / "export-kills"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    run = _tiny_run(work, "xk", EXPORT_RECIPE)
    png = _png(work)
    first = _edgetl("export", run, *EXPORT_ARGS)
    assert first.returncode == 0, first.stderr[-3000:]
    bundle = run / "export"
    good = _tree_hashes(bundle)
    trials, reruns = [], 0
    points = [p for p in EXPORT_POINTS if not args.export_points or p[0] in args.export_points.split(",")]
    for name, phase, trigger in points:
        for sig in ("SIGINT", "SIGKILL"):
            rc, err, fired = _interrupt(("export", run, *EXPORT_ARGS), trigger, sig)
            lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
            trial = {
                "point": name,
                "phase": phase,
                "signal": sig,
                "fired": fired,
                "returncode": rc,
                "tracebacks": err.count("Traceback"),
                "message": lines[-1] if lines else None,
                "debris_after_signal": _debris(run),
            }
            trial.update(_check_bundle(bundle, good, png, work / "bench-out"))
            if sig == "SIGINT":
                trial["one_line"] = rc == 0 or (rc == 130 and len(lines) == 1)
            if sig == "SIGKILL" or rc == 0:
                re_run = _edgetl("export", run, *EXPORT_ARGS)
                reruns += 1
                trial["rerun_rc"] = re_run.returncode
                trial["tracebacks"] += re_run.stderr.count("Traceback")
            trial["debris"] = _debris(run)
            good = _tree_hashes(bundle) if bundle.is_dir() else good
            trials.append(trial)
            print(
                f"  {name:<15} {sig:<7} rc={rc} identical={trial['identical']} verifies={trial['verifies']} "
                f"predict={trial['predict_rc']} bench={trial['bench_rc']} rerun={trial.get('rerun_rc', '-')} "
                f"debris={len(trial['debris'])} left-after-signal={len(trial['debris_after_signal'])} "
                f"msg={trial['message']!r}",
                flush=True,
            )
    return {
        "interruptions": len(trials),
        "signals_delivered": sum(t["returncode"] != 0 for t in trials),
        "phases": sorted({t["phase"] for t in trials}),
        "points": len(points),
        "damaged_bundles": sum(t["damaged"] for t in trials),
        "byte_identical_after_interrupt": sum(t["identical"] for t in trials),
        "complete_new_bundle_after_interrupt": sum(t["new_bundle"] for t in trials),
        "tracebacks": sum(t["tracebacks"] for t in trials),
        "debris_files": sum(len(t["debris"]) for t in trials),
        "staging_left_right_after_sigkill": sum(
            bool(t["debris_after_signal"]) for t in trials if t["signal"] == "SIGKILL"
        ),
        "sigint_one_line": sum(t.get("one_line", False) for t in trials if t["signal"] == "SIGINT"),
        "sigint_trials": sum(t["signal"] == "SIGINT" for t in trials),
        "reruns": reruns,
        "reruns_failed": sum(t.get("rerun_rc", 0) != 0 for t in trials),
        "seconds": round(time.perf_counter() - t0, 1),
        "detail": trials,
    }


def _mount_tmpfs(path: Path, size_bytes: int) -> None:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True, capture_output=True
    )


def _umount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", str(path)], capture_output=True)


def _fill(mnt: Path, leave: int) -> None:
    """A filler file so that about `leave` bytes stay free on the tmpfs."""
    import shutil

    filler = mnt / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(mnt).free
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def _du(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def disk_full_campaign(args) -> dict:
    import shutil

    work = Path(args.workdir) / "disk-full"
    for old in (work / "mnt",):
        _umount(old)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    mnt = work / "mnt"
    try:
        _mount_tmpfs(mnt, 96 << 20)
    except Exception as e:  # noqa: BLE001  (not root, no tmpfs): say so, count nothing
        return {"skipped": f"cannot mount a tmpfs here ({e}); run as root"}
    trials = []
    try:
        # ---- train onto a nearly full file system
        import yaml
        from conftest import tiny_recipe_dict

        recipe = work / "df.yaml"
        recipe.write_text(yaml.safe_dump(tiny_recipe_dict(name="df")))
        ref = _edgetl("train", recipe, "--runs-dir", work / "ref-runs", "--quiet")
        assert ref.returncode == 0, ref.stderr[-2000:]
        need = _du(work / "ref-runs" / "df")
        for frac in args.disk_fractions:
            _fill(mnt, int(need * frac))
            r = _edgetl("train", recipe, "--runs-dir", mnt / "runs", "--quiet")
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            runs = sorted((mnt / "runs").glob("df*")) if (mnt / "runs").is_dir() else []
            trial = {
                "command": "train",
                "free_fraction_of_need": frac,
                "returncode": r.returncode,
                "tracebacks": r.stderr.count("Traceback"),
                "one_line": r.returncode != 0 and len(lines) == 1,
                "message": lines[-1][:300] if lines else None,
                "debris": _debris(mnt),
                "run_status": [
                    json.loads((d / "run.json").read_text()).get("status") if (d / "run.json").is_file() else None
                    for d in runs
                ],
            }
            (mnt / "filler").unlink(missing_ok=True)
            for d in runs:
                shutil.rmtree(d)
            again = _edgetl("train", recipe, "--runs-dir", mnt / "runs", "--quiet")
            trial["rerun_rc"] = again.returncode
            trial["tracebacks"] += again.stderr.count("Traceback")
            shutil.rmtree(mnt / "runs", ignore_errors=True)
            trials.append(trial)
            print(
                f"  train  free={frac:.2f}x rc={r.returncode} one_line={trial['one_line']} "
                f"debris={len(trial['debris'])} rerun={again.returncode} status={trial['run_status']} "
                f"msg={trial['message']!r}",
                flush=True,
            )

        # ---- export onto a nearly full file system, over a good bundle
        run = work / "ref-runs" / "df"
        png = _png(work)
        bundle = mnt / "export"
        r = _edgetl("export", run, "--int8", "--target", "cpu", "--out", bundle, "--quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        size = _du(bundle)
        for frac in args.disk_fractions:
            good = _tree_hashes(bundle)
            _fill(mnt, int(size * frac))
            r = _edgetl("export", run, "--int8", "--target", "cpu", "--out", bundle, "--quiet")
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            trial = {
                "command": "export",
                "free_fraction_of_need": frac,
                "returncode": r.returncode,
                "tracebacks": r.stderr.count("Traceback"),
                "message": lines[-1][:300] if lines else None,
                "debris": _debris(mnt),
            }
            trial["one_line"] = r.returncode == 0 or len([ln for ln in lines if ln.startswith("error:")]) == 1
            trial.update(_check_bundle(bundle, good, png, work / "bench-out"))
            if r.returncode != 0:
                trial["damaged"] = trial["damaged"] or not trial["identical"]
            # bench writing its report onto the full disk: one line, the earlier report kept
            b = _edgetl("bench", bundle, "--budget", "0.05", "--batch", "1")
            trial["bench_full_disk_rc"] = b.returncode
            trial["tracebacks"] += b.stderr.count("Traceback")
            (mnt / "filler").unlink(missing_ok=True)
            again = _edgetl("export", run, "--int8", "--target", "cpu", "--out", bundle, "--quiet")
            trial["rerun_rc"] = again.returncode
            trial["tracebacks"] += again.stderr.count("Traceback")
            trial["debris"] += _debris(mnt)
            trials.append(trial)
            print(
                f"  export free={frac:.2f}x rc={r.returncode} identical={trial['identical']} "
                f"verifies={trial['verifies']} predict={trial['predict_rc']} bench={trial['bench_rc']} "
                f"bench-on-full-disk={b.returncode} rerun={again.returncode} debris={len(trial['debris'])} "
                f"msg={trial['message']!r}",
                flush=True,
            )
    finally:
        _umount(mnt)
    return {
        "trials": len(trials),
        "failed_as_expected": sum(t["returncode"] != 0 for t in trials),
        "one_line_errors": sum(t["one_line"] for t in trials),
        "damaged_bundles": sum(t.get("damaged", False) for t in trials),
        "tracebacks": sum(t["tracebacks"] for t in trials),
        "debris_files": sum(len(t["debris"]) for t in trials),
        "reruns_failed": sum(t["rerun_rc"] != 0 for t in trials),
        "seconds": round(time.perf_counter() - t0, 1),
        "detail": trials,
    }


# ------------------------------------------------------------------------------ issue 23: hostile ssh options
_CANARY_SO = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void ran(void) {
    int fd = open(CANARY_PATH, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
}
/* what ssh looks for (without loading it) before it dlopen()s a PKCS#11 provider */
int C_GetFunctionList(void **list) { (void)list; return 5; /* CKR_GENERAL_ERROR */ }
"""


def _canary_library(work: Path, canary: Path) -> Path | None:
    """A shared library whose constructor creates `canary`: proof that ssh loaded it (needs a C compiler)."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = work / "evil.c"
    src.write_text(_CANARY_SO.replace("CANARY_PATH", json.dumps(str(canary))))
    so = work / "evil.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(src)], capture_output=True, timeout=60)
    return so if r.returncode == 0 else None


def _closing_listener():
    """127.0.0.1:<port> that accepts TCP connections and closes them: ssh connects, then fails fast."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                srv.accept()[0].close()
            except OSError:
                pass

    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1], lambda: (stop.set(), srv.close())


def ssh_options_campaign(args) -> dict:
    """Every ssh_config keyword (from `ssh -G`) with hostile and ordinary values through --ssh-option's check;
    what is accepted is then passed to a real ssh that connects (so code-loading options would act), and a
    canary directory must stay empty. A positive control runs plain ssh with PKCS11Provider=<canary .so>."""
    import shutil
    import subprocess
    import threading

    from edgetl.bench.remote import SshSettings
    from edgetl.errors import EdgetlError

    work = Path(args.workdir) / "ssh-options"
    shutil.rmtree(work, ignore_errors=True)
    canary = work / "canary"
    canary.mkdir(parents=True)
    so = _canary_library(work, canary / "evil-so-loaded")
    script = work / "run.sh"
    script.write_text(f"#!/bin/sh\ntouch {canary}/script-ran\n")
    script.chmod(0o755)
    (work / "evil_config").write_text(f"ProxyCommand {script}\n")
    g = subprocess.run(["ssh", "-G", "127.0.0.1"], capture_output=True, text=True, timeout=30)
    keys = sorted({ln.split()[0] for ln in g.stdout.splitlines() if ln.strip()} | {"Include", "Match"})
    values = [str(script), str(work / "evil_config"), "yes", "no", "accept-new", "0", "22", "/dev/null",
              "~/.ssh/id_ed25519", "%d/x", "${HOME}/x", "-oProxyCommand=x", "a;b"]  # fmt: skip
    if so is not None:
        values.append(str(so))
    inputs = [f"{k}={v}" for k in keys for v in values] + [f"{k} yes" for k in keys]
    port, close = _closing_listener()
    counts = Counter()
    accepted: list[str] = []
    tracebacks: list[str] = []
    try:
        for opt in inputs:
            try:
                s = SshSettings(options=(opt,), config=Path(os.devnull), connect_timeout_s=2)
            except EdgetlError as e:
                counts["refused"] += 1
                counts["refused_one_line"] += "\n" not in str(e) and "~/.ssh/config" in str(e) or "Key=Value" in str(e)
                continue
            except Exception as e:  # noqa: BLE001
                tracebacks.append(f"{opt}: {type(e).__name__}: {e}")
                continue
            counts["accepted"] += 1
            accepted.append(opt)
            argv = ["ssh", *s.argv_options(), "-p", str(port), "--", "127.0.0.1", "true"]
            try:
                subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                counts["hangs"] += 1
        ran_inside = sorted(p.name for p in canary.iterdir())
        control = None
        if so is not None:  # positive control: plain ssh, the option the old deny-list let through
            ctl = work / "control"
            ctl.mkdir()
            so_ctl = _canary_library(ctl, ctl / "evil-so-loaded")
            cmd = ["ssh", "-F", os.devnull, "-o", "BatchMode=yes", "-o", f"PKCS11Provider={so_ctl}",
                   "-o", "ConnectTimeout=2", "-p", str(port), "--", "127.0.0.1", "true"]  # fmt: skip
            subprocess.run(cmd, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
            control = (ctl / "evil-so-loaded").exists()
    finally:
        close()
    del threading
    return {
        "ssh_keywords": len(keys),
        "inputs_tried": len(inputs),
        "refused": counts["refused"],
        "refused_in_one_line": counts["refused_one_line"],
        "accepted": counts["accepted"],
        "accepted_options": sorted(accepted),
        "tracebacks": len(tracebacks),
        "traceback_detail": tracebacks[:20],
        "hangs": counts["hangs"],
        "code_run_or_files_written_outside": len(ran_inside),
        "canary": ran_inside,
        "canary_library_built": so is not None,
        "positive_control_plain_ssh_loaded_the_library": control,
    }


# ------------------------------------------------------------------------------ issue 23: signed bundles
def _tamperings(bundle: Path, other_key) -> list[tuple[str, object]]:
    """(name, function(bundle dir)) for every way to change a signed bundle that a key must catch."""
    import base64

    from edgetl.runtime.manifest import bundle_file_hashes
    from edgetl.runtime.trust import SIGNATURE_NAME, sign_manifest

    def edit(fn, rehash=False):
        def run(d: Path):
            data = json.loads((d / "manifest.json").read_text())
            fn(data, d)
            if rehash:
                data["files"] = bundle_file_hashes(d)
            (d / "manifest.json").write_text(json.dumps(data, indent=2))

        return run

    def set_path(path, value):
        def fn(data, d):
            cur = data
            for k in path[:-1]:
                cur = cur[k]
            cur[path[-1]] = value

        return fn

    out: list[tuple[str, object]] = [
        ("labels renamed in the manifest", edit(set_path(["tasks", 0, "labels", 0], "stop"))),
        ("labels renamed, labels file and hashes made consistent", edit(
            lambda data, d: ((d / "labels" / "color.txt").write_text("stop\ngreen\nblue\n"),
                             set_path(["tasks", 0, "labels", 0], "stop")(data, d)), rehash=True)),
        ("model bytes changed, hashes made consistent", edit(
            lambda data, d: (d / "model.fp32.onnx").write_bytes((d / "model.fp32.onnx").read_bytes() + b"\0"),
            rehash=True)),
        ("mean edited", edit(set_path(["input", "mean"], [0.0, 0.0, 0.0]))),
        ("std edited", edit(set_path(["input", "std"], [1.0, 1.0, 1.0]))),
        ("image size edited", edit(set_path(["input", "image_size"], [16, 16]))),
        ("resize edited", edit(set_path(["input", "resize"], "shorter_crop"))),
        ("task kind edited", edit(set_path(["tasks", 0, "kind"], "multilabel"))),
        ("producer version edited", edit(set_path(["producer", "version"], "9.9.9"))),
        ("accuracy edited", edit(set_path(["artifacts", "fp32", "accuracy"], {"color": 0.99}))),
        ("manifest re-serialised (same JSON, other whitespace)", lambda d: (d / "manifest.json").write_text(
            json.dumps(json.loads((d / "manifest.json").read_text())))),
        ("manifest with a trailing newline added", lambda d: (d / "manifest.json").write_bytes(
            (d / "manifest.json").read_bytes() + b"\n")),
        ("manifest with a UTF-8 BOM", lambda d: (d / "manifest.json").write_bytes(
            b"\xef\xbb\xbf" + (d / "manifest.json").read_bytes())),
        ("signature removed", lambda d: (d / SIGNATURE_NAME).unlink()),
        ("signature empty", lambda d: (d / SIGNATURE_NAME).write_text("")),
        ("signature not base64", lambda d: (d / SIGNATURE_NAME).write_text("!!!! not base64 ????\n")),
        ("signature truncated", lambda d: (d / SIGNATURE_NAME).write_text((d / SIGNATURE_NAME).read_text()[:40])),
        ("signature of zero bytes", lambda d: (d / SIGNATURE_NAME).write_text(
            base64.b64encode(b"\0" * 64).decode())),
        ("signature 2 MB long", lambda d: (d / SIGNATURE_NAME).write_text("A" * 2_000_000)),
        ("signature is a directory", lambda d: ((d / SIGNATURE_NAME).unlink(), (d / SIGNATURE_NAME).mkdir())),
        ("signature links to /dev/zero", lambda d: ((d / SIGNATURE_NAME).unlink(),
                                                   (d / SIGNATURE_NAME).symlink_to("/dev/zero"))),
        ("signature is a FIFO", lambda d: ((d / SIGNATURE_NAME).unlink(), os.mkfifo(d / SIGNATURE_NAME))),
        ("manifest is a FIFO", lambda d: ((d / "manifest.json").unlink(), os.mkfifo(d / "manifest.json"))),
        ("re-signed with another key", lambda d: sign_manifest(d, other_key)),
        ("edited and re-signed with another key", lambda d: (edit(set_path(["tasks", 0, "labels", 0], "x"))(d),
                                                            sign_manifest(d, other_key))),
        ("unlisted file planted", lambda d: (d / "labels" / "planted.txt").write_text("x\n")),
    ]  # fmt: skip
    sig = (bundle / SIGNATURE_NAME).read_text().strip()
    raw = bytearray(base64.b64decode(sig))
    for i in range(0, 64, 4):  # one flipped bit at 16 positions
        flipped = bytearray(raw)
        flipped[i] ^= 1
        text = base64.b64encode(bytes(flipped)).decode()
        out.append((f"signature bit {i * 8} flipped", lambda d, t=text: (d / SIGNATURE_NAME).write_text(t + "\n")))
    data = (bundle / "manifest.json").read_bytes()
    for pos in range(0, len(data), max(1, len(data) // 24)):  # one changed byte at ~24 places in the manifest
        changed = bytearray(data)
        changed[pos] = ord("0") if changed[pos] != ord("0") else ord("1")
        out.append((f"manifest byte {pos} changed", lambda d, c=bytes(changed): (d / "manifest.json").write_bytes(c)))
    return out


def signature_campaign(args) -> dict:
    """A signed bundle changed in every way of `_tamperings`, each loaded with the public key through every entry
    point (Predictor.load, verify_bundle, the local bench, the remote bench's staging): each must be refused in
    one line, without a traceback or a hang; the untouched original must verify and stay byte-identical."""
    import hashlib
    import shutil
    import threading

    from cryptography.hazmat.primitives.asymmetric import ed25519
    from test_remote_sshd import make_bundle

    from edgetl.bench.harness import bench
    from edgetl.bench.remote import stage_bundle
    from edgetl.errors import EdgetlError
    from edgetl.runtime import Predictor
    from edgetl.runtime.trust import sign_manifest
    from edgetl.runtime.verify import verify_bundle

    work = Path(args.workdir) / "signatures"
    shutil.rmtree(work, ignore_errors=True)
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    pub = key.public_key()
    original = make_bundle(work / "original", second_artifact=False)
    sign_manifest(original, key)

    def digest(d: Path) -> dict:
        return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(d.rglob("*")) if p.is_file()}  # fmt: skip

    before = digest(original)
    entry = {
        "Predictor.load": lambda d: Predictor.load(d, public_key=pub),
        "verify_bundle": lambda d: verify_bundle(d, public_key=pub),
        "bench": lambda d: bench(d, "auto", artifacts=["fp32"], batch_sizes=(1,), budget_s=0.01,
                                 out=d.parent / (d.name + "-bench"), public_key=pub),
        "stage_bundle": lambda d: stage_bundle(d, None, ["fp32"], d.parent / (d.name + "-stage"), pub),
    }  # fmt: skip

    def attempt(fn, d) -> str:
        box: dict = {}

        def run():
            try:
                fn(d)
                box["r"] = "accepted"
            except EdgetlError as e:
                box["r"] = "refused" if "\n" not in str(e) else "refused (several lines)"
            except Exception as e:  # noqa: BLE001
                box["r"] = f"traceback: {type(e).__name__}: {str(e)[:120]}"

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(30)
        return box.get("r", "hang")

    results = Counter()
    detail = []
    control = {name: attempt(fn, original) for name, fn in entry.items()}  # the signed original loads everywhere
    for i, (name, tamper) in enumerate(_tamperings(original, other)):
        for ep, fn in entry.items():
            d = work / f"t{i:03d}-{ep.split('.')[0]}"
            shutil.copytree(original, d, symlinks=True)
            tamper(d)
            outcome = attempt(fn, d)
            results[outcome if not outcome.startswith("traceback") else "traceback"] += 1
            if outcome != "refused":
                detail.append(f"{name} via {ep}: {outcome}")
            if os.path.lexists(d / "manifest.json") and Path(d / "manifest.json").is_fifo():
                os.unlink(d / "manifest.json")  # a blocked reader (if any) must not keep the campaign alive
    return {
        "tamperings": len(_tamperings(original, other)),
        "entry_points": list(entry),
        "inputs_tried": sum(results.values()),
        "refused_in_one_line": results["refused"],
        "accepted": results["accepted"],
        "tracebacks": results["traceback"],
        "hangs": results["hang"],
        "original_signed_bundle_loads": control,
        "original_bundle_byte_identical": digest(original) == before,
        "not_refused": detail,
    }


# ------------------------------------------------------------------------------ issue 23: randomised fuzz campaign
def security_fuzz(args) -> dict:
    """tests/test_security_hosts.py's hypothesis tests under the randomised "fuzz-campaign" profile (new examples
    every run), their CI budgets multiplied by --security-fuzz-scale; counts every input each tried."""
    os.environ["EDGETL_HYPOTHESIS_PROFILE"] = "fuzz-campaign"
    os.environ["EDGETL_FUZZ_SCALE"] = str(args.security_fuzz_scale)
    import conftest  # noqa: F401  (registers and loads the profile before the test module builds its settings)
    import test_security_hosts as T

    counters = Counter()

    def counting(name, fn):
        def wrapped(*a, **kw):
            counters[name] += 1
            return fn(*a, **kw)

        return wrapped

    for name in ("parse_host", "safe_remote_path", "check_ssh_option", "remote_command"):
        setattr(T, name, counting(name, getattr(T, name)))
    out = {}
    for test in ("test_parse_host_fuzz_never_crashes_and_accepts_only_safe", "test_safe_remote_path_fuzz",
                 "test_ssh_option_fuzz_accepts_only_the_allow_list",
                 "test_remote_command_round_trips_through_a_posix_shell_split"):  # fmt: skip
        before = sum(counters.values())
        try:
            getattr(T, test)()
            status = "passed"
        except Exception as e:  # noqa: BLE001  (a failure is the finding: hypothesis prints the example)
            status = f"FAILED: {type(e).__name__}: {str(e)[:300]}"
        out[test] = {"inputs": sum(counters.values()) - before, "status": status}
        print(f"  {test}: {out[test]}", flush=True)
    return {
        "profile": "fuzz-campaign (derandomize=False)",
        "scale": args.security_fuzz_scale,
        "per_test": out,
        "inputs_total": sum(v["inputs"] for v in out.values()),
        "failed": sum(v["status"] != "passed" for v in out.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/edgetl-reliability")
    ap.add_argument("--fsync-kills", default="3,8,13,6,11")
    ap.add_argument("--timed-kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fuzz-scale", type=float, default=4.0, help="multiplier on the CI example budgets")
    ap.add_argument("--skip-kills", action="store_true")
    ap.add_argument("--skip-fuzz", action="store_true")
    ap.add_argument("--skip-export-kills", action="store_true")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep benchmarks/results/reliability.json figures of campaigns skipped this time",
    )
    ap.add_argument("--skip-disk-full", action="store_true")
    ap.add_argument("--skip-ssh-options", action="store_true", help="skip the hostile --ssh-option class (issue 23)")
    ap.add_argument("--skip-signatures", action="store_true", help="skip the signed-bundle tampering class")
    ap.add_argument("--skip-security-fuzz", action="store_true", help="skip the randomised host/path/option fuzzing")
    ap.add_argument("--security-fuzz-scale", type=int, default=10, help="multiplier on the CI example budgets")
    ap.add_argument("--export-points", default="", help="comma-separated subset of the export interruption points")
    ap.add_argument(
        "--disk-fractions",
        default="0.02,0.2,0.45,0.7,0.95",
        help="free space left, as fractions of what the command needs",
    )
    args = ap.parse_args()
    args.disk_fractions = [float(x) for x in args.disk_fractions.split(",") if x]

    import logging

    logging.getLogger("edgetl").setLevel(logging.ERROR)  # the fuzzed datasets warn a lot
    result: dict = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "command": "python benchmarks/reliability.py " + " ".join(sys.argv[1:]),
    }
    out = REPO / "benchmarks" / "results" / "reliability.json"
    if args.merge and out.is_file():  # keep the figures of campaigns not run this time
        kept = json.loads(out.read_text())
        result = {**{k: v for k, v in kept.items() if k not in result}, **result}
    campaigns = [
        ("kill_campaign", "kill campaign", kill_campaign, args.skip_kills),
        ("fuzz", "fuzzing", fuzz, args.skip_fuzz),
        ("export_kills", "export interruption campaign", export_kill_campaign, args.skip_export_kills),
        ("disk_full", "disk-full campaign", disk_full_campaign, args.skip_disk_full),
        ("ssh_options", "hostile --ssh-option values", ssh_options_campaign, args.skip_ssh_options),
        ("signatures", "signed-bundle tampering", signature_campaign, args.skip_signatures),
        ("security_fuzz", "randomised host/path/option fuzzing", security_fuzz, args.skip_security_fuzz),
    ]
    from edgetl.runtime.atomic import atomic_write_text

    ran = set()  # with --merge, figures kept from earlier runs are in the JSON, not printed again
    for key, title, fn, skip in campaigns:
        if skip:
            continue
        ran.add(key)
        print(f"{title}:", flush=True)
        try:
            result[key] = fn(args)
        except Exception as e:  # noqa: BLE001  (a broken campaign is a result too; the others still run)
            result[key] = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}
            print(f"  {title} FAILED: {result[key]['error']}", flush=True)
        atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")

    print()
    print("| figure | value |")
    print("|---|---|")
    errors = {k: result.pop(k) for k in [k for k, v in result.items() if isinstance(v, dict) and "error" in v]}
    for key, v in errors.items():
        print(f"| {key} | FAILED: {v['error'][:300]} |")
    if "kill_campaign" in result and "kill_campaign" in ran:
        k = result["kill_campaign"]
        print(
            f"| SIGKILLs survived (inside checkpoint writes / at random times) | {k['kills']} "
            f"({k['kills_inside_checkpoint_writes']} / {k['kills_at_random_times']}) |"
        )
        print(f"| resumes, processes started | {k['resumes']}, {k['processes']} |")
        print(f"| corrupt checkpoints after any kill | {k['corrupt_checkpoints']} |")
        print(f"| tracebacks (training processes) | {k['tracebacks']} |")
        print(
            f"| max abs diff vs uninterrupted: metrics.jsonl / weights | {k['max_metric_diff']:.3g} / "
            f"{k['max_weight_diff']:.3g} |"
        )
        print(f"| campaign wall time | {k['seconds']} s |")
    if "fuzz" in result and "fuzz" in ran:
        f = result["fuzz"]
        for name, v in f["per_loader"].items():
            print(
                f"| fuzz {name}: tried (ok / EdgetlError / crash) | {v['tried']} ({v['ok']} / "
                f"{v['edgetl_error']} / {v['crash']}), {v['seconds']} s |"
            )
        t = f["total"]
        print(
            f"| fuzz total: tried (ok / EdgetlError / crash) | {t['tried']} ({t['ok']} / {t['edgetl_error']} / "
            f"{t.get('crash', 0)}) |"
        )
        for c in f["crashes"]:
            print(f"  crash: {c}")
    if "export_kills" in result and "export_kills" in ran:
        e = result["export_kills"]
        print(
            f"| export interruptions (SIGINT + SIGKILL) at points / phases | {e['interruptions']} at {e['points']} "
            f"points / {', '.join(e['phases'])} |"
        )
        print(
            f"| bundles damaged after an interruption | {e['damaged_bundles']} (byte-identical old bundle: "
            f"{e['byte_identical_after_interrupt']}, complete new bundle: {e['complete_new_bundle_after_interrupt']}) |"
        )
        print(f"| tracebacks (export, predict, bench, re-runs) | {e['tracebacks']} |")
        print(
            f"| debris files after the next command | {e['debris_files']} (staging left right after a SIGKILL: "
            f"{e['staging_left_right_after_sigkill']}, removed by the re-run) |"
        )
        print(f"| SIGINT: one-line message, exit 130 | {e['sigint_one_line']} of {e['sigint_trials']} |")
        print(f"| re-runs after SIGKILL (failed) | {e['reruns']} ({e['reruns_failed']}) |")
        print(f"| campaign wall time | {e['seconds']} s |")
    if "disk_full" in result and "disk_full" in ran:
        d = result["disk_full"]
        if "skipped" in d:
            print(f"| disk-full campaign | skipped: {d['skipped']} |")
        else:
            print(
                f"| disk-full trials (train + export), failed as expected | {d['trials']}, {d['failed_as_expected']} |"
            )
            print(
                f"| one-line errors / bundles damaged / tracebacks / debris files | {d['one_line_errors']} / "
                f"{d['damaged_bundles']} / {d['tracebacks']} / {d['debris_files']} |"
            )
            print(f"| re-runs with space that failed | {d['reruns_failed']} |")
            print(f"| campaign wall time | {d['seconds']} s |")
    if "ssh_options" in result and "ssh_options" in ran:
        o = result["ssh_options"]
        print(
            f"| --ssh-option: inputs tried ({o['ssh_keywords']} ssh keywords) / refused in one line / accepted | "
            f"{o['inputs_tried']} / {o['refused_in_one_line']} / {o['accepted']} |"
        )
        print(
            f"| --ssh-option: tracebacks / hangs / code run or files written outside | {o['tracebacks']} / "
            f"{o['hangs']} / {o['code_run_or_files_written_outside']} (positive control, plain ssh loading the "
            f"canary library: {o['positive_control_plain_ssh_loaded_the_library']}) |"
        )
    if "signatures" in result and "signatures" in ran:
        g = result["signatures"]
        print(
            f"| signed bundle: tamperings x entry points / refused in one line / accepted | {g['tamperings']} x "
            f"{len(g['entry_points'])} = {g['inputs_tried']} / {g['refused_in_one_line']} / {g['accepted']} |"
        )
        print(
            f"| signed bundle: tracebacks / hangs / original byte-identical and loading | {g['tracebacks']} / "
            f"{g['hangs']} / {g['original_bundle_byte_identical']}, {set(g['original_signed_bundle_loads'].values())} |"
        )
    if "security_fuzz" in result and "security_fuzz" in ran:
        z = result["security_fuzz"]
        for name, v in z["per_test"].items():
            print(f"| randomised fuzz {name} | {v['inputs']} inputs, {v['status']} |")
    result.update(errors)
    atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out.relative_to(REPO)}")
    bad = (
        result.get("kill_campaign", {}).get("corrupt_checkpoints", 0)
        + result.get("kill_campaign", {}).get("tracebacks", 0)
        + sum(
            result.get(k, {}).get(f, 0)
            for k in ("export_kills", "disk_full")
            for f in ("damaged_bundles", "tracebacks", "debris_files", "reruns_failed")
        )
        + result.get("fuzz", {}).get("total", {}).get("crash", 0)
        + sum(
            result.get("ssh_options", {}).get(f, 0)
            for f in ("tracebacks", "hangs", "code_run_or_files_written_outside")
        )
        + sum(result.get("signatures", {}).get(f, 0) for f in ("accepted", "tracebacks", "hangs"))
        + (result.get("signatures", {}).get("original_bundle_byte_identical") is False)
        + result.get("security_fuzz", {}).get("failed", 0)
        + len(errors)
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
