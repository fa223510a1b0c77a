"""The roofline estimate: FLOP and byte counts on hand-built graphs, precision detection, scaling, devices."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgetl.bench.devices import get_device_profile
from edgetl.bench.estimate import analyze_graph, detect_precision, estimate_latency
from edgetl.errors import EdgetlError

RNG = np.random.default_rng(0)


def _save(tmp_path, nodes, inputs, outputs, inits, name="m.onnx", opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model) if all(o.type.tensor_type.HasField("shape") for o in outputs) else None
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _init(name, shape, dtype=np.float32):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(dtype), name)


def conv_model(tmp_path, *, cin=3, cout=16, hw=32, k=3, group=1, stride=1, batch="N", relu=False, bias=True):
    inits = [_init("W", (cout, cin // group, k, k))]
    conv_in = ["x", "W"]
    if bias:
        inits.append(_init("B", (cout,)))
        conv_in.append("B")
    nodes = [
        helper.make_node(
            "Conv",
            conv_in,
            ["c"],
            kernel_shape=[k, k],
            pads=[k // 2] * 4,
            strides=[stride] * 2,
            group=group,
            name="conv",
        )
    ]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    else:
        nodes.append(helper.make_node("Identity", ["c"], ["y"], name="id"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, cin, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, cout, None, None])
    return _save(tmp_path, nodes, [x], [y], inits, name=f"conv_{cin}_{cout}_{group}_{batch}.onnx")


def _by_name(kernels, name):
    return next(k for k in kernels if k.name == name)


def test_conv_flops_formula(tmp_path):
    n, cin, cout, hw, k = 1, 3, 16, 32, 3
    path = conv_model(tmp_path, cin=cin, cout=cout, hw=hw, k=k)
    kernels, prec, _, warnings, batch = analyze_graph(path)
    assert prec == "fp32" and not warnings and batch == 1
    conv = _by_name(kernels, "conv")
    expected = 2 * n * cout * hw * hw * cin * k * k + n * cout * hw * hw  # MACs x 2 + bias add
    assert conv.flops == expected
    # bytes: input + weights + bias + output, fp32
    in_b, w_b, b_b, out_b = n * cin * hw * hw * 4, cout * cin * k * k * 4, cout * 4, n * cout * hw * hw * 4
    assert conv.bytes == in_b + w_b + b_b + out_b
    assert conv.weight_bytes == w_b + b_b


def test_strided_conv_counts_output_positions(tmp_path):
    path = conv_model(tmp_path, cin=8, cout=8, hw=32, stride=2, bias=False)
    conv = _by_name(analyze_graph(path)[0], "conv")
    assert conv.flops == 2 * 8 * 16 * 16 * 8 * 9


def test_depthwise_conv(tmp_path):
    c, hw = 32, 28
    path = conv_model(tmp_path, cin=c, cout=c, hw=hw, group=c, bias=False)
    conv = _by_name(analyze_graph(path)[0], "conv")
    assert conv.flops == 2 * c * hw * hw * 1 * 9  # Cin/group = 1
    assert conv.op_type == "Conv (depthwise)"
    dense = _by_name(analyze_graph(conv_model(tmp_path, cin=c, cout=c, hw=hw, bias=False))[0], "conv")
    assert dense.flops == c * conv.flops  # a dense conv does C times the work
    grouped = _by_name(analyze_graph(conv_model(tmp_path, cin=c, cout=c, hw=hw, group=4, bias=False))[0], "conv")
    assert grouped.flops == dense.flops // 4 and grouped.op_type == "Conv"


def test_conv_relu_fuse_into_one_kernel(tmp_path):
    path = conv_model(tmp_path, relu=True)
    kernels = analyze_graph(path)[0]
    assert len(kernels) == 1
    assert kernels[0].nodes == ["conv", "relu"]
    # the intermediate conv output is not written: bytes equal the unfused conv's
    plain = analyze_graph(conv_model(tmp_path))[0]
    assert kernels[0].bytes == plain[0].bytes


def test_silu_fuses_under_tensorrt_not_onnxruntime(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[1, 1], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 16, 16])
    path = _save(tmp_path, nodes, [x], [y], [_init("W", (8, 8, 1, 1))], "silu.onnx")
    trt = analyze_graph(path, runtime="tensorrt").kernels
    assert [k.nodes for k in trt] == [["conv", "sig", "mul"]]
    ort = analyze_graph(path, runtime="onnxruntime").kernels
    assert [k.op_type for k in ort] == ["Conv", "Sigmoid", "Mul"]
    assert sum(k.flops for k in trt) == sum(k.flops for k in ort)
    assert trt[0].bytes < sum(k.bytes for k in ort)  # the fused kernel never writes c or s


def test_matmul_and_gemm(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    inits = [_init("Bm", (8, 16)), _init("Wg", (10, 16)), _init("Cg", (10,))]
    nodes = [
        helper.make_node("MatMul", ["a", "Bm"], ["m"], name="mm"),  # [2,4,8] x [8,16] -> [2,4,16]
        helper.make_node("Softmax", ["m"], ["y"], axis=-1, name="sm"),
        helper.make_node("Reshape", ["m", "shape"], ["r"], name="rs"),
        helper.make_node("Gemm", ["r", "Wg", "Cg"], ["z"], transB=1, name="gemm"),  # [8,16] x [16,10]
    ]
    inits.append(numpy_helper.from_array(np.array([8, 16], dtype=np.int64), "shape"))
    path = _save(tmp_path, nodes, [a], [y, z], inits, name="mm.onnx")
    analysis = analyze_graph(path)
    assert analysis.batch == 2  # a fixed batch is the default
    kernels = analysis.kernels
    assert _by_name(kernels, "mm").flops == 2 * (2 * 4 * 16) * 8
    assert _by_name(kernels, "gemm").flops == 2 * 8 * 10 * 16 + 8 * 10
    assert _by_name(kernels, "sm").flops == 5 * 2 * 4 * 16
    assert not any(k.name == "rs" for k in kernels)  # Reshape is free


def test_batched_attention_matmul(tmp_path):
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", 4, 64, 32])  # heads 4, seq 64, dim 32
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, ["N", 4, 32, 64])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, None)
    path = _save(tmp_path, [helper.make_node("MatMul", ["q", "k"], ["s"], name="qk")], [q, k], [s], [], "att.onnx")
    for b in (1, 3):
        kern = analyze_graph(path, batch=b)[0][0]
        assert kern.flops == 2 * b * 4 * 64 * 64 * 32


def _qdq_conv_model(tmp_path, cin=16, cout=32, hw=16):
    w = RNG.integers(-127, 127, size=(cout, cin, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(w, "Wq"),
        numpy_helper.from_array(np.full(cout, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(cout, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
        numpy_helper.from_array(np.array(0.05, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["Wq", "w_scale", "w_zp"], ["Wd"], axis=0, name="dqw"),
        helper.make_node("Conv", ["xd", "Wd"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["rq"], name="qy"),
        helper.make_node("DequantizeLinear", ["rq", "y_scale", "y_zp"], ["y"], name="dqy"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, hw, hw])
    return _save(tmp_path, nodes, [x], [y], inits, name="qdq.onnx")


def test_int8_qdq_detection_and_bytes(tmp_path):
    cin, cout, hw = 16, 32, 16
    path = _qdq_conv_model(tmp_path, cin, cout, hw)
    assert detect_precision(onnx.load(str(path))) == "int8"
    for runtime in ("tensorrt", "onnxruntime"):
        kernels, prec, *_ = analyze_graph(path, runtime=runtime)
        assert prec == "int8"
        conv = _by_name(kernels, "conv")
        assert conv.precision == "int8"
        assert conv.nodes == ["conv", "relu"]
        # int8 activations in and out, int8 weights: 1 byte each
        assert conv.weight_bytes == cout * cin * 9
        assert conv.bytes == cin * hw * hw + cout * cin * 9 + cout * hw * hw
    # TensorRT fuses every Q/DQ; ONNX Runtime runs the graph-input Q and graph-output DQ as kernels
    assert len(analyze_graph(path, runtime="tensorrt")[0]) == 1
    ort = analyze_graph(path, runtime="onnxruntime")[0]
    assert sorted(k.op_type for k in ort) == ["Conv", "DequantizeLinear", "QuantizeLinear"]
    with pytest.raises(EdgetlError, match="Q/DQ"):
        analyze_graph(path, precision="fp32")


def test_fp16_detection(tmp_path):
    inits = [_init("W", (8, 3, 3, 3), np.float16)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3], name="conv")]
    path = _save(tmp_path, nodes, [x], [y], inits, "fp16.onnx")
    assert detect_precision(onnx.load(str(path))) == "fp16"
    kernels, prec, *_ = analyze_graph(path)
    assert prec == "fp16"
    assert kernels[0].weight_bytes == 8 * 3 * 9 * 2


def test_precision_override_changes_bytes_not_flops(tmp_path):
    path = conv_model(tmp_path, cin=16, cout=16, hw=16)
    k32 = analyze_graph(path, precision="fp32")[0][0]
    k16 = analyze_graph(path, precision="fp16")[0][0]
    k8 = analyze_graph(path, precision="int8")[0][0]
    assert k32.flops == k16.flops == k8.flops
    assert k32.bytes == 2 * k16.bytes == 4 * k8.bytes
    with pytest.raises(EdgetlError, match="precision 'bf16'"):
        analyze_graph(path, precision="bf16")


def test_estimate_scales_with_batch(tmp_path):
    path = conv_model(tmp_path, cin=32, cout=64, hw=56, relu=True)
    prof = get_device_profile("cpu-x86-64")
    e1 = estimate_latency(path, prof, batch=1)
    e8 = estimate_latency(path, prof, batch=8)
    assert e8.gflops == pytest.approx(8 * e1.gflops)
    assert e8.weights_mb == pytest.approx(e1.weights_mb)  # weights are read once
    overhead = sum(k.overhead_ms for k in e1.details)
    assert e8.total_ms - overhead == pytest.approx(8 * (e1.total_ms - overhead), rel=0.05)
    assert e8.total_ms > e1.total_ms


def test_fixed_batch_model_cannot_change_batch(tmp_path):
    path = conv_model(tmp_path, batch=1)
    assert estimate_latency(path, "cpu-x86-64", batch=1).batch == 1
    assert estimate_latency(path, "cpu-x86-64").batch == 1
    with pytest.raises(EdgetlError, match="fixed batch of 1"):
        estimate_latency(path, "cpu-x86-64", batch=2)
    with pytest.raises(EdgetlError, match="batch must be"):
        estimate_latency(path, "cpu-x86-64", batch=0)


def test_unresolved_dim_needs_dims(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y], [], "seq.onnx")
    with pytest.raises(EdgetlError, match="'seq'"):
        analyze_graph(path)
    k = analyze_graph(path, dims={"seq": 10})[0][0]
    assert k.flops == 10 * 8


def test_faster_device_is_faster(tmp_path):
    path = conv_model(tmp_path, cin=64, cout=64, hw=56, relu=True)
    nano = estimate_latency(path, "jetson-orin-nano", precision="fp16")
    agx = estimate_latency(path, "jetson-agx-orin", precision="fp16")
    rtx = estimate_latency(path, "rtx-4090", precision="fp16")
    h100 = estimate_latency(path, "h100-sxm", precision="fp16")
    assert rtx.total_ms < agx.total_ms < nano.total_ms
    assert h100.total_ms < nano.total_ms
    # INT8 on the same device is not slower than FP16
    assert estimate_latency(path, "jetson-orin-nano", precision="int8").total_ms <= nano.total_ms


def test_estimate_result_shape(tmp_path):
    path = conv_model(tmp_path, relu=True)
    e = estimate_latency(path, "jetson-orin")  # aliases work
    assert e.label == "estimated"
    assert e.device == "jetson-orin-nano"
    assert e.precision == "fp32"
    d = json.loads(json.dumps(e.to_dict(details=True)))
    assert d["label"] == "estimated"
    assert set(d) >= {"total_ms", "gflops", "mbytes", "weights_mb", "by_op_type", "details", "assumptions"}
    assert d["by_op_type"]["Conv"]["count"] == 1
    assert d["total_ms"] == pytest.approx(sum(k["total_ms"] for k in d["details"]))
    with pytest.raises(EdgetlError, match="unknown device"):
        estimate_latency(path, "tpu-v9")
    with pytest.raises(EdgetlError, match="not found"):
        estimate_latency(tmp_path / "missing.onnx", "rtx-4090")


def test_torchvision_resnet18_flops(tmp_path):
    """ResNet-18 at 224 px is 1.814 GMACs (torchvision's reference): the count must land on it."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "r18.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17)
    kernels, _, _, warnings, _ = analyze_graph(path, runtime="onnxruntime")
    assert not warnings
    conv_gemm = sum(k.flops for k in kernels if k.op_type in ("Conv", "Gemm"))
    assert conv_gemm / 2 / 1e9 == pytest.approx(1.814, rel=0.01)
    assert sum(1 for k in kernels if k.op_type == "Conv") == 20  # residual Add+Relu fused into the convs


def test_estimate_does_not_import_torch():
    code = "import sys, edgetl.bench.estimate; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------------------------------------ the profile fit
def _fit_rows(tmp_path, profile, truth):
    """Rows 'measured' with known parameters: conv models of several shapes, FP32 and INT8 (Q/DQ)."""
    from edgetl.bench.estimate import total_ms

    rows, kernels = [], {}
    shapes = [(3, 16, 32, 1), (16, 64, 32, 1), (32, 32, 16, 32), (64, 128, 8, 1), (8, 8, 64, 8)]
    for i, (cin, cout, hw, group) in enumerate(shapes):
        path = conv_model(tmp_path, cin=cin, cout=cout, hw=hw, group=group, relu=i % 2 == 0)
        kernels[str(path)] = analyze_graph(path, batch=1, runtime="onnxruntime").kernels
        rows.append({"model": f"conv{i}", "size": hw, "precision": "fp32", "onnx": str(path)})
    q = _qdq_conv_model(tmp_path)
    kernels[str(q)] = analyze_graph(q, batch=1, runtime="onnxruntime").kernels
    rows.append({"model": "qconv", "size": 16, "precision": "int8", "onnx": str(q)})
    for r in rows:
        r["measured_p50_ms"] = total_ms(kernels[r["onnx"]], profile, truth)
    return rows, kernels


def test_fit_profile_recovers_the_latencies_it_was_given(tmp_path):
    """Latencies made by the roofline with known parameters are fitted back to within 1% on every row."""
    from edgetl.bench.estimate import fit_profile
    from edgetl.bench.estimate.fit import params_from

    profile = get_device_profile("cpu-x86-64")
    truth = params_from((0.6, 0.4, 1.0, 4.0, 2.0))  # on the search grid
    rows, kernels = _fit_rows(tmp_path, profile, truth)
    held_out = {"conv4"}
    out = fit_profile(rows, profile, lambda r: kernels[r["onnx"]], lambda r: r["model"] not in held_out)
    assert out["loss"] < 1e-6
    assert {r["model"] for r in out["rows"] if not r["fit"]} == held_out
    assert all(abs(r["error_pct"]) < 1.0 for r in out["rows"] if r["fit"]), out["rows"]
    assert set(out["efficiency"]) == {"fp32", "int8", "memory"} and out["node_overhead_us"] >= 1.0


def test_fit_profile_moves_off_a_bad_start(tmp_path):
    """The control: latencies 3x slower than the shipped profile predicts are fitted, not left at the profile."""
    from edgetl.bench.estimate import RooflineParams, fit_profile, total_ms

    profile = get_device_profile("cpu-x86-64")
    rows, kernels = _fit_rows(tmp_path, profile, RooflineParams.from_profile(profile))
    for r in rows:
        r["measured_p50_ms"] *= 3.0
    shipped = [total_ms(kernels[r["onnx"]], profile, RooflineParams.from_profile(profile)) for r in rows]
    assert all(abs(s / r["measured_p50_ms"] - 1) > 0.5 for s, r in zip(shipped, rows))  # the profile is far off
    out = fit_profile(rows, profile, lambda r: kernels[r["onnx"]], lambda r: True)
    assert max(abs(r["error_pct"]) for r in out["rows"]) < 15.0, out["rows"]


def test_fit_profile_needs_fit_rows(tmp_path):
    from edgetl.bench.estimate import fit_profile

    with pytest.raises(EdgetlError, match="none of the rows"):
        fit_profile([], get_device_profile("cpu-x86-64"), lambda r: [], lambda r: True)


def test_estimate_and_fit_share_one_kernel_formula(tmp_path):
    """estimate_latency's total is the roofline `total_ms` of the same kernels with the profile's parameters."""
    from edgetl.bench.estimate import RooflineParams, total_ms

    profile = get_device_profile("cpu-x86-64")
    path = conv_model(tmp_path, relu=True)
    est = estimate_latency(path, profile, batch=1)
    kernels = analyze_graph(path, batch=1, runtime="onnxruntime").kernels
    assert est.total_ms == pytest.approx(total_ms(kernels, profile, RooflineParams.from_profile(profile)))
