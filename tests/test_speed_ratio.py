"""Gate vs bench INT8 speed: each ratio comes with its spread, and the two are compared (injected timings only:
nothing here times anything for real)."""

from __future__ import annotations

import random

import pytest

from edgetl.runtime.ratio import disagreement, median_interval, paired_ratio, spread_known


def _rounds(n, ms, noise, seed):
    rng = random.Random(seed)
    return [ms * (1 + rng.uniform(-noise, noise)) for _ in range(n)]


def test_median_interval_brackets_the_median_and_narrows_with_more_values():
    few = median_interval(_rounds(20, 10.0, 0.2, 0))
    many = median_interval(_rounds(2000, 10.0, 0.2, 0))
    assert few[0] < 10.0 < few[1] and many[0] < 10.0 < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 4
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few values: all of them


def test_paired_ratio_cancels_load_that_hits_both_models_of_a_round():
    load = [1.0, 3.0, 1.5, 2.5, 1.2, 2.8, 1.0, 2.0]  # the machine's load changes from round to round
    r = paired_ratio([10 * x for x in load], [6 * x for x in load])
    assert r["ratio"] == pytest.approx(10 / 6) and r["lo"] == pytest.approx(10 / 6) == r["hi"]


def test_spread_known_only_once_the_interval_is_tight():
    tight = {"fp32": _rounds(60, 10.0, 0.02, 1), "try0": _rounds(60, 6.0, 0.02, 2)}
    loose = {"fp32": _rounds(60, 10.0, 0.6, 1), "try0": _rounds(60, 6.0, 0.6, 2)}
    assert spread_known(tight, "fp32", 0.05)
    assert not spread_known(loose, "fp32", 0.05)


class _Clock:
    """An injected perf counter: each `run` of a fake session advances it by that model's next duration."""

    def __init__(self, durations):
        self.now, self.durations = 0, durations

    def perf_counter_ns(self):
        return self.now

    def perf_counter(self):
        return self.now / 1e9


def _fake_compare(monkeypatch, noise):
    import edgetl.quantize.speed as speed

    rngs = {"fp32": random.Random(1), "int8": random.Random(2)}
    base = {"fp32": 10e6, "int8": 6e6}
    clock = _Clock(None)

    class Session:
        def __init__(self, name):
            self.name = name

        def run(self, _outputs, _feeds):
            clock.now += int(base[self.name] * (1 + rngs[self.name].uniform(-noise, noise)))

    monkeypatch.setattr(speed, "time", clock)
    monkeypatch.setattr(speed, "_session", lambda path, threads: Session(str(path)))
    import numpy as np

    feeds = {"x": np.zeros((1, 3), np.float32)}
    return speed.compare_latency(
        {"fp32": "fp32", "int8": "int8"}, feeds, threads=1, budget_s=0.5, warmup_s=0.0, min_rounds=5
    )


def test_gate_timing_adds_rounds_until_the_ratios_spread_is_known(monkeypatch):
    from edgetl.quantize.speed import SPREAD_CAP, speedup_interval

    calm = _fake_compare(monkeypatch, noise=0.02)
    noisy = _fake_compare(monkeypatch, noise=0.9)
    assert calm["spread_known"] and calm["rounds"] < 40  # 0.5 s budget at 16 ms a round: about 31 rounds
    iv = speedup_interval(calm, "fp32", "int8")
    assert iv["lo"] < 10 / 6 < iv["hi"] and (iv["hi"] - iv["lo"]) / 2 / iv["ratio"] <= 0.05
    # a noisy machine: rounds go on past the budget, up to its cap, and the result says the spread stayed wide
    assert noisy["rounds"] > 2 * calm["rounds"] and not noisy["spread_known"]
    assert noisy["rounds"] <= SPREAD_CAP * 0.5e9 / 16e6 * 1.5 + 2


def _lat(p50, lo, hi):
    return {"p50_ms": p50, "p50_lo_ms": lo, "p50_hi_ms": hi}


def test_bench_warns_when_its_ratio_and_the_gates_disagree_beyond_their_spread():
    """The issue's text fine-tune: gate x1.67, bench x1.12 and no warning. Now: one line with both spreads."""
    from edgetl.bench.harness import _add_comparisons

    def rows(int8_p50, threads=2):
        fp32 = {"artifact": "fp32", "kind": "measured", "metrics": {}, "latency_ms": _lat(12.0, 11.8, 12.2)}
        fp32["compute_latency_ms"] = _lat(10.0, 9.9, 10.1)
        int8 = {"artifact": "int8-ort", "kind": "measured", "precision": "int8", "metrics": {}}
        int8["latency_ms"] = _lat(int8_p50 + 2, int8_p50 + 1.9, int8_p50 + 2.1)
        int8["compute_latency_ms"] = _lat(int8_p50, int8_p50 - 0.1, int8_p50 + 0.1)
        int8["gate_speedup"] = {"speedup_vs_fp32": 1.67, "speedup_interval": [1.62, 1.72], "threads": threads}
        out = [fp32, int8]
        _add_comparisons(out, {}, threads=2)
        return out[1]

    agree = rows(6.0)  # x1.67: inside the gate's interval
    assert "speed_warning" not in agree and agree["compute_speedup_vs_fp32"] == pytest.approx(10 / 6)
    assert agree["speedup_interval"][0] < agree["speedup_vs_fp32"] < agree["speedup_interval"][1]
    off = rows(8.93)  # x1.12
    w = off["speed_warning"]
    assert w.startswith("int8-ort vs fp32: export gate x1.67 [1.62-1.72] and bench x1.12 [1.10-1.14]")
    assert "disagree beyond their spread" in w and "interleaved" in w
    assert "gate 4 threads, bench 2" in rows(8.93, threads=4)["speed_warning"]


def test_disagreement_needs_both_spreads():
    assert disagreement({"ratio": 1.6, "lo": 1.5, "hi": 1.7}, {"ratio": 1.1, "lo": None, "hi": None}) is None
    assert disagreement({"ratio": 1.6, "lo": 1.5, "hi": 1.7}, {"ratio": 1.45, "lo": 1.3, "hi": 1.55}) is None
