"""Latency estimate from an ONNX graph and a device profile: a per-kernel roofline, labelled "estimated".

Three parts, each with one job:
  graph     shapes fixed (batch first), kernels with their FLOPs and bytes (`analyze_graph`)
  rules     how each runtime fuses nodes into kernels (TensorRT for GPU/Jetson profiles, ONNX Runtime for CPUs)
  roofline  time per kernel from the profile's peaks, efficiencies and overheads (`estimate_latency`)
and `fit` (`fit_profile`), which calibrates a profile's efficiencies and overheads on measured latencies.

How it counts (all of it is an approximation; the result is never a measurement):

1. Shapes: the ONNX is shape-inferred with the batch dimension of every input fixed to `batch` (other named
   dims from `dims`). A model exported with a fixed batch can only be estimated at that batch (the default).
2. Kernels: nodes are grouped the way the target runtime fuses them (rules.py): a Conv/Gemm/MatMul ("anchor")
   absorbs the element-wise epilogue that consumes its only output (TensorRT: any point-wise op, x * Sigmoid(x)
   patterns included; ONNX Runtime: only what its CPU fusions take). Reshape-like ops are free. Q/DQ nodes are
   free under TensorRT; under ONNX Runtime only around ops it has INT8 kernels for.
3. FLOPs per kernel: Conv 2*N*Cout*prod(out_spatial)*(Cin/group)*prod(kernel) (+1 per output for a bias);
   Gemm/MatMul 2*M*N*K; element-wise ops a small per-element cost; pooling out*prod(kernel).
4. Bytes per kernel: every tensor it reads or writes outside the group, weights included, at the precision's
   width (fp32 4, fp16 2, int8 1; Q/DQ graphs: the quantized width behind fused Q/DQ nodes).
5. Time per kernel: max(flops / (peak[prec] * efficiency[prec]), bytes / (bandwidth * efficiency.memory))
   + overhead (node_overhead_us for Conv/Gemm/MatMul kernels, pointwise_overhead_us for the others).
   The total is the sum (no overlap between kernels, batch 1 style).

Efficiencies and the per-kernel overhead come from the profile: calibrated on one machine for cpu-x86-64 (with
`fit_profile`), assumptions elsewhere (see each profile's `sources`). Import: onnx + numpy only, no torch.
"""

from __future__ import annotations

from edgetl.bench.estimate.fit import fit_profile
from edgetl.bench.estimate.graph import PRECISIONS, GraphAnalysis, KernelEstimate, analyze_graph, detect_precision
from edgetl.bench.estimate.roofline import Estimate, RooflineParams, estimate_latency, kernel_ms, runtime_for, total_ms
from edgetl.bench.estimate.rules import RUNTIMES

__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "Estimate",
    "GraphAnalysis",
    "KernelEstimate",
    "RooflineParams",
    "analyze_graph",
    "detect_precision",
    "estimate_latency",
    "fit_profile",
    "kernel_ms",
    "runtime_for",
    "total_ms",
]
