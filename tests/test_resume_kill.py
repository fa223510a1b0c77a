"""Lose no work: SIGKILL a real `edgetl train` process again and again, resume it each time, and finish with
exactly the metrics and weights of an uninterrupted run.

Kill points: (a) inside checkpoint writing — a hook in the child SIGKILLs it at the Nth fsync of a file in
checkpoints/ (odd N: temp file written, not yet renamed; even N: renamed, directory not yet synced); (b) at a
random moment (seeded) shortly after the child committed a new checkpoint: mid-step, mid-write or mid-eval.
After every kill each checkpoint file must load, and the resume must go on from the last commit.

`run_campaign()` is also used by benchmarks/reliability.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO, tiny_recipe_dict  # noqa: E402

# Run the real CLI in the child; optionally die at the Nth fsync of a checkpoint file or directory.
DRIVER = r"""
import os, signal, sys
n = int(os.environ.get("EDGETL_TEST_KILL_AT_CKPT_FSYNC", "0"))
if n:
    _fsync, _count = os.fsync, [0]
    def _hook(fd):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if "checkpoints" in target:
            _count[0] += 1
            if _count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return _fsync(fd)
    os.fsync = _hook
from edgetl.cli import main
sys.argv = ["edgetl", *sys.argv[1:]]
main()
"""

# 2 epochs x 6 steps, a checkpoint every step, hflip augmentation (its RNG must survive a mid-epoch resume).
CAMPAIGN_OVERRIDES = {
    "name": "kill",
    "data.split.limit_train": 96,
    "data.split.limit_val": 60,
    "data.split.limit_test": 60,
    "data.augment": "hflip",
    "train.epochs": 2,
    "train.batch_size": 16,
    "train.num_threads": 1,
    "train.checkpoint_every_steps": 1,
}
# Metrics equal to this tolerance (observed: bit-identical on CPU with train.deterministic).
METRIC_ATOL = 1e-6
WEIGHT_ATOL = 1e-6


@dataclass
class Campaign:
    kills: list[dict] = field(default_factory=list)  # one per kill: how, exit status, step reached
    resumes: int = 0
    processes: int = 0
    corrupt: list[str] = field(default_factory=list)
    tracebacks: int = 0
    seconds: float = 0.0
    max_metric_diff: float = float("nan")
    max_weight_diff: float = float("nan")
    reference_dir: Path | None = None
    run_dir: Path | None = None


def _env(kill_at: int = 0) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("EDGETL_TEST_KILL_AT_CKPT_FSYNC", None)
    if kill_at:
        env["EDGETL_TEST_KILL_AT_CKPT_FSYNC"] = str(kill_at)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cmd(recipe: Path, runs_dir: Path, resume: Path | None) -> list[str]:
    cmd = [sys.executable, "-c", DRIVER, "train", str(recipe), "--runs-dir", str(runs_dir), "--quiet"]
    return cmd + (["--resume", str(resume)] if resume else [])


def _committed_step(run_dir: Path) -> int:
    """global_step of the last committed training state (-1: none yet)."""
    from edgetl.runs.checkpoint import read_training_meta

    p = run_dir / "checkpoints" / "last.state.safetensors"
    return int(read_training_meta(p)["global_step"]) if p.is_file() else -1


def check_checkpoints(run_dir: Path) -> list[str]:
    """Every checkpoint file present must load; returns the names of those that do not."""
    from safetensors.torch import load_file

    bad = []
    for p in sorted((run_dir / "checkpoints").glob("*.safetensors")):
        try:
            load_file(str(p))
        except Exception as e:  # noqa: BLE001  (any failure is a corrupt checkpoint)
            bad.append(f"{p.name}: {type(e).__name__}: {e}")
    return bad


def run_campaign(
    workdir: Path,
    *,
    fsync_kills=(3, 8, 13),
    timed_kills: int = 3,
    seed: int = 0,
    overrides: dict | None = None,
    log=print,
) -> Campaign:
    """Reference run, then a killed-and-resumed run; kills alternate between the two kinds."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    recipe = workdir / "kill.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(**{**CAMPAIGN_OVERRIDES, **(overrides or {})})))
    res = Campaign()

    ref_runs = workdir / "ref"
    r = subprocess.run(_cmd(recipe, ref_runs, None), env=_env(), capture_output=True, text=True, timeout=600)
    res.processes += 1
    assert r.returncode == 0, r.stderr[-3000:]
    res.reference_dir = ref_runs / "kill"

    runs = workdir / "killed"
    run_dir = runs / "kill"
    res.run_dir = run_dir
    plan = []
    fs = list(fsync_kills)
    for i in range(max(len(fs), timed_kills)):
        if i < len(fs):
            plan.append(("fsync", fs[i]))
        if i < timed_kills:
            plan.append(("timed", float(rng.uniform(0.0, 0.6))))
    for how, arg in plan:
        started = run_dir.is_dir()
        before = _committed_step(run_dir) if started else -1
        proc = subprocess.Popen(
            _cmd(recipe, runs, run_dir if started else None),
            env=_env(arg if how == "fsync" else 0),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        res.processes += 1
        res.resumes += int(started)
        if how == "timed":
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                if run_dir.is_dir() and _committed_step_safe(run_dir) > before:
                    break  # the child committed a new checkpoint: now kill it at a random moment
                time.sleep(0.02)
            time.sleep(arg)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        res.tracebacks += err.count("Traceback")
        killed = proc.returncode == -signal.SIGKILL
        step = _committed_step_safe(run_dir)
        bad = check_checkpoints(run_dir) if run_dir.is_dir() else []
        res.corrupt += bad
        res.kills.append(
            {
                "how": how,
                "arg": round(arg, 3) if how == "timed" else arg,
                "killed": killed,
                "returncode": proc.returncode,
                "committed_step_before": before,
                "committed_step_after": step,
                "corrupt": bad,
            }
        )
        log(
            f"kill {len(res.kills)}: {how}={arg if how == 'fsync' else f'{arg:.2f}s'} -> "
            f"rc={proc.returncode} committed step {before} -> {step}" + (f" CORRUPT {bad}" if bad else "")
        )
        if not killed:
            assert proc.returncode == 0, err[-3000:]
            break  # it finished before the kill point: nothing left to kill

    # final resume to completion
    r = subprocess.run(_cmd(recipe, runs, run_dir), env=_env(), capture_output=True, text=True, timeout=600)
    res.processes += 1
    res.resumes += 1
    res.tracebacks += r.stderr.count("Traceback")
    assert r.returncode == 0, r.stderr[-3000:]
    res.corrupt += check_checkpoints(run_dir)
    res.max_metric_diff, res.max_weight_diff = compare_runs(res.reference_dir, run_dir)
    res.seconds = time.perf_counter() - t_start
    return res


def _committed_step_safe(run_dir: Path) -> int:
    try:
        return _committed_step(run_dir)
    except Exception:  # noqa: BLE001  (a reader racing the writer never sees a torn file: rename is atomic)
        return -2


def _numbers(row: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if k in ("epoch_seconds",):
            continue  # wall time, not a metric
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out.update(_numbers({str(i): x for i, x in enumerate(v)}, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = float(v)
    return out


def compare_runs(ref: Path, got: Path) -> tuple[float, float]:
    """(max |difference| over every number in metrics.jsonl, max |difference| over last/best weights)."""
    from safetensors.numpy import load_file

    from edgetl.runs.layout import Run

    ma, mb = Run(ref).metrics(), Run(got).metrics()
    assert len(ma) == len(mb) and ma, (len(ma), len(mb))
    metric_diff = 0.0
    for a, b in zip(ma, mb):
        na, nb = _numbers(a), _numbers(b)
        assert na.keys() == nb.keys()
        for k in na:
            if np.isnan(na[k]) and np.isnan(nb[k]):
                continue
            metric_diff = max(metric_diff, abs(na[k] - nb[k]))
    weight_diff = 0.0
    for which in ("last", "best"):
        wa = load_file(str(ref / "checkpoints" / f"{which}.safetensors"))
        wb = load_file(str(got / "checkpoints" / f"{which}.safetensors"))
        assert wa.keys() == wb.keys()
        for k in wa:
            if wa[k].size:
                weight_diff = max(weight_diff, float(np.abs(wa[k].astype(np.float64) - wb[k]).max()))
    ia, ib = json.loads((ref / "run.json").read_text()), json.loads((got / "run.json").read_text())
    assert ia["best_epoch"] == ib["best_epoch"] and ib["status"] == "completed"
    return metric_diff, weight_diff


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path):
    res = run_campaign(tmp_path, log=lambda s: print(s, file=sys.stderr))
    kills = [k for k in res.kills if k["killed"]]
    assert len(kills) >= 5, res.kills  # at least 5 real SIGKILLs, inside checkpoint writes and at random times
    assert {k["how"] for k in kills} == {"fsync", "timed"}
    assert res.corrupt == [] and res.tracebacks == 0
    # progress across kills, and kills land in more than one epoch (6 steps per epoch)
    after = [k["committed_step_after"] for k in kills]
    assert after == sorted(after) and len({s // 6 for s in after if s >= 0}) >= 2, res.kills
    assert res.max_metric_diff <= METRIC_ATOL, res.max_metric_diff
    assert res.max_weight_diff <= WEIGHT_ATOL, res.max_weight_diff
    info = json.loads((res.run_dir / "run.json").read_text())
    # every kill after the first commit was followed by a real resume from a checkpoint
    assert info["resumes"] >= sum(1 for k in kills if k["committed_step_after"] >= 0)
    assert not list((res.run_dir / "checkpoints").glob(".*.tmp"))  # stale temp files cleaned on resume
