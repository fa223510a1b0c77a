"""Rewrite a torch-exported Q/DQ ONNX (modelopt fake quantization) into the layout ONNX Runtime CPU fuses.

modelopt's Q/DQ is placed for TensorRT: float weights behind QuantizeLinear, float biases, int8 symmetric
activations. ORT's x86 path turns `DQ(x), DQ(w), DQ(bias) -> Conv -> Q` into an integer QLinearConv only when
activations are uint8, every Conv input (the bias too) comes from a DequantizeLinear, and the weights are
constants. Each rewrite here keeps the numbers (up to the int32 rounding of biases, far below one output step):

- weights: QuantizeLinear of a float initializer folded into an int8 initializer (also 4x smaller files);
- biases: int32 with scale = input scale x weight scale, zero point 0, behind a DequantizeLinear;
- activations: int8 zero point 0 -> uint8 zero point 128, same scale (identical values, shifted).

One rewrite adds quantization (only with calibration data): modelopt quantizes layer inputs only, so a
convolution that feeds a residual Add (MobileNet's linear bottleneck) has no Q after it and ORT would run it
as a float convolution. `quantize_residual_adds` puts a uint8 Q/DQ (range from the calibration sample) on
such outputs and feeds the Add's other input through the Q/DQ that input already has, so ORT fuses the
convolution into QLinearConv and the Add into QLinearAdd, like its own static quantization does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class _Graph:
    """Initializers by name (Constant nodes turned into initializers) and producers/consumers by tensor."""

    def __init__(self, model):
        from onnx import numpy_helper

        g = model.graph
        self.g = g
        for n in [n for n in g.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"]:
            t = n.attribute[0].t
            t.name = n.output[0]
            g.initializer.append(t)
            g.node.remove(n)
        self.init = {i.name: i for i in g.initializer}
        self.arr = lambda name: numpy_helper.to_array(self.init[name])
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def add(self, array: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        while name in self.init:
            name += "_"
        t = numpy_helper.from_array(array, name)
        self.g.initializer.append(t)
        self.init[name] = t
        return name

    def prune(self) -> None:
        """Drop nodes whose outputs nobody reads (e.g. a Cast a rewired input left behind), then initializers."""
        outputs = {x.name for x in self.g.output}
        while True:
            used = {i for n in self.g.node for i in n.input} | outputs
            dead = [n for n in self.g.node if not any(o in used for o in n.output)]
            if not dead:
                break
            for n in dead:
                self.g.node.remove(n)
        used = {i for n in self.g.node for i in n.input} | outputs
        keep = [i for i in self.g.initializer if i.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)


def fold_weight_quantization(gr: _Graph) -> int:
    """QuantizeLinear(float initializer) -> an int8 initializer feeding the DequantizeLinear directly."""
    n = 0
    for q in [q for q in gr.g.node if q.op_type == "QuantizeLinear" and q.input[0] in gr.init]:
        if len(q.input) < 3 or q.input[1] not in gr.init or q.input[2] not in gr.init:
            continue
        w, scale, zp = gr.arr(q.input[0]), gr.arr(q.input[1]), gr.arr(q.input[2])
        if zp.dtype != np.int8:
            continue
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[axis] = scale.size
        qi = np.rint(w / scale.reshape(shape)) + zp.astype(np.float64).reshape(shape)
        name = gr.add(np.clip(qi, -128, 127).astype(np.int8), q.input[0] + "_quantized")
        for c in gr.consumers.get(q.output[0], []):
            c.input[list(c.input).index(q.output[0])] = name
        gr.g.node.remove(q)
        n += 1
    return n


def quantize_biases(gr: _Graph) -> int:
    """Float Conv/Gemm biases -> int32 (scale = input scale x weight scale) behind a DequantizeLinear."""
    from onnx import helper

    n = 0
    for node in [x for x in gr.g.node if x.op_type in ("Conv", "Gemm") and len(x.input) == 3]:
        dq_x, dq_w = gr.producer.get(node.input[0]), gr.producer.get(node.input[1])
        if (
            node.input[2] not in gr.init
            or dq_x is None
            or dq_w is None
            or dq_x.op_type != "DequantizeLinear"
            or dq_w.op_type != "DequantizeLinear"
            or dq_x.input[1] not in gr.init
            or dq_w.input[1] not in gr.init
        ):
            continue
        bias = gr.arr(node.input[2]).astype(np.float64)
        sx, sw = gr.arr(dq_x.input[1]).astype(np.float64), gr.arr(dq_w.input[1]).astype(np.float64)
        if sx.size != 1 or bias.ndim != 1 or sw.size not in (1, bias.size):
            continue
        scale = (sx.reshape(()) * sw.reshape(-1)).astype(np.float32)
        scale = np.where(scale == 0, np.float32(1.0), scale)
        qb = np.clip(np.rint(bias / np.broadcast_to(scale, bias.shape)), -(2**31), 2**31 - 1).astype(np.int32)
        base = node.input[2]
        q_name = gr.add(qb, base + "_int32")
        s_name = gr.add(scale if scale.size > 1 else scale.reshape(()), base + "_scale")
        out = base + "_dequantized"
        attrs = {"axis": 0} if scale.size > 1 else {}
        dq = helper.make_node(
            "DequantizeLinear", [q_name, s_name], [out], name=(node.name or base) + "_bias_dq", **attrs
        )
        gr.g.node.insert(list(gr.g.node).index(node), dq)
        node.input[2] = out
        n += 1
    return n


def uint8_activations(gr: _Graph) -> int:
    """Activation Q/DQ pairs with an int8 zero point 0 -> uint8 with zero point 128 (same scale).

    round(x/s) + 128 saturated to [0, 255] is round(x/s) saturated to [-128, 127] shifted by 128: identical
    values after DequantizeLinear. Weight Q/DQ (int8 initializers) stay int8.
    """
    n = 0
    for q in [q for q in gr.g.node if q.op_type == "QuantizeLinear"]:
        if q.input[0] in gr.init or len(q.input) < 3 or q.input[2] not in gr.init:
            continue
        zp = gr.arr(q.input[2])
        if zp.dtype != np.int8 or zp.size != 1 or zp.reshape(-1)[0] != 0:
            continue
        dqs = gr.consumers.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" or list(d.input[1:3]) != list(q.input[1:3]) for d in dqs):
            continue
        name = gr.add(np.full(zp.shape, 128, np.uint8), (q.name or q.output[0]) + "_zero_point_u8")
        q.input[2] = name
        for d in dqs:
            d.input[2] = name
        n += 1
    return n


def _tensor_ranges(model, names: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """(min, max) of intermediate tensors over the calibration feeds, from the Q/DQ model as it is."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for f in feeds:
        for n, a in zip(names, sess.run(names, f)):
            lo[n], hi[n] = min(lo[n], float(a.min())), max(hi[n], float(a.max()))
    return {n: (lo[n], hi[n]) for n in names}


def quantize_residual_adds(gr: _Graph, model, feeds: list[dict[str, np.ndarray]]) -> int:
    """Q/DQ (uint8, calibrated range) after each Q/DQ convolution whose only consumers are Adds; each such
    Add's other input read through its existing Q/DQ when it has one. Returns the convolutions changed."""
    from onnx import TensorProto, helper

    q_of = {q.input[0]: q for q in gr.g.node if q.op_type == "QuantizeLinear"}
    convs = []
    for c in gr.g.node:
        cons = gr.consumers.get(c.output[0], []) if c.op_type == "Conv" else []
        p = gr.producer.get(c.input[0]) if c.op_type == "Conv" else None
        if (
            cons
            and p is not None
            and p.op_type == "DequantizeLinear"
            and c.output[0] not in q_of
            and all(x.op_type == "Add" for x in cons)
        ):
            convs.append(c)
    if not convs:
        return 0
    ranges = _tensor_ranges(model, [c.output[0] for c in convs], feeds)
    for c in convs:
        t = c.output[0]
        lo, hi = min(ranges[t][0], 0.0), max(ranges[t][1], 0.0)
        scale = np.float32((hi - lo) / 255.0 if hi > lo else 1.0)
        zp = np.uint8(np.clip(np.rint(-lo / scale), 0, 255))
        s_name, z_name = gr.add(np.array(scale), t + "_scale"), gr.add(np.array(zp), t + "_zero_point")
        q = helper.make_node("QuantizeLinear", [t, s_name, z_name], [t + "_q"], name=(c.name or t) + "_out_q")
        dq = helper.make_node(
            "DequantizeLinear", [t + "_q", s_name, z_name], [t + "_dq"], name=(c.name or t) + "_out_dq"
        )
        at = list(gr.g.node).index(c) + 1
        gr.g.node.insert(at, dq)
        gr.g.node.insert(at, q)
        for add in gr.consumers[t]:
            for i, name in enumerate(add.input):
                if name == t:
                    add.input[i] = t + "_dq"
                else:  # the skip input: read it through the Q/DQ its other consumer already uses
                    src = name
                    while (
                        gr.producer.get(src) is not None
                        and gr.producer[src].op_type == "Cast"
                        and gr.producer[src].attribute[0].i == TensorProto.FLOAT
                    ):  # float -> float no-op
                        src = gr.producer[src].input[0]
                    dqs = (
                        [d for d in gr.consumers.get(q_of[src].output[0], []) if d.op_type == "DequantizeLinear"]
                        if src in q_of
                        else []
                    )
                    if dqs:
                        add.input[i] = dqs[0].output[0]
    return len(convs)


def to_ort_cpu_layout(path: Path, calib_feeds: list[dict[str, np.ndarray]] | None = None) -> dict[str, int]:
    """Apply the rewrites to the ONNX file at `path` in place; returns how many of each. Residual Adds are
    quantized only when `calib_feeds` are given."""
    import onnx

    model = onnx.load(str(path))
    gr = _Graph(model)
    counts = {
        "weights_folded": fold_weight_quantization(gr),
        "biases_int32": quantize_biases(gr),
        "activations_uint8": uint8_activations(gr),
    }
    del model.graph.value_info[:]  # stale: some tensors changed type (int8 -> uint8); ORT infers them again
    if calib_feeds:
        counts["residual_convs_quantized"] = quantize_residual_adds(gr, model, calib_feeds)
    gr.prune()
    onnx.checker.check_model(model)
    tmp = Path(path).with_suffix(".cpu.tmp.onnx")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return counts
