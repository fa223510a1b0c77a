"""Fit a profile's efficiencies and per-kernel overheads to measured latencies (`edgetl.bench.estimate.fit`).

benchmarks/estimate_accuracy.py measures ONNX Runtime latencies and calls `fit_profile`; the result is what a
`calibrated` CPU profile in devices/ records. Grid search, then coordinate descent, minimising the squared log
error of estimate vs measurement over the rows chosen for the fit (the others are held out).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from edgetl.bench.estimate.graph import KernelEstimate
from edgetl.bench.estimate.roofline import RooflineParams, total_ms
from edgetl.errors import EdgetlError

# (fp32 efficiency, int8 efficiency, memory efficiency, node overhead us, point-wise overhead us)
DEFAULT_GRID = {
    "e32": [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "e8": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0],
    "emem": [0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0],
    "ov": [1, 2, 4, 6, 8, 10, 15, 20],
    "ovp": [1, 2, 3, 4, 6, 8],
}
# overheads >= 1 us: a runtime never dispatches a kernel for free (an unconstrained fit drifts to 0)
BOUNDS = [(0.05, 1.0), (0.05, 1.0), (0.05, 4.0), (1.0, 100.0), (1.0, 100.0)]
STEPS = [0.025, 0.025, 0.05, 0.5, 0.25]


def params_from(p: Sequence[float]) -> RooflineParams:
    """CPU fit: FP16 kernels (rare on CPUs) share the FP32 efficiency."""
    e32, e8, emem, ov, ovp = p
    return RooflineParams({"fp32": e32, "fp16": e32, "int8": e8, "memory": emem}, ov, ovp)


def fit_profile(
    rows: Iterable[Mapping],
    profile,
    kernels_of: Callable[[Mapping], list[KernelEstimate]],
    in_fit: Callable[[Mapping], bool],
    grid: Mapping[str, Sequence[float]] | None = None,
) -> dict:
    """Efficiencies and overheads of `profile` that best explain `rows` (each with `measured_p50_ms`).

    `kernels_of(row)`: the row's analysed kernels (`analyze_graph(...).kernels`); `in_fit(row)`: whether the row
    is fitted on (the rest are held out and only reported). Returns the parameters and every row's estimate.
    """
    rows = list(rows)
    fit_rows = [r for r in rows if in_fit(r)]
    if not fit_rows:
        raise EdgetlError("fit: none of the rows chosen for the fit were measured")
    kernels = [kernels_of(r) for r in rows]
    fit_kernels = [k for r, k in zip(rows, kernels) if in_fit(r)]

    def loss(p: Sequence[float]) -> float:
        params = params_from(p)
        return sum(
            math.log(total_ms(ks, profile, params) / r["measured_p50_ms"]) ** 2 for r, ks in zip(fit_rows, fit_kernels)
        )

    p = list(min(itertools.product(*(grid or DEFAULT_GRID).values()), key=loss))
    for _ in range(200):
        improved = False
        for i in range(len(p)):
            for d in (-STEPS[i], STEPS[i]):
                q = list(p)
                q[i] = min(max(q[i] + d, BOUNDS[i][0]), BOUNDS[i][1])
                if loss(q) < loss(p) - 1e-12:
                    p, improved = q, True
        if not improved:
            break
    e32, e8, emem, ov, ovp = (round(v, 3) for v in p)
    params = params_from((e32, e8, emem, ov, ovp))
    out: dict = {
        "efficiency": {"fp32": e32, "int8": e8, "memory": emem},
        "node_overhead_us": ov,
        "pointwise_overhead_us": ovp,
        "loss": loss((e32, e8, emem, ov, ovp)),
        "rows": [],
    }
    for r, ks in zip(rows, kernels):
        est = total_ms(ks, profile, params)
        out["rows"].append(
            {
                **{k: r[k] for k in ("model", "size", "precision") if k in r},
                "fit": in_fit(r),
                "estimate_ms": est,
                "error_pct": (est - r["measured_p50_ms"]) / r["measured_p50_ms"] * 100.0,
            }
        )
    return out
