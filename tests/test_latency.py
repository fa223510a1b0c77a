"""The timing harness: statistics, stopping rules and argument checks, with a fake clock (no sleeping)."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from edgetl.bench.latency import (
    LatencyStats,
    measure_latency,
    measure_throughput,
    percentile,
    stats_from_samples,
)
from edgetl.errors import EdgetlError


class FakeClock:
    """A nanosecond clock that only moves when the fake workload says so."""

    def __init__(self, durations_ms):
        self.now = 0
        self.durations = list(durations_ms)
        self.calls = 0

    def clock(self) -> int:
        return self.now

    def fn(self):
        d = self.durations[self.calls % len(self.durations)]
        self.calls += 1
        self.now += int(d * 1e6)


def test_percentile_matches_numpy_linear():
    rng = random.Random(0)
    for n in (1, 2, 3, 10, 101):
        vals = sorted(rng.uniform(0, 100) for _ in range(n))
        for q in (0, 1, 50, 90, 99, 100):
            assert percentile(vals, q) == pytest.approx(np.percentile(vals, q))


def test_stats_from_samples_math():
    samples_ms = list(range(1, 101))  # 1..100 ms
    random.Random(1).shuffle(samples_ms)
    st = stats_from_samples([int(x * 1e6) for x in samples_ms])
    assert st.iters == 100
    assert st.p50_ms == pytest.approx(50.5)
    assert st.p90_ms == pytest.approx(np.percentile(range(1, 101), 90))  # 90.1
    assert st.p99_ms == pytest.approx(99.01)
    assert st.mean_ms == pytest.approx(50.5)
    assert st.std_ms == pytest.approx(np.std(range(1, 101)))
    assert (st.min_ms, st.max_ms) == (1.0, 100.0)
    d = st.to_dict()
    assert set(d) >= {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "iters"}


def test_measure_latency_excludes_warmup_and_computes_percentiles():
    # warm-up call is slow (500 ms), then 1..50 ms repeating
    fake = FakeClock([500] + list(range(1, 51)))
    st = measure_latency(fake.fn, warmup_s=0.0, min_iters=50, max_iters=50, budget_s=0.001, clock=fake.clock)
    assert st.warmup_iters == 1  # at least one warm-up call, even with warmup_s=0
    assert st.iters == 50
    assert st.max_ms == 50.0  # the 500 ms warm-up call was not recorded
    assert st.p50_ms == pytest.approx(25.5)
    assert st.mean_ms == pytest.approx(25.5)
    assert st.total_s == pytest.approx(sum(range(1, 51)) / 1e3)


def test_warmup_is_by_time():
    fake = FakeClock([10])  # 10 ms per call
    st = measure_latency(fake.fn, warmup_s=0.1, min_iters=5, max_iters=5, budget_s=1.0, clock=fake.clock)
    assert st.warmup_iters == 10  # 10 x 10 ms reaches 0.1 s
    assert st.iters == 5


def test_budget_stops_after_min_iters():
    fake = FakeClock([100])  # 100 ms per call, budget 1 s -> 10 calls
    st = measure_latency(fake.fn, warmup_s=0, min_iters=3, max_iters=1000, budget_s=1.0, clock=fake.clock)
    assert st.iters == 10
    # a slow model still gets min_iters, over budget
    fake = FakeClock([1000])
    st = measure_latency(fake.fn, warmup_s=0, min_iters=7, max_iters=1000, budget_s=1.0, clock=fake.clock)
    assert st.iters == 7
    # and max_iters caps a fast one
    fake = FakeClock([0.001])
    st = measure_latency(fake.fn, warmup_s=0, min_iters=1, max_iters=42, budget_s=10.0, clock=fake.clock)
    assert st.iters == 42


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"warmup_s": -1}, "warmup_s"),
        ({"min_iters": 0}, "min_iters"),
        ({"min_iters": 10, "max_iters": 5}, "max_iters"),
        ({"budget_s": 0}, "budget_s"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, field):
    with pytest.raises(EdgetlError, match=field):
        measure_latency(lambda: None, **kwargs)


def test_measure_throughput_items_per_second(monkeypatch):
    import edgetl.bench.latency as lat

    def fn_for_batch(b):
        return FakeClock([2.0 * b]).fn  # 2 ms per item

    real = lat.measure_latency
    # each workload carries its own fake clock: hand it to measure_latency
    monkeypatch.setattr(lat, "measure_latency", lambda fn, **kw: real(fn, clock=fn.__self__.clock, **kw))
    pts = measure_throughput(fn_for_batch, [1, 4, 8], budget_s=0.3, warmup_s=0, min_iters=3)
    assert [p.batch for p in pts] == [1, 4, 8]
    for p in pts:
        assert isinstance(p.latency, LatencyStats)
        assert p.latency.p50_ms == pytest.approx(2.0 * p.batch)
        assert p.items_per_s == pytest.approx(500.0)
    assert pts[0].to_dict()["items_per_s"] == pytest.approx(500.0)
    with pytest.raises(EdgetlError, match="duplicates"):
        measure_throughput(fn_for_batch, [2, 2])
    with pytest.raises(EdgetlError, match="batch size"):
        measure_throughput(fn_for_batch, [0])
    with pytest.raises(EdgetlError, match="empty"):
        measure_throughput(fn_for_batch, [])


def test_real_clock_smoke():
    st = measure_latency(lambda: sum(range(1000)), warmup_s=0.01, min_iters=5, max_iters=20, budget_s=0.01)
    assert 5 <= st.iters <= 20
    assert 0 < st.min_ms <= st.p50_ms <= st.p99_ms <= st.max_ms


def test_no_torch_import():
    code = "import sys, edgetl.bench.latency; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
