"""edgetl.quantize: ONNX Runtime static/dynamic INT8, sensitivity units, FP16, side-by-side latency.

Small models built here (torch or onnx.helper); everything runs on the CPU in seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgetl.errors import EdgetlError
from edgetl.evaluate.metrics import task_drops
from edgetl.quantize import cpu_features
from edgetl.quantize.fp16 import convert_fp16
from edgetl.quantize.gate import k_schedule, output_damage
from edgetl.quantize.ort_int8 import (
    OrtDynamicQuantizer,
    OrtStaticQuantizer,
    ort_fused_ops,
    tensor_units,
    unshare_initializers,
)
from edgetl.quantize.speed import compare_latency, speedup

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


class SmallCNN(torch.nn.Module):
    """Stem, a depthwise-separable block with a residual Add, pooling, classifier: the MobileNet pattern."""

    def __init__(self):
        super().__init__()
        c = 16
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, c, 3, 2, 1), torch.nn.BatchNorm2d(c), torch.nn.ReLU6())
        self.dw = torch.nn.Sequential(
            torch.nn.Conv2d(c, c, 3, 1, 1, groups=c), torch.nn.BatchNorm2d(c), torch.nn.ReLU6()
        )
        self.pw = torch.nn.Sequential(torch.nn.Conv2d(c, c, 1), torch.nn.BatchNorm2d(c))
        self.head = torch.nn.Linear(c, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.pw(self.dw(x))
        return self.head(x.mean(dim=(2, 3)))


def _export(model, args, path: Path, names, outputs, dynamic):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=outputs,
            dynamic_axes=dynamic,
        )
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = SmallCNN().eval()
    for mod in m.modules():  # realistic BatchNorm statistics, so folding gives non-trivial weights
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    p = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    return _export(m, (torch.zeros(2, 3, 32, 32),), p, ["input"], ["cls"], {"input": {0: "b"}, "cls": {0: "b"}})


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def _run(path: Path, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _weight_is_dequantized(model: onnx.ModelProto, node_name: str) -> bool:
    producers = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    p = producers.get(node.input[1])
    return p is not None and p.op_type == "DequantizeLinear"


# ------------------------------------------------------------------------------------------------ static
def test_static_int8_fuses_every_conv_and_keeps_accuracy(cnn, tmp_path):
    calib = [{"input": _images(16, s)} for s in range(2)]
    q = OrtStaticQuantizer(cnn, calib, method="minmax")
    out = q.quantize(tmp_path / "int8.onnx")
    model = onnx.load(str(out))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3 and all(_weight_is_dequantized(model, n.name) for n in convs)
    # per-channel S8 weights: one scale per output channel; U8 activations
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    w_dq = producers[convs[0].input[1]]
    assert inits[w_dq.input[0]].dtype == np.int8 and inits[w_dq.input[1]].shape == (16,)
    act_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    assert inits[act_q.input[2]].dtype == np.uint8
    # ONNX Runtime turns every Q/DQ Conv into an integer QLinearConv (the fast CPU path)
    ops = ort_fused_ops(out)
    assert ops.get("QLinearConv", 0) == 3 and "Conv" not in ops and "FusedConv" not in ops
    x = {"input": _images(64, 9)}
    ref, got = _run(cnn, x), _run(out, x)
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.9
    s = q.settings()
    assert s["per_channel"] and s["calibration_method"] == "minmax" and s["calibration_samples"] == 32
    assert s["reduce_range"] == cpu_features.needs_reduce_range()


def test_requantize_with_excluded_node_keeps_its_weight_float(cnn, tmp_path):
    q = OrtStaticQuantizer(cnn, [{"input": _images(8, 0)}])
    q.calibrate()
    ranges = q.ranges
    names = [n for n, op in q.candidates() if op == "Conv"]
    q.quantize(tmp_path / "a.onnx", [names[1]])
    model = onnx.load(str(tmp_path / "a.onnx"))
    assert not _weight_is_dequantized(model, names[1])
    assert _weight_is_dequantized(model, names[0]) and _weight_is_dequantized(model, names[2])
    assert q.ranges is ranges  # calibrated once, re-quantized many times
    # re-quantizing reuses memoized weight scales: byte-identical to what a fresh quantizer builds
    q.quantize(tmp_path / "b.onnx", [names[1]])
    fresh = OrtStaticQuantizer(cnn, [{"input": _images(8, 0)}])
    fresh.ranges = ranges
    fresh.quantize(tmp_path / "c.onnx", [names[1]])
    assert (
        (tmp_path / "b.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes() == (tmp_path / "a.onnx").read_bytes()
    )
    assert q._weight_cache and fresh._weight_cache is not q._weight_cache


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_run(cnn, tmp_path, method):
    q = OrtStaticQuantizer(cnn, [{"input": _images(8, 1)}], method=method)
    out = q.quantize(tmp_path / f"{method}.onnx")
    x = {"input": _images(32, 2)}
    assert np.isfinite(_run(out, x)).all()
    assert q.settings()["calibration_method"] == method


def test_bad_calibration_method_and_empty_set_are_one_line_errors(cnn):
    with pytest.raises(EdgetlError, match="calibration method 'kl'"):
        OrtStaticQuantizer(cnn, [{"input": _images(2, 0)}], method="kl")
    with pytest.raises(EdgetlError, match="at least one batch"):
        OrtStaticQuantizer(cnn, [], method="minmax")


def test_unshare_initializers_gives_each_conv_its_own_bias():
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y1"], name="c1"),
        helper.make_node("Conv", ["y1", "w", "b"], ["y2"], name="c2"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w, b],
    )
    m = helper.make_model(g)
    assert unshare_initializers(m) == 2
    c1, c2 = m.graph.node
    assert c1.input[1] != c2.input[1] and c1.input[2] != c2.input[2]
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    np.testing.assert_array_equal(inits[c1.input[1]], inits[c2.input[1]])
    onnx.checker.check_model(m)
    assert unshare_initializers(m) == 0


def test_tensor_units_follow_passthrough_ops():
    """A unit is the set of nodes that must stay float for one activation tensor to stay float."""

    def conv(i, o, name):
        return helper.make_node("Conv", [i, f"w_{name}"], [o], name=name)

    nodes = [
        conv("x", "a", "c1"),
        helper.make_node("Relu", ["a"], ["a2"], name="r1"),
        helper.make_node("MaxPool", ["a2"], ["p"], name="mp", kernel_shape=[2, 2]),
        conv("p", "b", "c2"),
        conv("p", "c", "c3"),
        helper.make_node("Add", ["b", "c"], ["d"], name="add"),
        helper.make_node("Sigmoid", ["d"], ["e"], name="sig"),
        conv("e", "f", "c4"),
    ]
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), f"w_c{i}") for i in range(1, 5)]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, None)],
        inits,
    )
    cands = [(n.name, n.op_type) for n in nodes if n.op_type in ("Conv", "Add", "Sigmoid")]
    units = {u["anchor"]: u["nodes"] for u in tensor_units(g, cands)}
    assert units["input"] == ["c1"]
    assert units["c1"] == ["c1", "c2", "c3"]  # through Relu and MaxPool to both consumers
    assert units["c2"] == ["c2", "add"] and units["add"] == ["add", "sig"]
    assert units["c4"] == ["c4"]  # graph output
    only = tensor_units(g, cands, anchors=["c2", "c3"])
    assert [u["anchor"] for u in only] == ["c2", "c3"]


# ------------------------------------------------------------------------------------------------ dynamic
class TinyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q = torch.nn.Linear(32, 32)
        self.k = torch.nn.Linear(32, 32)
        self.ff = torch.nn.Linear(32, 64)
        self.out = torch.nn.Linear(64, 3)

    def forward(self, x):
        att = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), dim=-1) @ x  # activation x activation
        return self.out(torch.relu(self.ff(att)).mean(1))


def test_dynamic_quantizer_candidates_exclusion_and_accuracy(tmp_path):
    torch.manual_seed(0)
    p = _export(
        TinyEncoder().eval(),
        (torch.zeros(2, 5, 32),),
        tmp_path / "enc.onnx",
        ["x"],
        ["cls"],
        {"x": {0: "b", 1: "s"}, "cls": {0: "b"}},
    )
    q = OrtDynamicQuantizer(p)
    cands = [n for n, _ in q.candidates()]
    assert len(cands) == 4  # the four Linear layers; the two attention MatMuls have no constant weight
    assert [u["nodes"] for u in q.units()] == [[c] for c in cands]
    x = {"x": np.random.default_rng(0).standard_normal((16, 7, 32)).astype(np.float32)}
    ref = _run(p, x)
    full = _run(q.quantize(tmp_path / "d.onnx"), x)
    assert output_damage({"t": ref}, {"t": full}, {"t": "classification"}) < 0.01
    q.quantize(tmp_path / "d1.onnx", [cands[-1]])
    model = onnx.load(str(tmp_path / "d1.onnx"))
    assert cands[-1] == "/out/Gemm"  # ORT turns it into MatMul "/out/Gemm_MatMul" + Add: still excluded
    remaining = [n for n in model.graph.node if n.name.startswith(cands[-1])]
    assert remaining and {n.op_type for n in remaining} <= {"MatMul", "Add", "Gemm"}  # left as float ops
    ops = {n.op_type for n in model.graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    s = q.settings()
    assert s["mode"] == "dynamic" and s["per_channel"] is True


# ------------------------------------------------------------------------------------------------ fp16
def test_fp16_keeps_io_fp32_by_default_and_matches(cnn, tmp_path):
    settings_ = convert_fp16(cnn, tmp_path / "h.onnx")
    m = onnx.load(str(tmp_path / "h.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    big = [i for i in m.graph.initializer if numpy_helper.to_array(i).size > 8]
    assert big and all(i.data_type == TensorProto.FLOAT16 for i in big)
    x = {"input": _images(8, 3)}
    np.testing.assert_allclose(_run(tmp_path / "h.onnx", x), _run(cnn, x), atol=2e-2, rtol=2e-2)
    assert settings_["keep_io_types"] and settings_["io_dtype"] == "float32"


def test_fp16_io_when_asked(cnn, tmp_path):
    s = convert_fp16(cnn, tmp_path / "h16.onnx", keep_io_types=False)
    sess = ort.InferenceSession(str(tmp_path / "h16.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float16)" and sess.get_outputs()[0].type == "tensor(float16)"
    x = _images(4, 4)
    got = sess.run(None, {"input": x.astype(np.float16)})[0].astype(np.float32)
    np.testing.assert_allclose(got, _run(cnn, {"input": x}), atol=3e-2, rtol=3e-2)
    assert s["io_dtype"] == "float16"


def test_fp16_without_converter_is_one_line_error(cnn, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith("onnxconverter_common"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(EdgetlError, match="pip install onnxconverter-common"):
        convert_fp16(cnn, tmp_path / "x.onnx")


# ------------------------------------------------------------------------------------------------ helpers
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(2, 7), st.floats(0.01, 3.0), st.integers(0, 10_000))
def test_output_damage_is_zero_only_for_identical_outputs(n, k, noise, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, k))
    kinds = {"c": "classification", "m": "multilabel", "r": "regression"}
    ref = {"c": a, "m": a, "r": a}
    assert output_damage(ref, ref, kinds) == pytest.approx(0.0, abs=1e-12)
    b = a + noise * rng.standard_normal((n, k))
    d = {t: output_damage(ref, {t: b}, kinds, [t]) for t in kinds}
    assert all(v > 0 for v in d.values())
    # adding the same constant to every logit does not change a softmax
    assert output_damage({"c": a}, {"c": a + 5.0}, {"c": "classification"}) == pytest.approx(0.0, abs=1e-9)


def test_task_drops_in_points():
    base = {"a": {"accuracy": 0.90}, "r": {"mae": 1.0}}
    new = {"a": {"accuracy": 0.885}, "r": {"mae": 1.5}}
    d = task_drops(base, new, {"a": "classification", "r": "regression"})
    assert d["a"] == pytest.approx(1.5) and d["r"] == pytest.approx(0.5)


def test_k_schedule_is_increasing_and_ends_at_n():
    for n in (1, 2, 5, 17, 64, 300):
        ks = k_schedule(n)
        assert ks[0] == 1 and ks[-1] == n and all(b > a for a, b in zip(ks, ks[1:]))
        assert len(ks) <= 4 + int(np.ceil(np.log(max(n, 1)) / np.log(1.5))) + 1


def test_reduce_range_follows_vnni(monkeypatch):
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: {"avx2", "fma"})
    assert cpu_features.needs_reduce_range()
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert not cpu_features.needs_reduce_range()
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: {"neon"})
    assert not cpu_features.needs_reduce_range()


def _matmul_chain(path: Path, repeats: int) -> Path:
    w = numpy_helper.from_array(np.eye(256, dtype=np.float32) * 0.5, "w")
    nodes, x = [], "x"
    for i in range(repeats):
        nodes.append(helper.make_node("MatMul", [x, "w"], [f"y{i}"], name=f"mm{i}"))
        x = f"y{i}"
    g = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [64, 256])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_compare_latency_ranks_a_model_doing_more_work_as_slower(tmp_path):
    light, heavy = _matmul_chain(tmp_path / "l.onnx", 1), _matmul_chain(tmp_path / "h.onnx", 12)
    x = {"x": np.ones((64, 256), np.float32)}
    res = compare_latency({"heavy": heavy, "light": light}, x, threads=1, budget_s=1.0, min_rounds=5)
    assert res["batch"] == 64 and res["threads"] == 1 and res["rounds"] >= 5
    assert set(res["ms"]) == {"heavy", "light"} and res["ms"]["light"]["n"] == res["ms"]["heavy"]["n"]
    assert speedup(res, "heavy", "light") > 2.0
