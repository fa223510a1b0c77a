"""Roofline time per kernel from a device profile, and `estimate_latency` (labelled "estimated", never measured).

Time per kernel: max(flops / (peak[precision] * efficiency[precision]), bytes / (bandwidth * efficiency.memory))
+ a per-kernel overhead (Conv/Gemm/MatMul kernels vs the others). One formula (`kernel_ms`) serves the estimate
and the profile fit (`fit.fit_profile`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from edgetl.bench.estimate.graph import KernelEstimate, analyze_graph
from edgetl.errors import EdgetlError


@dataclass(frozen=True)
class RooflineParams:
    """The fitted part of a profile: efficiency per precision (+ memory) and the per-kernel overheads (us)."""

    efficiency: Mapping[str, float]
    node_overhead_us: float
    pointwise_overhead_us: float

    @classmethod
    def from_profile(cls, profile) -> RooflineParams:
        eff = profile.efficiency
        return cls(
            {"int8": eff.int8, "fp16": eff.fp16, "fp32": eff.fp32, "memory": eff.memory},
            profile.overhead_us(True),
            profile.overhead_us(False),
        )


def kernel_ms(k: KernelEstimate, profile, params: RooflineParams) -> tuple[float, float, float]:
    """(compute, memory, overhead) milliseconds of one kernel on `profile` with `params`."""
    peak = profile.peak_ops_per_s(k.precision) * params.efficiency[k.precision]
    bw = profile.memory_bandwidth_gbs * 1e9 * params.efficiency["memory"]
    overhead_us = params.node_overhead_us if k.is_anchor else params.pointwise_overhead_us
    return k.flops / peak * 1e3, k.bytes / bw * 1e3, overhead_us / 1e3


def total_ms(kernels: list[KernelEstimate], profile, params: RooflineParams) -> float:
    """Sum over kernels of max(compute, memory) + overhead (no overlap between kernels, batch-1 style)."""
    total = 0.0
    for k in kernels:
        c, m, o = kernel_ms(k, profile, params)
        total += max(c, m) + o
    return total


@dataclass
class Estimate:
    """The estimate for one (model, device, precision, batch). `label` is always "estimated"."""

    model: str
    device: str
    precision: str
    batch: int
    total_ms: float
    gflops: float
    mbytes: float
    weights_mb: float
    kernels: int
    by_op_type: dict[str, dict[str, float]]
    details: list[KernelEstimate] = field(default_factory=list, repr=False)
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label: str = "estimated"

    def to_dict(self, *, details: bool = False) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "details"}
        if details:
            d["details"] = [{**asdict(k), "total_ms": k.total_ms, "bound": k.bound} for k in self.details]
        return d


def runtime_for(profile) -> str:
    """The runtime a profile's estimate models: ONNX Runtime on CPUs, TensorRT on GPUs and Jetsons."""
    return "onnxruntime" if profile.kind == "cpu" else "tensorrt"


def estimate_latency(
    onnx_path: str | os.PathLike,
    profile,
    precision: str | None = None,
    batch: int | None = None,
    *,
    dims: Mapping[str, int] | None = None,
) -> Estimate:
    """Roofline latency estimate of `onnx_path` on `profile` (a `DeviceProfile` or a profile name).

    `batch` None → the model's own batch if it is fixed, else 1. `dims` sets other named input dimensions.
    `precision` None → detected from the graph (Q/DQ → int8, float16 weights → fp16, else fp32). Given for a float
    graph, it estimates the runtime running it at that precision (e.g. a TensorRT FP16 build of an FP32 ONNX).
    """
    from edgetl.bench.devices import DeviceProfile, get_device_profile

    if isinstance(profile, str):
        profile = get_device_profile(profile)
    elif not isinstance(profile, DeviceProfile):
        raise EdgetlError(f"profile must be a DeviceProfile or a device name, got {type(profile).__name__}")
    runtime = runtime_for(profile)
    kernels, precision, assumptions, warnings, batch = analyze_graph(
        onnx_path, precision=precision, batch=batch, dims=dims, runtime=runtime
    )
    assumptions.append(f"kernels fused as {runtime} fuses them")
    eff = profile.efficiency
    params = RooflineParams.from_profile(profile)
    by_op: dict[str, dict[str, float]] = {}
    for k in kernels:
        k.compute_ms, k.memory_ms, k.overhead_ms = kernel_ms(k, profile, params)
        row = by_op.setdefault(k.op_type, {"count": 0, "ms": 0.0, "gflops": 0.0, "mb": 0.0})
        row["count"] += 1
        row["ms"] += k.total_ms
        row["gflops"] += k.flops / 1e9
        row["mb"] += k.bytes / 1e6
    by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]["ms"]))
    assumptions.append(
        f"{profile.name}: efficiency int8 {eff.int8}, fp16 {eff.fp16}, fp32 {eff.fp32}, memory {eff.memory}, "
        f"{profile.overhead_us(True)} us per Conv/Gemm/MatMul kernel, {profile.overhead_us(False)} us per other "
        f"kernel (profile status: {profile.status})"
    )
    return Estimate(
        model=str(onnx_path),
        device=profile.name,
        precision=precision,
        batch=batch,
        total_ms=sum(k.total_ms for k in kernels),
        gflops=sum(k.flops for k in kernels) / 1e9,
        mbytes=sum(k.bytes for k in kernels) / 1e6,
        weights_mb=sum(k.weight_bytes for k in kernels) / 1e6,
        kernels=len(kernels),
        by_op_type=by_op,
        details=kernels,
        assumptions=assumptions,
        warnings=sorted(set(warnings)),
    )
