"""How timings are taken on a CPU, shared by the export gate and `edgetl bench`, and who else used the CPU meanwhile.

The gate's INT8-vs-FP32 ratio and the bench's `x fp32` column are only comparable when both time artifacts the
same way: the same thread count (`default_threads`), the same time-based warm-up (`WARMUP_S`), one session
running at a time. Another process busy on the same cores skews any of them, so each timing records the
share of the CPUs that other processes took (`CpuLoad`), and a share above `BUSY_SHARE` is reported.

Stdlib only: the device side runs it with the light install.
"""

from __future__ import annotations

import os
import time

WARMUP_S = 0.5  # seconds of untimed runs per session before anything is recorded
BUSY_SHARE = 0.15  # other processes' share of all CPUs above which a timing is flagged


def default_threads() -> int:
    """ONNX Runtime's own default is one thread per physical core; we pin it to make runs comparable."""
    return max(1, min(os.cpu_count() or 1, 4))


def _busy_s() -> float | None:
    """Seconds all CPUs of this machine spent busy since boot (/proc/stat), or None where unknown."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(vals) < 4:
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuLoad:
    """`with CpuLoad() as load: ...` then `load.other_share`: the fraction (0..1) of all CPUs' time that other
    processes used during the block (None where /proc/stat is unavailable)."""

    def __enter__(self) -> CpuLoad:
        self._busy0, self._own0, self._t0 = _busy_s(), time.process_time(), time.perf_counter()
        self.other_share: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        busy1, own1, t1 = _busy_s(), time.process_time(), time.perf_counter()
        wall = t1 - self._t0
        if busy1 is None or self._busy0 is None or wall <= 0:
            return
        other = (busy1 - self._busy0) - (own1 - self._own0)
        self.other_share = round(max(0.0, min(1.0, other / (wall * (os.cpu_count() or 1)))), 3)

    @property
    def busy(self) -> bool:
        return self.other_share is not None and self.other_share > BUSY_SHARE


def cpu_model() -> str | None:
    """This machine's CPU as /proc/cpuinfo names it (e.g. 'Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz')."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() in ("model name", "Model") and val.strip():
                    return val.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None
