"""API-SHAPE TESTS, NOT VERIFICATION: the EfficientNMS_TRT swap on a real exported detection graph.

TensorRT cannot be installed here, so nothing runs the plugin: these tests check the swapped graph's structure
(one plugin node per task, its inputs, attributes and outputs, the untouched trunk) and that `build_engine`
hands TensorRT's parser the swapped copy (a fake `tensorrt` module). Running the engine is the GPU smoke test.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgetl.compile.tensorrt as ct
import edgetl.runtime.tensorrt_backend as tb
from edgetl.compile.efficient_nms import PLUGIN_OP, nms_tasks, swap_in_efficient_nms
from edgetl.errors import EdgetlError

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision.ops")  # imported before tracing: importing it inside a trace fails

TASKS = {  # task -> (classes, score_threshold, iou_threshold, max_detections)
    "det": (3, 0.3, 0.5, 10),
    "faces": (2, 0.25, 0.6, 7),
}
OUTS = ("num_detections", "boxes", "scores", "classes")


class TwoDetectors(torch.nn.Module):
    """Random boxes/scores per task from one conv, through edgetl's real `detect` (ONNX NMS + top-K tail)."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleDict({t: torch.nn.Conv2d(3, 8 + c, 3, padding=1) for t, (c, *_) in TASKS.items()})

    def forward(self, x):
        from edgetl.tasks.detection import detect

        outs = []
        for task, (_, thr, iou, k) in TASKS.items():
            raw = self.convs[task](x).flatten(2).transpose(1, 2)  # [N, A, 8 + C]
            raw = torch.cat([raw[..., :2] * 8, raw[..., :2] * 8 + raw[..., 2:4].exp() * 4, raw[..., 4:]], -1)
            outs += detect(raw, SimpleNamespace(score_threshold=thr, iou_threshold=iou, max_detections=k))
        return tuple(outs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nms") / "model.fp32.onnx"
    names = [f"{t}/{o}" for t in TASKS for o in OUTS]
    with warnings.catch_warnings():  # tracer warnings about detect's eager-only branches
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TwoDetectors().eval(),
            (torch.randn(2, 3, 8, 8),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=names,
            dynamic_axes={"images": {0: "batch"}},
        )
    return path


def _producers(graph):
    return {o: n for n in graph.node for o in n.output}


def _nms_of(graph, task):
    """The original NMS node whose forward cone reaches task's outputs, and its constants."""
    producers = _producers(graph)
    seen, todo, found = set(), [f"{task}/{o}" for o in OUTS], []
    while todo:
        node = producers.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        found += [node] if node.op_type == "NonMaxSuppression" else []
        todo += list(node.input)
    (nms,) = found

    def const(name):
        for t in graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t).reshape(-1)[0]
        return numpy_helper.to_array(producers[name].attribute[0].t).reshape(-1)[0]

    return nms, int(const(nms.input[2])), float(const(nms.input[3])), float(const(nms.input[4]))


def test_original_loads_in_onnx_runtime(exported):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"images": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)})
    assert outs[0].dtype == np.int32 and outs[0].shape == (2, 1)
    assert outs[1].shape == (2, TASKS["det"][3], 4) and outs[3].dtype == np.int32


def test_swap_replaces_each_tasks_nms_tail_with_one_plugin(exported, tmp_path):
    original = onnx.load(str(exported))
    og = original.graph
    assert Counter(n.op_type for n in og.node)["NonMaxSuppression"] == 2
    assert nms_tasks(exported) == sorted(TASKS)

    out = tmp_path / "model.fp32.trt-nms.onnx"
    report = swap_in_efficient_nms(exported, out, list(TASKS))
    g = onnx.load(str(out)).graph
    ops = Counter(n.op_type for n in g.node)
    assert ops[PLUGIN_OP] == 2
    for gone in ("NonMaxSuppression", "TopK", "ScatterND", "GatherND", "GatherElements", "ReduceSum", "Mod", "Div"):
        assert ops[gone] == 0, gone
    assert len(g.node) < len(og.node)

    # Outputs: the same names, dtypes and shapes, in the same order.
    assert [o.SerializeToString() for o in g.output] == [o.SerializeToString() for o in og.output]
    assert [i.SerializeToString() for i in g.input] == [i.SerializeToString() for i in og.input]
    dtypes = {o.name: o.type.tensor_type.elem_type for o in g.output}

    og_producers, producers = _producers(og), _producers(g)
    for task in TASKS:
        nms, k, iou, thr = _nms_of(og, task)
        (plugin,) = [n for n in g.node if n.op_type == PLUGIN_OP and n.name == f"{task}/efficient_nms"]
        assert plugin.domain == ""
        assert list(plugin.output) == [f"{task}/{o}" for o in OUTS]
        assert dtypes[f"{task}/num_detections"] == dtypes[f"{task}/classes"] == TensorProto.INT32
        assert dtypes[f"{task}/boxes"] == dtypes[f"{task}/scores"] == TensorProto.FLOAT
        # Inputs: the NMS node's boxes, and the scores before the [0, 2, 1] Transpose feeding the NMS.
        transpose = og_producers[nms.input[1]]
        assert transpose.op_type == "Transpose" and list(transpose.attribute[0].ints) == [0, 2, 1]
        assert list(plugin.input) == [nms.input[0], transpose.input[0]]
        assert producers[plugin.input[0]].SerializeToString() == og_producers[nms.input[0]].SerializeToString()
        attrs = {a.name: helper.get_attribute_value(a) for a in plugin.attribute}
        assert attrs == {
            "plugin_version": b"1",
            "background_class": -1,
            "max_output_boxes": k,
            "score_threshold": pytest.approx(thr),
            "iou_threshold": pytest.approx(iou),
            "score_activation": 0,
            "class_agnostic": 0,
            "box_coding": 0,
        }
        assert (k, iou, thr) == (TASKS[task][3], pytest.approx(TASKS[task][2]), pytest.approx(TASKS[task][1]))
        r = report[task]
        assert (r["max_output_boxes"], r["iou_threshold"], r["score_threshold"]) == (k, iou, thr)
        assert r["removed_nodes"] > 10

    # Everything the plugins read is the original trunk, node for node (the Convs included).
    kept = [n for n in g.node if n.op_type != PLUGIN_OP]
    original_nodes = {n.SerializeToString() for n in og.node}
    assert all(n.SerializeToString() in original_nodes for n in kept)
    convs = [n.SerializeToString() for n in g.node if n.op_type == "Conv"]
    assert convs == [n.SerializeToString() for n in og.node if n.op_type == "Conv"] and len(convs) == 2
    assert (
        {t.name for t in og.initializer}
        >= {t.name for t in g.initializer}
        >= {n.input[1] for n in og.node if n.op_type == "Conv"}
    )
    # No dangling tensors, no dead nodes.
    have = {i.name for i in g.input} | {t.name for t in g.initializer} | {""} | set(producers)
    assert all(i in have for n in g.node for i in n.input)
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    assert all(any(o in read for o in n.output) for n in g.node)


def test_scores_not_from_a_transpose_get_one(tmp_path):
    """A hand-made NMS graph whose scores input is a graph input: the plugin reads it through a new Transpose."""
    k, iou, thr = 5, 0.45, 0.2
    nodes = [
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([k], np.int64))),
        helper.make_node("Constant", [], ["iou"], value=numpy_helper.from_array(np.array([iou], np.float32))),
        helper.make_node("NonMaxSuppression", ["boxes", "scores_cba", "k", "iou", "thr"], ["sel"], center_point_box=0),
        helper.make_node("Shape", ["sel"], ["s"]),
        helper.make_node("Cast", ["s"], ["t/num_detections"], to=TensorProto.INT32),
        helper.make_node("Identity", ["boxes"], ["t/boxes"]),
        helper.make_node("Cast", ["sel"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["sf"], ["t/scores"]),
        helper.make_node("Cast", ["sel"], ["t/classes"], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
            helper.make_tensor_value_info("scores_cba", TensorProto.FLOAT, [1, 2, 6]),
        ],
        [
            helper.make_tensor_value_info("t/num_detections", TensorProto.INT32, [1, 1]),
            helper.make_tensor_value_info("t/boxes", TensorProto.FLOAT, [1, k, 4]),
            helper.make_tensor_value_info("t/scores", TensorProto.FLOAT, [1, k]),
            helper.make_tensor_value_info("t/classes", TensorProto.INT32, [1, k]),
        ],
        [numpy_helper.from_array(np.array([thr], np.float32), "thr")],
    )
    src = tmp_path / "hand.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    report = swap_in_efficient_nms(src, tmp_path / "out" / "hand.trt-nms.onnx", ["t"])
    g = onnx.load(str(tmp_path / "out" / "hand.trt-nms.onnx")).graph
    assert [n.op_type for n in g.node] == ["Transpose", PLUGIN_OP]
    transpose, plugin = g.node
    assert list(transpose.input) == ["scores_cba"] and list(transpose.attribute[0].ints) == [0, 2, 1]
    assert list(plugin.input) == ["boxes", transpose.output[0]]
    assert not g.initializer  # the score threshold initializer is dead once read into the attribute
    assert report == {
        "t": {
            "max_output_boxes": k,
            "iou_threshold": pytest.approx(iou),
            "score_threshold": pytest.approx(thr),
            "removed_nodes": 9,
        }
    }


def _one_line_error(fn) -> str:
    with pytest.raises(EdgetlError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_nms_or_outputs_is_a_one_line_error(exported, tmp_path):
    out = tmp_path / "x.onnx"
    msg = _one_line_error(lambda: swap_in_efficient_nms(exported, out, ["nope"]))
    assert "model.fp32.onnx" in msg and "nope/num_detections" in msg

    # The four outputs exist but no NonMaxSuppression feeds them.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], [f"t/{o}"]) for o in OUTS],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1])],
        [helper.make_tensor_value_info(f"t/{o}", TensorProto.INT32, [1, 1]) for o in OUTS],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(plain))
    msg = _one_line_error(lambda: swap_in_efficient_nms(plain, out, ["t"]))
    assert "plain.onnx" in msg and "NonMaxSuppression" in msg
    assert nms_tasks(plain) == []
    assert not out.exists()


# ------------------------------------------------------------------------------- build_engine hand-off


def _fake_trt(seen: list) -> types.ModuleType:
    """Just enough TensorRT 10 for build_engine to reach the parser; the parse then fails to stop the build."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.NetworkDefinitionCreationFlag = type("NetworkDefinitionCreationFlag", (), {})

    class ILogger:
        def __init__(self):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            return object()

    class OnnxParser:
        num_errors = 1

        def __init__(self, network, logger):
            pass

        def get_error(self, i):
            return SimpleNamespace(desc=lambda: "fake: stop after parsing")

        def parse_from_file(self, path):
            seen.append(("parse", Path(path), Counter(n.op_type for n in onnx.load(path).graph.node)))
            return False

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    trt.init_libnvinfer_plugins = lambda logger, namespace: seen.append(("init_plugins", namespace))
    return trt


@pytest.mark.parametrize("with_nms", [True, False])
def test_build_engine_parses_a_swapped_copy(exported, tmp_path, monkeypatch, with_nms):
    seen: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(seen))
    monkeypatch.setattr(tb, "_LOGGERS", {})
    monkeypatch.setattr(ct, "detect_gpu_for_build", lambda device=0: {"gpu_name": "Fake", "compute_capability": "8.7"})
    if with_nms:
        src = exported
    else:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["images"], ["y"])],
            "g",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        )
        src = tmp_path / "plain.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))

    msg = _one_line_error(lambda: ct.build_engine(src, tmp_path / "model.engine"))
    assert src.name in msg and "fake: stop after parsing" in msg
    parses = [s for s in seen if s[0] == "parse"]
    assert len(parses) == 1
    _, parsed, ops = parses[0]
    if with_nms:
        assert seen[0] == ("init_plugins", "")
        assert parsed.name == "model.fp32.trt-nms.onnx" and parsed.parent != src.parent
        assert ops[PLUGIN_OP] == 2 and ops["NonMaxSuppression"] == 0
        assert not parsed.exists()  # the temp copy is gone after parsing
    else:
        assert parsed == src and [s[0] for s in seen] == ["parse"]
    assert not (tmp_path / "model.engine").exists()
