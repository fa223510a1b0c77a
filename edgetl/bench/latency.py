"""The one timing harness every bench backend uses (ONNX Runtime, TensorRT, PyTorch, remote devices).

`fn` must block until its work is done (a GPU backend synchronises its stream inside `fn`); the harness
only calls it and reads `time.perf_counter_ns()` around each call. Warm-up is by time, not by count, so
that lazy initialisation, allocator growth and clock ramp-up are over before anything is recorded.

Import-light on purpose (stdlib only): the device side runs it with nothing but numpy + onnxruntime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from edgetl.errors import EdgetlError
from edgetl.runtime.ratio import median_interval

__all__ = [
    "LatencyStats",
    "ThroughputPoint",
    "measure_latency",
    "measure_throughput",
    "percentile",
    "stats_from_samples",
]


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds over `iters` timed calls (after `warmup_iters` untimed ones)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    iters: int
    warmup_iters: int = 0
    total_s: float = 0.0
    p50_lo_ms: float | None = None  # ~95% interval of the p50 (order statistics): the spread of a speed ratio
    p50_hi_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:  # for logs: one line
        return (
            f"p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f}, p99 {self.p99_ms:.3f}, "
            f"mean {self.mean_ms:.3f} ± {self.std_ms:.3f}, min {self.min_ms:.3f} ({self.iters} iters)"
        )


@dataclass(frozen=True)
class ThroughputPoint:
    """Latency of one call at `batch` items, and the items per second it implies (from the median)."""

    batch: int
    latency: LatencyStats
    items_per_s: float

    def to_dict(self) -> dict:
        return {"batch": self.batch, "items_per_s": self.items_per_s, "latency": self.latency.to_dict()}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted values, linear interpolation between closest ranks.

    Same definition as `numpy.percentile(..., method="linear")`.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def stats_from_samples(samples_ns: Iterable[int], *, warmup_iters: int = 0, total_s: float = 0.0) -> LatencyStats:
    """Summarise raw per-call durations in nanoseconds (e.g. read back from a device) as `LatencyStats`."""
    ms = sorted(s / 1e6 for s in samples_ns)
    if not ms:
        raise ValueError("no latency samples")
    n = len(ms)
    mean = sum(ms) / n
    # population standard deviation: these are all the samples there are, not an estimate of a wider set
    std = math.sqrt(sum((x - mean) ** 2 for x in ms) / n)
    lo, hi = median_interval(ms)
    return LatencyStats(
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=mean,
        std_ms=std,
        min_ms=ms[0],
        max_ms=ms[-1],
        iters=n,
        warmup_iters=warmup_iters,
        total_s=total_s,
        p50_lo_ms=lo,
        p50_hi_ms=hi,
    )


def _check_args(warmup_s: float, min_iters: int, max_iters: int, budget_s: float) -> None:
    if not (isinstance(warmup_s, (int, float)) and warmup_s >= 0):
        raise EdgetlError(f"warmup_s must be >= 0 seconds, got {warmup_s!r}")
    if not (isinstance(min_iters, int) and min_iters >= 1):
        raise EdgetlError(f"min_iters must be an integer >= 1, got {min_iters!r}")
    if not (isinstance(max_iters, int) and max_iters >= min_iters):
        raise EdgetlError(f"max_iters must be an integer >= min_iters ({min_iters}), got {max_iters!r}")
    if not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise EdgetlError(f"budget_s must be > 0 seconds, got {budget_s!r}")


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup_s: float = 1.0,
    min_iters: int = 30,
    max_iters: int = 1000,
    budget_s: float = 5.0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> LatencyStats:
    """Time `fn()` per call.

    Warm-up: call `fn` (at least once) until `warmup_s` seconds have passed; nothing is recorded.
    Timed: call `fn` until `budget_s` seconds of timed calls have passed, but never fewer than `min_iters`
    calls (so a slow model may exceed the budget) nor more than `max_iters`.
    `clock` is injectable for tests; it must return nanoseconds.
    """
    _check_args(warmup_s, min_iters, max_iters, budget_s)
    warmup_ns = int(warmup_s * 1e9)
    budget_ns = int(budget_s * 1e9)

    warmup_iters = 0
    start = clock()
    while True:
        fn()
        warmup_iters += 1
        if clock() - start >= warmup_ns:
            break

    samples: list[int] = []
    spent = 0
    while len(samples) < max_iters and (len(samples) < min_iters or spent < budget_ns):
        t0 = clock()
        fn()
        dt = clock() - t0
        samples.append(dt)
        spent += dt
    return stats_from_samples(samples, warmup_iters=warmup_iters, total_s=spent / 1e9)


def measure_throughput(
    fn_for_batch: Callable[[int], Callable[[], object]],
    batch_sizes: Sequence[int],
    budget_s: float = 10.0,
    *,
    warmup_s: float = 0.5,
    min_iters: int = 10,
    max_iters: int = 1000,
) -> list[ThroughputPoint]:
    """Latency and items/s for each batch size.

    `fn_for_batch(b)` prepares everything for batch `b` (inputs, bindings) outside the timed loop and returns
    the callable to time. `budget_s` is the total timed budget, split evenly across the batch sizes.
    """
    sizes = list(batch_sizes)
    if not sizes:
        raise EdgetlError("batch_sizes is empty: give at least one batch size")
    for b in sizes:
        if not (isinstance(b, int) and b >= 1):
            raise EdgetlError(f"batch size must be an integer >= 1, got {b!r}")
    if len(set(sizes)) != len(sizes):
        raise EdgetlError(f"batch_sizes has duplicates: {sizes}")
    if not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise EdgetlError(f"budget_s must be > 0 seconds, got {budget_s!r}")
    per_batch = budget_s / len(sizes)
    points = []
    for b in sizes:
        fn = fn_for_batch(b)
        stats = measure_latency(fn, warmup_s=warmup_s, min_iters=min_iters, max_iters=max_iters, budget_s=per_batch)
        rate = b / (stats.p50_ms / 1e3) if stats.p50_ms > 0 else float("inf")
        points.append(ThroughputPoint(batch=b, latency=stats, items_per_s=rate))
    return points
