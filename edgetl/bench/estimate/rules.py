"""How each runtime fuses ONNX nodes into kernels: the tables the latency estimate groups a graph by.

TensorRT (GPU and Jetson profiles) fuses any point-wise epilogue into a Conv/Gemm/MatMul and drops every Q/DQ
node; ONNX Runtime's CPU provider fuses only the activations its ConvActivationFusion takes and runs Q/DQ
around ops it has no INT8 kernel for. A new runtime (say TFLite) is a new set of tables here plus its name in
RUNTIMES. The grouping that applies them (`group_nodes`) lives here too; it walks a `graph._Graph`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_ANCHORS = {
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul",
}  # fmt: skip
# element-wise ops a runtime fuses into the preceding anchor's epilogue
_EPILOGUE = {
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "BatchNormalization",
    "Add", "Mul", "Sub", "Div", "Gelu", "Elu", "Selu", "PRelu", "Softplus", "Mish",
}  # fmt: skip
# epilogues ONNX Runtime's CPU provider fuses into Conv/Gemm (ConvActivationFusion, NCHWc Conv+Sum, MatMul+Add)
_EPILOGUE_ORT = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "BatchNormalization", "Add", "Sum"}
# metadata-only or removed by every runtime: no kernel, no bytes
_FREE = {"Shape", "Constant", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout", "Size"}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}
# ops ONNX Runtime turns into an INT8 kernel when their inputs come from DequantizeLinear (QDQ node units);
# around any other op the Q/DQ nodes stay and run as (de)quantisation kernels of their own
_ORT_QDQ_UNITS = {
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "GlobalAveragePool", "AveragePool", "MaxPool",
    "LeakyRelu", "Sigmoid", "Softmax", "Concat", "Where", "Pad", "Resize", "Transpose", "Reshape", "Squeeze",
    "Unsqueeze", "Flatten", "Gather", "Slice", "Expand", "Split", "ArgMax", "Relu", "Clip", "InstanceNormalization",
}  # fmt: skip
RUNTIMES = ("onnxruntime", "tensorrt")


@dataclass
class _Group:
    anchor: object
    nodes: list = field(default_factory=list)
    produced: set = field(default_factory=set)


def _all_fuse(src: str, grp: _Group, g, epilogue: set[str]) -> bool:
    """TensorRT only: `src` has several consumers but all are point-wise ops reading only `grp`'s tensors, each
    other's outputs or weights (e.g. SiLU = x * Sigmoid(x) after a Conv): the whole pattern fuses into the kernel."""
    if g.runtime != "tensorrt":
        return False
    cons = g.data_consumers(src)
    produced_by_cons = {o for c in cons for o in c.output}
    for c in cons:
        if c.op_type not in epilogue:
            return False
        for i in c.input:
            if i and not g.is_weight(i) and g.skip_qdq_up(i) not in grp.produced and i not in produced_by_cons:
                return False
    return True


def group_nodes(g) -> list[_Group]:
    epilogue = _EPILOGUE if g.runtime == "tensorrt" else _EPILOGUE_ORT
    groups: list[_Group] = []
    group_of_tensor: dict[str, _Group] = {}
    for node in g.nodes:
        if g.is_free(node):
            # transparent: its output belongs to the group that produced its input (Q/DQ pairs, reshapes)
            src = node.input[0] if node.input else ""
            if src in group_of_tensor:
                for o in node.output:
                    group_of_tensor[o] = group_of_tensor[src]
            continue
        target = None
        if node.op_type in epilogue:
            for i in node.input:
                if not i or g.is_weight(i):
                    continue
                src = g.skip_qdq_up(i)
                grp = group_of_tensor.get(src)
                if (
                    grp is not None
                    and grp.anchor.op_type in _ANCHORS
                    and src in grp.produced
                    and not g.is_output(src)
                    and (len(g.data_consumers(src)) == 1 or _all_fuse(src, grp, g, epilogue))
                ):
                    target = grp
                    break
        if target is None:
            target = _Group(anchor=node)
            groups.append(target)
        target.nodes.append(node)
        for o in node.output:
            if o:
                target.produced.add(o)
                group_of_tensor[o] = target
    return groups
