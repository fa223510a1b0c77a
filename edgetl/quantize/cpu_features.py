"""What the local x86 CPU offers for INT8 (decides ONNX Runtime's reduce_range)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni() -> bool:
    """AVX512-VNNI / AVX-VNNI / AMX: u8s8 dot products don't saturate, so full 8-bit ranges are safe."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def needs_reduce_range() -> bool:
    """Without VNNI, AVX2/AVX-512 u8s8 kernels can saturate 16-bit intermediates: use 7-bit weights."""
    flags = cpu_flags()
    return bool(flags & {"avx2", "avx512f"}) and not has_vnni()
