"""Side-by-side latency of several ONNX models (FP32 vs INT8 variants) on the same input, interleaved.

Other processes share the CPU, so absolute times drift; measuring the models in alternating rounds makes
the drift hit all of them alike, and the ratios are what the gate reports. Batch 1 by default. Each session
stops its thread pool's spinning when a run ends, so the sessions not being timed leave the cores alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgetl.runtime.cpuload import WARMUP_S, CpuLoad, cpu_model, default_threads
from edgetl.runtime.ratio import paired_ratio, spread_known

__all__ = ["compare_latency", "default_threads", "speedup", "speedup_interval"]

RATIO_TOL = 0.05  # keep adding rounds until every ratio is known to within ± 5% (95% interval) ...
SPREAD_CAP = 3.0  # ... or until this many times the time budget has been spent


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # Idle sessions' worker threads otherwise keep spinning after their run and steal cores from the session
    # being timed: on 2 cores that inflated multi-threaded FP32 times (up to 2x) and flattered INT8.
    so.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def compare_latency(
    models: dict[str, Path],
    feeds: dict[str, np.ndarray],
    *,
    threads: int | None = None,
    budget_s: float = 6.0,
    warmup: int = 3,
    inner: int = 3,
    min_rounds: int = 5,
    max_rounds: int = 2000,
    warmup_s: float = WARMUP_S,
    ratio_tol: float | None = RATIO_TOL,
) -> dict:
    """Per model: p50 / p10 latency in ms of one `session.run(feeds)`, measured in interleaved rounds.

    Each round runs every model `inner` times back to back; rounds repeat until `budget_s` of timed work has
    passed (at least `min_rounds`), then on until every model's ratio to the first is known to within
    ± `ratio_tol` (`edgetl.runtime.ratio.spread_known`) or `SPREAD_CAP` times the budget is spent. Threads and warm-up (`warmup_s`, at least `warmup` runs) are those of
    `edgetl bench` (edgetl.runtime.cpuload), so its `x fp32` column and this ratio are measured alike.
    Returns {"threads", "batch", "rounds", "ms": {name: {"p50", "p10", "n"}}, "warmup_s", "cpu",
    "other_cpu_share", "spread_known"} (the share of the CPUs other processes used while timing).
    """
    threads = threads or default_threads()
    sessions = {name: _session(Path(p), threads) for name, p in models.items()}
    for s in sessions.values():
        t0, n = time.perf_counter(), 0
        while n < warmup or time.perf_counter() - t0 < warmup_s:
            s.run(None, feeds)
            n += 1
    samples: dict[str, list[int]] = {name: [] for name in sessions}
    per_round: dict[str, list[float]] = {name: [] for name in sessions}
    spent = 0
    rounds = 0
    names = list(sessions)
    load = CpuLoad().__enter__()
    known = False

    def more() -> bool:
        nonlocal known
        if rounds < min_rounds or spent < budget_s * 1e9:
            return True
        known = ratio_tol is None or len(names) < 2 or spread_known(per_round, names[0], ratio_tol)
        return not known and spent < SPREAD_CAP * budget_s * 1e9

    while rounds < max_rounds and more():
        order = names if rounds % 2 == 0 else names[::-1]  # no model always runs right after the same one
        for name in order:
            s = sessions[name]
            got = []
            for _ in range(inner):
                t0 = time.perf_counter_ns()
                s.run(None, feeds)
                dt = time.perf_counter_ns() - t0
                got.append(dt)
                spent += dt
            samples[name] += got
            per_round[name].append(float(np.median(got)))
        rounds += 1
    load.__exit__(None, None, None)
    ms = {
        name: {"p50": float(np.percentile(v, 50)) / 1e6, "p10": float(np.percentile(v, 10)) / 1e6, "n": len(v)}
        for name, v in samples.items()
    }
    batch = int(next(iter(feeds.values())).shape[0])
    return {
        "threads": threads,
        "batch": batch,
        "rounds": rounds,
        "ms": ms,
        "warmup_s": warmup_s,
        "cpu": cpu_model(),
        "other_cpu_share": load.other_share,
        "spread_known": known,
        "_per_round": {k: np.asarray(v) for k, v in per_round.items()},
    }


def speedup(result: dict, slow: str, fast: str) -> float:
    """How many times faster `fast` ran than `slow` (> 1: faster): the median over rounds of the ratio of the
    two models' times within the same round, so load that comes and goes between rounds cancels out."""
    r = result["_per_round"]
    return float(np.median(r[slow] / r[fast]))


def speedup_interval(result: dict, slow: str, fast: str) -> dict:
    """`speedup` with its spread: {"ratio", "lo", "hi", "rounds"} (a 95% interval of the median ratio)."""
    r = result["_per_round"]
    return paired_ratio([float(x) for x in r[slow]], [float(x) for x in r[fast]])
