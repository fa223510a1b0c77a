"""Graph cost: an ONNX graph with fixed shapes, grouped into kernels (by `rules`), with FLOPs and bytes each.

No timing here (that is `roofline`): `analyze_graph` says what each kernel computes and moves.
Import: onnx + numpy only, no torch.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import NamedTuple

from edgetl.bench.estimate.rules import _ANCHORS, _FREE, _ORT_QDQ_UNITS, _QDQ, RUNTIMES, _Group, group_nodes
from edgetl.errors import EdgetlError

PRECISIONS = ("fp32", "fp16", "int8")
_FLOAT_WIDTH = {"fp32": 4, "fp16": 2, "int8": 1}

# onnx.TensorProto element types → bytes per element (4-bit types rounded up to 1)
_DTYPE_BYTES = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
    17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1,
}  # fmt: skip
_FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16

# FLOPs per output element of element-wise (and element-wise-like) ops
_ELEMENTWISE_COST = {
    **dict.fromkeys(
        ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Relu", "Neg", "Abs", "Clip", "LeakyRelu", "PRelu",
         "Where", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor", "Floor",
         "Ceil", "Round", "Sign", "Mod", "Reciprocal", "Sqrt", "Cast", "ThresholdedRelu"],
        1,
    ),
    **dict.fromkeys(["HardSigmoid", "BatchNormalization"], 2),
    "HardSwish": 3,
    **dict.fromkeys(["Sigmoid", "Tanh", "Exp", "Log", "Erf", "Softplus", "Elu", "Selu", "Celu", "Pow", "Sin", "Cos"], 4),
    **dict.fromkeys(["Softmax", "LogSoftmax"], 5),
    **dict.fromkeys(
        ["Gelu", "Mish", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
         "SimplifiedLayerNormalization", "RMSNormalization", "LpNormalization"],
        8,
    ),
}  # fmt: skip
_REDUCE = {
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ArgMax", "ArgMin", "TopK",
    "CumSum",
}  # fmt: skip
_POOL = {"MaxPool", "AveragePool", "LpPool", "QLinearAveragePool"}


@dataclass
class KernelEstimate:
    """One fused kernel: its anchor node, the nodes fused into it, and its roofline terms."""

    name: str
    op_type: str
    nodes: list[str]
    precision: str
    flops: float
    bytes: float
    weight_bytes: float
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    overhead_ms: float = 0.0

    @property
    def is_anchor(self) -> bool:
        """A Conv/Gemm/MatMul kernel (the multi-threaded, launch-heavy kind)."""
        return self.op_type.split(" ")[0] in _ANCHORS

    @property
    def total_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms) + self.overhead_ms

    @property
    def bound(self) -> str:
        return "compute" if self.compute_ms >= self.memory_ms else "memory"


class _Graph:
    """Shapes, dtypes and producer/consumer maps of a shape-inferred top-level ONNX graph."""

    def __init__(self, model, runtime: str = "tensorrt"):
        g = model.graph
        self.nodes = list(g.node)
        self.initializers = {t.name: t for t in g.initializer}
        self.shape: dict[str, tuple[int, ...] | None] = {}
        self.dtype: dict[str, int] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            self.dtype[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                dims = []
                for d in tt.shape.dim:
                    dims.append(d.dim_value if d.HasField("dim_value") else None)
                self.shape[vi.name] = None if any(x is None for x in dims) else tuple(dims)
            else:
                self.shape[vi.name] = None
        for name, t in self.initializers.items():
            self.shape[name] = tuple(t.dims)
            self.dtype[name] = t.data_type
        for n in self.nodes:  # Constant nodes: their value's shape
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value" and a.HasField("t"):
                        self.shape[n.output[0]] = tuple(a.t.dims)
                        self.dtype[n.output[0]] = a.t.data_type
        self.producer = {}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in self.nodes:
            for o in n.output:
                if o:
                    self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.graph_outputs = {o.name for o in g.output}
        self.has_qdq = any(
            n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                          "MatMulInteger")
            for n in self.nodes
        )  # fmt: skip
        self.classify_qdq(runtime)

    def numel(self, name: str) -> int | None:
        s = self.shape.get(name)
        return None if s is None else prod(s)

    def is_weight(self, name: str) -> bool:
        """An initializer or Constant, possibly through DequantizeLinear (a Q/DQ weight), Identity, Cast, Reshape..."""
        if name in self.initializers:
            return True
        p = self.producer.get(name)
        if p is None:
            return False
        if p.op_type == "Constant":
            return True
        if p.op_type in ("DequantizeLinear", "Identity", "Cast", "Reshape", "Transpose", "Unsqueeze"):
            return bool(p.input) and self.is_weight(p.input[0])
        return False

    def classify_qdq(self, runtime: str) -> None:
        """Decide which Q/DQ nodes are free (fused into a neighbour) for `runtime`.

        TensorRT fuses every Q/DQ into the adjacent kernels. ONNX Runtime CPU fuses DQ -> op -> Q into one INT8
        kernel only for ops it has INT8 kernels for, and only when all their activation inputs are dequantized;
        the other Q/DQ nodes (and a graph-input Q / graph-output DQ) run as kernels of their own.
        """
        self.runtime = runtime
        self.free_qdq: set[int] = set()
        for n in self.nodes:
            if n.op_type not in _QDQ:
                continue
            if runtime == "tensorrt" or self.is_weight(n.output[0]):
                self.free_qdq.add(id(n))
            elif n.op_type == "DequantizeLinear":
                cons = self.consumers.get(n.output[0], [])
                if cons and all(self._ort_int8_unit(c) for c in cons):
                    self.free_qdq.add(id(n))
            else:
                p = self.producer.get(n.input[0])
                while p is not None and p.op_type in ("Relu", "Clip"):  # ORT folds these into the Q range
                    p = self.producer.get(p.input[0])
                if p is not None and self._ort_int8_unit(p):
                    self.free_qdq.add(id(n))

    def _ort_int8_unit(self, node) -> bool:
        if node.op_type not in _ORT_QDQ_UNITS:
            return False
        acts = [i for i in node.input if i and not self.is_weight(i)]
        return bool(acts) and all(
            (p := self.producer.get(i)) is not None and p.op_type == "DequantizeLinear" for i in acts
        )

    def is_free(self, node) -> bool:
        return node.op_type in _FREE or id(node) in self.free_qdq

    def skip_qdq_up(self, name: str) -> str:
        """TensorRT: follow DequantizeLinear(QuantizeLinear(x)) back to x (fused Q/DQ pairs are transparent)."""
        seen = 0
        while seen < 8 and self.runtime == "tensorrt":
            p = self.producer.get(name)
            if p is None or p.op_type not in _QDQ or self.is_weight(name):
                return name
            name = p.input[0]
            seen += 1
        return name

    def data_consumers(self, name: str) -> list:
        """Consumers of `name`, looking through free Q/DQ nodes."""
        out = []
        for c in self.consumers.get(name, []):
            if c.op_type in _QDQ and id(c) in self.free_qdq:
                out.extend(self.data_consumers(c.output[0]))
            else:
                out.append(c)
        return out

    def is_output(self, name: str) -> bool:
        """A graph output, directly or through free Q/DQ nodes."""
        if name in self.graph_outputs:
            return True
        return any(
            c.op_type in _QDQ and id(c) in self.free_qdq and self.is_output(c.output[0])
            for c in self.consumers.get(name, [])
        )

    def stored_width(self, name: str, float_width: int) -> int:
        """Bytes per element of `name` as the runtime stores it (quantized if a free Q/DQ sits on it)."""
        p = self.producer.get(name)
        if p is not None and p.op_type == "DequantizeLinear" and id(p) in self.free_qdq:
            return _DTYPE_BYTES.get(self.dtype.get(p.input[0], 3), 1)
        cons = self.consumers.get(name, [])
        if cons and all(c.op_type == "QuantizeLinear" and id(c) in self.free_qdq for c in cons):
            return _DTYPE_BYTES.get(self.dtype.get(cons[0].output[0], 2), 1)
        dt = self.dtype.get(name, 1)
        return float_width if dt in _FLOAT_TYPES else _DTYPE_BYTES.get(dt, 4)


def detect_precision(model) -> str:
    """int8 when the graph has Q/DQ (or QLinear/Integer) ops; fp16 when most float weights are float16; else fp32."""
    g = _Graph(model) if not isinstance(model, _Graph) else model
    if g.has_qdq:
        return "int8"
    n16 = sum(prod(t.dims) for t in g.initializers.values() if t.data_type == 10)
    n32 = sum(prod(t.dims) for t in g.initializers.values() if t.data_type in (1, 11))
    return "fp16" if n16 > n32 else "fp32"


def _load_fixed(onnx_path: str | os.PathLike, batch: int | None, dims: Mapping[str, int] | None):
    """The model with every input dimension fixed (batch first), shape-inferred; and the batch used."""
    import onnx

    p = Path(onnx_path)
    if not p.is_file():
        raise EdgetlError(f"ONNX model not found: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # onnx raises DecodeError / google.protobuf errors
        raise EdgetlError(f"{p}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    dims = dict(dims or {})
    init_names = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names or not inp.type.HasField("tensor_type"):
            continue
        shp = inp.type.tensor_type.shape
        for i, d in enumerate(shp.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                if i == 0 and batch is None:
                    batch = d.dim_value
                elif i == 0 and d.dim_value != batch:
                    raise EdgetlError(
                        f"{p}: input {inp.name!r} has a fixed batch of {d.dim_value}, cannot estimate batch={batch} "
                        "(export with a dynamic batch axis)"
                    )
                continue
            if i == 0:
                batch = 1 if batch is None else batch
                d.Clear()
                d.dim_value = batch
            elif d.HasField("dim_param") and d.dim_param in dims:
                v = dims[d.dim_param]
                d.Clear()
                d.dim_value = int(v)
            else:
                label = d.dim_param or f"dim {i}"
                raise EdgetlError(
                    f"{p}: input {inp.name!r} has an unresolved dimension {label!r}; pass dims={{{label!r}: N}}"
                )
    # let inference recompute output shapes (their symbolic batch names need not match the inputs')
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        raise EdgetlError(f"{p}: ONNX shape inference failed ({type(e).__name__}: {e})") from None
    return model, (1 if batch is None else batch)


# --------------------------------------------------------------------------------------------------- FLOPs


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def node_flops(node, g: _Graph) -> float | None:
    """FLOPs of one node (multiply-add = 2). None when a needed shape is unknown."""
    op = node.op_type
    out = node.output[0] if node.output else ""
    out_n = g.numel(out)
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w_idx = 3 if op == "QLinearConv" else 1
        w = g.shape.get(node.input[w_idx])
        if w is None or out_n is None:
            return None
        flops = 2.0 * out_n * prod(w[1:])  # w[1] is Cin/group already
        bias_idx = 8 if op == "QLinearConv" else 2
        if len(node.input) > bias_idx and node.input[bias_idx]:
            flops += out_n
        return flops
    if op == "ConvTranspose":
        x, w = g.shape.get(node.input[0]), g.shape.get(node.input[1])
        if x is None or w is None:
            return None
        flops = 2.0 * prod(x) * prod(w[1:])  # every input element scatters into Cout/group * prod(k) outputs
        if len(node.input) > 2 and node.input[2] and out_n is not None:
            flops += out_n
        return flops
    if op == "Gemm":
        a, b = g.shape.get(node.input[0]), g.shape.get(node.input[1])
        if a is None or b is None:
            return None
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attr(node, "transB", 0) else b[1]
        flops = 2.0 * m * n * k
        if len(node.input) > 2 and node.input[2]:
            flops += m * n
        return flops
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = g.shape.get(node.input[3 if op == "QLinearMatMul" else 0])
        if a is None or out_n is None:
            return None
        k = a[-1]
        return 2.0 * out_n * k
    if op in _POOL:
        ks = _attr(node, "kernel_shape")
        if out_n is None or ks is None:
            return None
        return float(out_n * prod(ks))
    if op in _REDUCE:
        n = g.numel(node.input[0])
        return None if n is None else float(n)
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        return None if out_n is None else float(out_n * (1 if mode == "nearest" else 4))
    if op == "Einsum":
        return None
    cost = _ELEMENTWISE_COST.get(op)
    if cost is not None:
        return None if out_n is None else float(out_n * cost)
    return 0.0  # data movement (Transpose, Concat, Slice, Gather, Pad, Split, ...): bytes only


# --------------------------------------------------------------------------------------------------- bytes


def _tensor_bytes(name: str, g: _Graph, float_width: int) -> float | None:
    n = g.numel(name)
    return None if n is None else float(n * g.stored_width(name, float_width))


def _kernel_for(group: _Group, g: _Graph, float_width: int, warnings: list[str]) -> KernelEstimate:
    anchor = group.anchor
    flops = 0.0
    for n in group.nodes:
        f = node_flops(n, g)
        if f is None:
            warnings.append(f"{n.op_type} {n.name or n.output[0]}: unknown shape, counted as 0 FLOPs")
            f = 0.0
        flops += f
    inside = group.produced
    members = {id(n) for n in group.nodes}
    reads: set[str] = set()
    for n in group.nodes:
        for i in n.input:
            if i and g.skip_qdq_up(i) not in inside and i not in inside:
                reads.add(i)
    writes = set()
    for o in inside:
        ext = [c for c in g.data_consumers(o) if id(c) not in members]
        if ext or g.is_output(o):
            writes.add(o)
    total = 0.0
    wbytes = 0.0
    for t in reads | writes:
        b = _tensor_bytes(t, g, float_width)
        if b is None:
            warnings.append(f"tensor {t}: unknown shape, counted as 0 bytes")
            b = 0.0
        total += b
        if t in reads and g.is_weight(t):
            wbytes += b
    op_type = anchor.op_type
    if op_type in ("Conv", "QLinearConv", "ConvInteger"):
        grp = _attr(anchor, "group", 1)
        w = g.shape.get(anchor.input[3 if op_type == "QLinearConv" else 1])
        if grp > 1 and w is not None and w[1] == 1:
            op_type = f"{op_type} (depthwise)"
    return KernelEstimate(
        name=anchor.name or anchor.output[0],
        op_type=op_type,
        nodes=[n.name or n.output[0] for n in group.nodes],
        precision="",
        flops=flops,
        bytes=total,
        weight_bytes=wbytes,
    )


def _kernel_precision(group: _Group, g: _Graph, precision: str, graph_float: str) -> str:
    """int8 for an anchor fed by DequantizeLinear (Q/DQ graph) or any kernel when int8 is forced on a float graph."""
    if not g.has_qdq:
        return precision
    a = group.anchor
    if a.op_type in ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"):
        return "int8"
    if a.op_type in _ANCHORS and a.input:
        p = g.producer.get(a.input[0])
        if p is not None and p.op_type == "DequantizeLinear":
            return "int8"
    return graph_float


class GraphAnalysis(NamedTuple):
    kernels: list[KernelEstimate]
    precision: str
    assumptions: list[str]
    warnings: list[str]
    batch: int


def analyze_graph(
    onnx_path: str | os.PathLike,
    *,
    precision: str | None = None,
    batch: int | None = None,
    dims: Mapping[str, int] | None = None,
    runtime: str = "tensorrt",
) -> GraphAnalysis:
    """Kernels with FLOPs and bytes (no timing), the precision used, assumptions and warnings.

    `runtime` decides what fuses: "tensorrt" (GPU/Jetson profiles) or "onnxruntime" (CPU profiles).
    """
    if runtime not in RUNTIMES:
        raise EdgetlError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if batch is not None and not (isinstance(batch, int) and batch >= 1):
        raise EdgetlError(f"batch must be an integer >= 1, got {batch!r}")
    if precision is not None and precision not in PRECISIONS:
        raise EdgetlError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    model, batch = _load_fixed(onnx_path, batch, dims)
    g = _Graph(model, runtime)
    detected = detect_precision(g)
    assumptions: list[str] = []
    warnings: list[str] = []
    if precision is None:
        precision = detected
        assumptions.append(f"precision {precision} detected from the graph")
    elif g.has_qdq and precision != "int8":
        raise EdgetlError(
            f"{onnx_path}: the model has INT8 Q/DQ nodes, so precision {precision!r} cannot apply; omit it or pass int8"
        )
    if g.has_qdq:
        n16 = sum(prod(t.dims) for t in g.initializers.values() if t.data_type == 10)
        n32 = sum(prod(t.dims) for t in g.initializers.values() if t.data_type in (1, 11))
        graph_float = "fp16" if n16 > n32 else "fp32"
        float_width = _FLOAT_WIDTH[graph_float]
        assumptions.append(f"Q/DQ graph: quantized kernels at int8, the rest at {graph_float}")
    else:
        graph_float = precision
        float_width = _FLOAT_WIDTH[precision]
        if precision != detected:
            assumptions.append(f"{detected} graph estimated as if the runtime runs it at {precision}")
    if any(n.op_type in ("If", "Loop", "Scan") for n in g.nodes):
        warnings.append("control-flow subgraphs (If/Loop/Scan) are not counted")
    kernels = []
    for grp in group_nodes(g):
        k = _kernel_for(grp, g, float_width, warnings)
        k.precision = _kernel_precision(grp, g, precision, graph_float)
        kernels.append(k)
    return GraphAnalysis(kernels, precision, assumptions, warnings, batch)
