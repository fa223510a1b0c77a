"""ONNX Runtime INT8 for CPUs: static Q/DQ for CNNs, dynamic for transformers.

Static (`OrtStaticQuantizer`): per-channel S8 weights, U8 asymmetric activations: the combination that lets
ONNX Runtime fuse every Conv into QLinearConv on x86. Calibrate once, re-quantize many: `calibrate()`
collects activation ranges one time; `quantize(out, nodes_to_exclude)` then rebuilds the Q/DQ model in about
a second, which is what the accuracy gate's search needs.

Dynamic (`OrtDynamicQuantizer`): INT8 weights (per output channel) ahead of time, activations quantized per
call: the CPU path for BERT-style encoders, where static Q/DQ collapses accuracy. Same re-quantize interface.

Without VNNI, x86 u8s8 kernels can saturate 16-bit intermediates, so weights use 7 bits there (reduce_range);
the choice is made for the exporting CPU and recorded in the settings.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.quantize import ort_api
from edgetl.quantize.cpu_features import has_vnni, needs_reduce_range
from edgetl.runtime.artifacts import int8_artifact_for

log = logging.getLogger("edgetl")

METHODS = int8_artifact_for("cpu").calibration  # the catalogue's: the one list of what ORT calibrates with

# Static Q/DQ: ORT quantizes a tensor when any node next to it is quantized (a Conv quantizes its input and
# output, not only its weight). "Passthrough" ops only carry their input's quantization along (or are removed,
# like Relu/Clip with asymmetric activations) and are never worth excluding on their own; every other node that
# the quantizer handles is a candidate for staying in float.
PASSTHROUGH_OPS = frozenset(
    {
        "Relu",
        "Clip",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "MaxPool",
        "AveragePool",
        "Slice",
        "Pad",
        "Split",
        "Resize",
        "TopK",
        "Flatten",
        "Identity",
        "Dropout",
    }
)
DYNAMIC_OPS = ("MatMul", "Gemm")


def preprocess_model(fp32_path: Path, out_path: Path, text: bool = False) -> Path:
    """ORT's quant_pre_process (shape inference + graph clean-up), then unshare weight/bias initializers.

    Text encoders with dynamic batch and sequence axes break symbolic shape inference: skipped for them.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=text)
    except Exception as exc:  # ORT raises assorted types from shape inference
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgetlError(f"{fp32_path}: ONNX Runtime quantization pre-processing failed: {first[:200]}") from None
    model = onnx.load(str(out_path))
    if unshare_initializers(model):
        onnx.save(model, str(out_path))
    return Path(out_path)


def unshare_initializers(model, op_types=("Conv", "ConvTranspose", "Gemm", "MatMul")) -> int:
    """Give each weight/bias input of `op_types` its own initializer copy; returns how many were copied.

    An exporter may deduplicate equal initializers (e.g. zero biases). When one user is quantized and another
    is kept in float, the float one would otherwise read the quantized node's INT32 bias.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    copied = 0
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for pos, name in enumerate(node.input):
            if pos == 0 or name not in inits:
                continue
            if name in seen:
                new = f"{name}__{node.name or node.output[0]}_{pos}"
                model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[name]), new))
                node.input[pos] = new
                copied += 1
            else:
                seen.add(name)
    return copied


def _nodes(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


class OrtStaticQuantizer:
    def __init__(
        self,
        fp32_path: Path,
        calib_feeds: list[dict[str, np.ndarray]],
        method: str = "minmax",
        per_channel: bool = True,
        reduce_range: bool | None = None,
        text: bool = False,
        extra_options: dict | None = None,
        path: str = "auto",
        memoize: bool = True,
    ):
        """`path` picks how ORT is driven (ort_api.static_paths(); "auto" = fastest available), `memoize`
        the weight memo; neither changes the model written."""
        if method not in METHODS:
            raise EdgetlError(f"calibration method {method!r}: allowed {', '.join(METHODS)}")
        if not calib_feeds:
            raise EdgetlError("INT8 calibration needs at least one batch of training examples")
        self.fp32_path = Path(fp32_path)
        self.feeds = calib_feeds
        self.method = method
        self.per_channel = per_channel
        self.reduce_range = needs_reduce_range() if reduce_range is None else reduce_range
        self.text = text
        self.extra_options = dict(extra_options or {})
        self._tmp = tempfile.TemporaryDirectory(prefix="edgetl-ortq-")
        self.pre_path = preprocess_model(self.fp32_path, Path(self._tmp.name) / "pre.onnx", text)
        self.ranges = None
        self.path, self.memoize, self.ort_path = path, memoize, None
        self.keep_float: list[str] = []  # always in float (a detector's decoding: edgetl.quantize.float_tail)
        self._weight_cache: dict = {}

    def settings(self) -> dict:
        return {
            "backend": "onnxruntime",
            "format": "QDQ",
            "mode": "static",
            "activations": "uint8 asymmetric",
            "weights": "int8 symmetric",
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "reduce_range_reason": _reduce_range_reason(self.reduce_range),
            "calibration_method": self.method,
            "calibration_batches": len(self.feeds),
            "calibration_samples": int(sum(next(iter(f.values())).shape[0] for f in self.feeds)),
            "target": "cpu",
            **({"ort_path": self.ort_path} if self.ort_path else {}),
        }

    def candidates(self) -> list[tuple[str, str]]:
        """(node name, op type) of every node whose quantization changes numerics, in graph order."""
        ops = frozenset(ort_api.default_static_ops()) - PASSTHROUGH_OPS
        fixed = set(self.keep_float)
        return [
            (n.name, n.op_type)
            for n in _nodes(self.pre_path).node
            if n.op_type in ops and n.name and n.name not in fixed
        ]

    def units(self, anchors: list[str] | None = None) -> list[dict]:
        """Sensitivity units, one per quantized activation tensor: the nodes that must stay float for that tensor
        to stay float (its producer and all its consumers, through passthrough ops), which also keeps their
        weights float. Anchored at the producing node ("input" for the graph input); `anchors` filters."""
        return tensor_units(_nodes(self.pre_path), self.candidates(), anchors)

    def calibrate(self) -> None:
        self.ranges = ort_api.calibrate(
            self.pre_path, self.feeds, self.method, Path(self._tmp.name), ort_api.default_static_ops()
        )

    def quantize(
        self, out_path: Path, nodes_to_exclude: list[str] | None = None, op_types: list[str] | None = None
    ) -> Path:
        if self.ranges is None:
            self.calibrate()
        self.ort_path = ort_api.quantize_static_qdq(
            self.pre_path,
            Path(out_path),
            feeds=self.feeds,
            method=self.method,
            ranges=self.ranges,
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            nodes_to_exclude=list(dict.fromkeys([*self.keep_float, *(nodes_to_exclude or [])])),
            op_types=op_types or ort_api.default_static_ops(),
            extra_options=self.extra_options,
            work_dir=Path(self._tmp.name),
            path=self.path,
            memo=self._weight_cache if self.memoize else None,
        )
        return Path(out_path)


class OrtDynamicQuantizer:
    """INT8 weights (per channel by default), activations quantized at run time; for transformers on CPU."""

    def __init__(
        self,
        fp32_path: Path,
        per_channel: bool = True,
        reduce_range: bool | None = None,
        op_types: tuple[str, ...] = DYNAMIC_OPS,
        text: bool = True,
        memoize: bool = True,
    ):
        self.fp32_path = Path(fp32_path)
        self.per_channel = per_channel
        self.reduce_range = needs_reduce_range() if reduce_range is None else reduce_range
        self.op_types = tuple(op_types)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgetl-ortd-")
        self.pre_path = preprocess_model(self.fp32_path, Path(self._tmp.name) / "pre.onnx", text=text)
        self.memoize = memoize
        self._weight_cache: dict = {}

    def settings(self) -> dict:
        return {
            "backend": "onnxruntime",
            "format": "dynamic",
            "mode": "dynamic",
            "activations": "uint8 asymmetric, range computed per call",
            "weights": "int8 symmetric",
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "reduce_range_reason": _reduce_range_reason(self.reduce_range),
            "op_types": list(self.op_types),
            "target": "cpu",
        }

    def candidates(self) -> list[tuple[str, str]]:
        """MatMul/Gemm nodes with a constant weight (activation x activation MatMuls stay float anyway)."""
        g = _nodes(self.pre_path)
        inits = {i.name for i in g.initializer}
        return [
            (n.name, n.op_type)
            for n in g.node
            if n.op_type in self.op_types and n.name and any(i in inits for i in n.input[1:])
        ]

    def units(self, anchors: list[str] | None = None) -> list[dict]:
        """Each quantized MatMul alone: dynamic quantization couples no two nodes."""
        keep = set(anchors) if anchors is not None else None
        return [{"anchor": n, "nodes": [n]} for n, _ in self.candidates() if keep is None or n in keep]

    def quantize(self, out_path: Path, nodes_to_exclude: list[str] | None = None) -> Path:
        excluded = list(nodes_to_exclude or [])
        excluded += [f"{n}_MatMul" for n in excluded]  # ORT rewrites Gemm X as MatMul "X_MatMul" + Add first
        ort_api.quantize_dynamic_int8(
            self.pre_path,
            Path(out_path),
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            nodes_to_exclude=excluded,
            op_types=list(self.op_types),
            memo=self._weight_cache if self.memoize else None,
        )
        return Path(out_path)


def tensor_units(graph, candidates: list[tuple[str, str]], anchors: list[str] | None = None) -> list[dict]:
    """[{"anchor": producer node name or "input", "nodes": [names in graph order]}] (see OrtStaticQuantizer.units)."""
    cand = {n for n, _ in candidates}
    order = {n.name: i for i, n in enumerate(graph.node)}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)

    def reach(tensors) -> set[str]:
        found: set[str] = set()
        todo, seen = list(tensors), set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            for c in consumers.get(t, []):
                if c.name in cand:
                    found.add(c.name)
                elif c.op_type in PASSTHROUGH_OPS:
                    todo.extend(c.output)
        return found

    keep = set(anchors) if anchors is not None else None
    units = []
    inits = {i.name for i in graph.initializer}
    first = reach([i.name for i in graph.input if i.name not in inits])
    if first and (keep is None or "input" in keep or first & keep):
        units.append({"anchor": "input", "nodes": sorted(first, key=order.get)})
    for node in graph.node:
        if node.name in cand and (keep is None or node.name in keep):
            units.append({"anchor": node.name, "nodes": sorted({node.name} | reach(node.output), key=order.get)})
    return units


def quantize_dynamic_int8(
    fp32_path: Path,
    out_path: Path,
    nodes_to_exclude: list[str] | None = None,
    op_types: tuple[str, ...] = DYNAMIC_OPS,
    per_channel: bool = True,
    reduce_range: bool | None = None,
) -> Path:
    """One-shot dynamic INT8 (see OrtDynamicQuantizer)."""
    return OrtDynamicQuantizer(fp32_path, per_channel, reduce_range, op_types).quantize(out_path, nodes_to_exclude)


def quantizable_nodes(path: Path, op_types=("Conv", "Gemm", "MatMul")) -> list[str]:
    return [n.name for n in _nodes(Path(path)).node if n.op_type in op_types]


def _reduce_range_reason(reduce_range: bool) -> str:
    if reduce_range:
        return "7-bit weights: the exporting CPU has AVX2/AVX-512 without VNNI (u8s8 saturation)"
    return "full 8-bit weights" + (": the exporting CPU has VNNI" if has_vnni() else "")


def ort_fused_ops(path: Path) -> dict[str, int]:
    """Op counts of the model as ONNX Runtime CPU runs it (after its graph optimizations): how many
    convolutions became integer QLinearConv, how many stayed float -- whatever produced the Q/DQ."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-") as d:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ops: dict[str, int] = {}
        for n in onnx.load(so.optimized_model_filepath).graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return dict(sorted(ops.items()))
