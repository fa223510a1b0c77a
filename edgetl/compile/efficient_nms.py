"""Swap a detection task's ONNX NonMaxSuppression tail for TensorRT's EfficientNMS_TRT plugin.

Why: edgetl's exported detectors end in the standard ONNX `NonMaxSuppression` operator followed by a fixed
top-K sub-graph (GatherND/ScatterND/TopK/Gather/...) that lays the result out as four tensors per task
`T/num_detections` int32 [B, 1], `T/boxes` float [B, K, 4], `T/scores` float [B, K], `T/classes` int32 [B, K]
(see `edgetl.tasks.detection.detect`). ONNX Runtime runs that graph everywhere, but TensorRT has no fast
`NonMaxSuppression`: its INMSLayer plus the data-dependent top-K tail is slow and awkward to build.
`EfficientNMS_TRT` is the plugin NVIDIA's TensorRT samples and DeepStream use for exactly this job, and it
writes the same four outputs in the same layout, so applications reading `T/...` do not change.

What the swap does, per task T (a prefix whose four `T/...` tensors are graph outputs):
  - finds the one `NonMaxSuppression` node those outputs depend on and reads its constant
    max_output_boxes_per_class (K), iou_threshold and score_threshold inputs;
  - removes it and every node between it and the four outputs, and puts one `EfficientNMS_TRT` node (default
    ONNX domain: TensorRT's ONNX parser looks unknown ops up in its plugin registry by name, with the node's
    attributes as plugin fields) in their place, reading the NMS node's boxes [B, A, 4] and the scores as
    [B, A, C] (the input of the [0, 2, 1] Transpose in front of the NMS, or a new Transpose);
  - drops the nodes left dead (feeding no graph output). Everything before the boxes and scores is untouched.

Plugin attributes, as the EfficientNMS plugin documents them: plugin_version "1", background_class -1,
max_output_boxes K, score_threshold, iou_threshold, score_activation 0 (scores are already probabilities),
class_agnostic 0 (per-class NMS, like ONNX NonMaxSuppression), box_coding 0 (corners x1, y1, x2, y2).

UNVERIFIED: tested against the API shape only (graph structure, attributes, names, dtypes), never run here:
TensorRT cannot be installed on the machines this was written on. Uses `onnx` and `onnx.helper` only.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.detection import PARTS as OUTPUTS
from edgetl.runtime.tasks.detection import part_names

PLUGIN_OP = "EfficientNMS_TRT"
_INT32 = 6  # onnx.TensorProto.INT32
_EXTERNAL_ABOVE = 1 << 30  # weights larger than this are saved as external data (protobuf's 2 GiB limit)


def _constant(graph, name: str, producers: dict[str, Any]) -> Any:
    """The numpy value of `name` when it is an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    node = producers.get(name)
    if node is None or node.op_type != "Constant":
        return None
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return a.f if a.name == "value_float" else a.i
    return None


def _scalar(value: Any, kind: type) -> Any:
    import numpy as np

    arr = np.asarray(value).reshape(-1)
    return kind(arr[0]) if arr.size == 1 else None


def _read_names(nodes) -> set[str]:
    """Every tensor name the nodes read, their If/Loop/Scan bodies included."""
    names: set[str] = set()
    for n in nodes:
        names.update(n.input)
        for a in n.attribute:
            bodies = ([a.g] if a.HasField("g") else []) + list(a.graphs)
            for body in bodies:
                names |= _read_names(body.node) | {o.name for o in body.output}
    return names


def _upstream(names, producers: dict[str, Any], reads) -> set[int]:
    """ids of the nodes the tensors `names` depend on; `reads(node)`: the tensor names a node reads."""
    found: set[int] = set()
    todo = deque(names)
    seen: set[str] = set()
    while todo:
        name = todo.popleft()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in found:
            found.add(id(node))
            todo.extend(i for i in reads(node) if i)
    return found


def _prune(graph) -> int:
    """Remove nodes that feed no graph output; returns how many."""
    producers = {o: n for n in graph.node for o in n.output if o}
    # If/Loop bodies may read outer-scope tensors
    live = _upstream((o.name for o in graph.output), producers, lambda n: _read_names([n]))
    keep = [n for n in graph.node if id(n) in live]
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(keep)
    return removed


def nms_tasks(onnx_path: str | os.PathLike) -> list[str]:
    """Tasks T whose four `T/...` outputs are graph outputs, when the graph holds a NonMaxSuppression node
    ([] otherwise). Reads the graph without its weights."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    if not any(n.op_type == "NonMaxSuppression" for n in graph.node):
        return []
    names = {o.name for o in graph.output}
    suffix = "/" + OUTPUTS[0]
    tasks = [n[: -len(suffix)] for n in names if n.endswith(suffix)]
    return sorted(t for t in tasks if all(n in names for n in part_names(t)))


def _swap_task(graph, task: str, file: str) -> dict[str, Any]:
    from onnx import helper

    out_names = part_names(task)
    graph_outputs = {o.name: o for o in graph.output}
    missing = [n for n in out_names if n not in graph_outputs]
    if missing:
        raise EdgetlError(
            f"{file} has no graph output {', '.join(repr(m) for m in missing)} for detection task {task!r}: "
            "EfficientNMS_TRT replaces the four outputs <task>/num_detections, boxes, scores, classes"
        )
    for name in (out_names[0], out_names[3]):
        if graph_outputs[name].type.tensor_type.elem_type != _INT32:
            raise EdgetlError(f"{file}: output {name!r} is not int32, as EfficientNMS_TRT writes it")

    producers = {o: n for n in graph.node for o in n.output if o}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    # Backward cone of the four outputs: the NMS node must be in it, exactly once.
    upstream = _upstream(out_names, producers, lambda n: n.input)
    nms = [n for n in graph.node if n.op_type == "NonMaxSuppression" and id(n) in upstream]
    if len(nms) != 1:
        raise EdgetlError(
            f"{file} has {'no' if not nms else len(nms)} NonMaxSuppression node"
            f"{'' if len(nms) == 1 else 's'} feeding task {task!r}'s outputs; expected exactly one"
        )
    node = nms[0]
    if len(node.input) < 2:
        raise EdgetlError(f"{file}: the NonMaxSuppression node of task {task!r} lacks its boxes or scores input")
    center = next((a.i for a in node.attribute if a.name == "center_point_box"), 0)
    if center != 0:
        raise EdgetlError(f"{file}: task {task!r}'s NonMaxSuppression has center_point_box={center}; expected 0")

    consts: dict[str, Any] = {}
    for pos, key, kind in ((2, "max_output_boxes", int), (3, "iou_threshold", float), (4, "score_threshold", float)):
        name = node.input[pos] if len(node.input) > pos else ""
        value = _constant(graph, name, producers) if name else None
        value = _scalar(value, kind) if value is not None else None
        if value is None:
            raise EdgetlError(
                f"{file}: input {pos} ({key}) of task {task!r}'s NonMaxSuppression is not a constant scalar"
            )
        consts[key] = value
    if consts["max_output_boxes"] < 1:
        raise EdgetlError(f"{file}: task {task!r}'s NonMaxSuppression keeps {consts['max_output_boxes']} boxes")

    # Forward cone of the NMS node, limited to the outputs' backward cone: the sub-graph to replace.
    region: set[int] = set()
    todo_nodes = deque([node])
    while todo_nodes:
        n = todo_nodes.popleft()
        if id(n) in region or id(n) not in upstream:
            continue
        region.add(id(n))
        for o in n.output:
            todo_nodes.extend(consumers.get(o, []))
    for n in graph.node:  # whatever else wrote the four outputs goes too (the plugin writes them now)
        if set(out_names).intersection(n.output):
            region.add(id(n))
    other_outputs = set(graph_outputs) - set(out_names)
    for n in graph.node:
        if id(n) in region and other_outputs.intersection(n.output):
            raise EdgetlError(f"{file}: task {task!r}'s NMS tail also produces other graph outputs; cannot swap it")

    boxes, scores = node.input[0], node.input[1]
    added = []
    src = producers.get(scores)
    perm = next((list(a.ints) for a in src.attribute if a.name == "perm"), None) if src is not None else None
    if src is not None and src.op_type == "Transpose" and perm == [0, 2, 1]:
        scores_bac = src.input[0]
    else:
        scores_bac = f"{task}/efficient_nms/scores_bac"
        added.append(
            helper.make_node(
                "Transpose", [scores], [scores_bac], name=f"{task}/efficient_nms/transpose", perm=[0, 2, 1]
            )
        )
    added.append(
        helper.make_node(
            PLUGIN_OP,
            [boxes, scores_bac],
            out_names,
            name=f"{task}/efficient_nms",
            plugin_version="1",
            background_class=-1,
            max_output_boxes=int(consts["max_output_boxes"]),
            score_threshold=float(consts["score_threshold"]),
            iou_threshold=float(consts["iou_threshold"]),
            score_activation=0,
            class_agnostic=0,
            box_coding=0,
        )
    )

    # Put the new nodes where the NMS node was (keeps the list topologically sorted), drop the region.
    kept: list[Any] = []
    for n in graph.node:
        if n is node:
            kept.extend(added)
        if id(n) not in region:
            kept.append(n)
    before = len(graph.node)
    del graph.node[:]
    graph.node.extend(kept)
    _prune(graph)
    removed = before - (len(graph.node) - len(added))

    # Every live node's inputs must still exist (a region tensor read elsewhere would dangle).
    have = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    have |= {o for n in graph.node for o in n.output}
    dangling = sorted({i for n in graph.node for i in n.input if i not in have})
    if dangling:
        raise EdgetlError(f"{file}: after swapping task {task!r}'s NMS, {dangling[0]!r} has no producer")
    return {**consts, "removed_nodes": removed}


def swap_in_efficient_nms(onnx_in: Path, onnx_out: Path, tasks: list[str]) -> dict:
    """Write `onnx_out`: `onnx_in` with each task's NonMaxSuppression tail replaced by one EfficientNMS_TRT
    node (see the module doc). Returns {task: {"max_output_boxes", "iou_threshold", "score_threshold",
    "removed_nodes"}}. A task without a NonMaxSuppression node or its four outputs is an EdgetlError."""
    import onnx

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise EdgetlError(f"ONNX file {onnx_in} does not exist")
    try:
        model = onnx.load(str(onnx_in))
    except Exception as e:  # a protobuf decode error is a bad file, not a bug
        raise EdgetlError(f"{onnx_in.name} is not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not tasks:
        raise EdgetlError(f"no detection task given to swap EfficientNMS_TRT into {onnx_in.name}")

    graph = model.graph
    report = {task: _swap_task(graph, task, onnx_in.name) for task in tasks}
    read = _read_names(graph.node) | {o.name for o in graph.output}
    live_init = [t for t in graph.initializer if t.name in read]  # e.g. NMS thresholds stored as initializers
    del graph.initializer[:]
    graph.initializer.extend(live_init)
    produced = {o for n in graph.node for o in n.output}
    live_vi = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(live_vi)

    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    big = sum(len(t.raw_data) for t in graph.initializer) > _EXTERNAL_ABOVE
    onnx.save(model, str(onnx_out), save_as_external_data=big, location=f"{onnx_out.name}.data" if big else None)
    return report


__all__ = ["OUTPUTS", "PLUGIN_OP", "nms_tasks", "swap_in_efficient_nms"]
