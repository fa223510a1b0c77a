"""How much faster is B than A, and how sure are we: speed ratios with their spread, and whether two agree.

The export gate times FP32 and INT8 interleaved round by round (`edgetl.quantize.speed`): its ratio is the
median of per-round ratios, and its spread a distribution-free 95% interval of that median (order statistics
of the binomial, no normality assumed). `edgetl bench` times one artifact after another: its ratio is the
ratio of the two p50s, and its spread comes from each p50's own interval (`median_interval`), combined at
the extremes. Two measurements of the same pair on the same machine should overlap; when their intervals do
not, `disagreement` says so and names the differences in how they were measured.

Stdlib only: the device side (bench, remote) runs it without numpy or torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def median_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """A ~95% confidence interval of the median of `values` from their order statistics (normal approximation
    of Binomial(n, 1/2) ranks); with fewer than 6 values it spans all of them."""
    v = sorted(values)
    n = len(v)
    if n == 0:
        raise ValueError("median_interval of no values")
    if n < 6:
        return float(v[0]), float(v[-1])
    half = z * math.sqrt(n) / 2
    lo = max(1, math.floor(n / 2 - half))  # 1-based ranks of the bounds
    hi = min(n, math.ceil(1 + n / 2 + half))
    return float(v[lo - 1]), float(v[hi - 1])


def _median(values: Sequence[float]) -> float:
    v = sorted(values)
    n = len(v)
    return float(v[n // 2]) if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def paired_ratio(slow_rounds: Sequence[float], fast_rounds: Sequence[float]) -> dict:
    """{"ratio", "lo", "hi", "rounds"}: how many times faster `fast` ran than `slow`, from the two models'
    times in the same rounds (load that comes and goes between rounds cancels out)."""
    if len(slow_rounds) != len(fast_rounds) or not slow_rounds:
        raise ValueError("paired_ratio needs the same, non-zero number of rounds for both models")
    ratios = [s / f for s, f in zip(slow_rounds, fast_rounds)]
    lo, hi = median_interval(ratios)
    return {"ratio": _median(ratios), "lo": lo, "hi": hi, "rounds": len(ratios)}


def relative_halfwidth(r: dict) -> float:
    """Half the interval's width, as a fraction of the ratio: 0.05 reads "± 5%"."""
    return (r["hi"] - r["lo"]) / 2 / r["ratio"] if r["ratio"] > 0 else math.inf


def spread_known(per_round: dict[str, Sequence[float]], base: str, tol: float) -> bool:
    """Whether every model's ratio against `base` is known to within ± `tol` (relative): the timing loop stops
    adding rounds once it is (or its time cap is reached)."""
    return all(relative_halfwidth(paired_ratio(per_round[base], v)) <= tol for k, v in per_round.items() if k != base)


def unpaired_ratio(slow_p50: float, slow_interval, fast_p50: float, fast_interval) -> dict:
    """The ratio of two p50s timed separately, with the interval their own intervals allow at the extremes."""
    ratio = slow_p50 / fast_p50
    if not slow_interval or not fast_interval or None in (*slow_interval, *fast_interval):
        return {"ratio": ratio, "lo": None, "hi": None}
    return {"ratio": ratio, "lo": slow_interval[0] / fast_interval[1], "hi": slow_interval[1] / fast_interval[0]}


def disagreement(a: dict, b: dict, *, names=("gate", "bench"), differences: Sequence[str] = ()) -> str | None:
    """None when the two ratios' intervals overlap (they agree within their noise); else one line that gives
    both with their spread and what differed between the two measurements (`differences`)."""
    if a.get("lo") is None or b.get("lo") is None or a.get("hi") is None or b.get("hi") is None:
        return None
    if a["lo"] <= b["hi"] and b["lo"] <= a["hi"]:
        return None
    why = "; ".join(differences) if differences else "same settings: the load on the machine changed between them"
    return (
        f"{names[0]} x{a['ratio']:.2f} [{a['lo']:.2f}-{a['hi']:.2f}] and {names[1]} x{b['ratio']:.2f} "
        f"[{b['lo']:.2f}-{b['hi']:.2f}] disagree beyond their spread ({why})"
    )


def fmt(r: dict) -> str:
    """'x1.67 [1.60-1.74]' (95% interval), or 'x1.67' when the spread is unknown."""
    if r.get("lo") is None:
        return f"x{r['ratio']:.2f}"
    return f"x{r['ratio']:.2f} [{r['lo']:.2f}-{r['hi']:.2f}]"
