"""Object detection end to end: boxes in, COCO mAP out, NMS inside the exported graph, boxes back in image pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks import get_kind
from edgetl.runtime.tasks.detection import coco_metrics, pack, to_image

DET = get_kind("detection")


def det_recipe_dict(**over) -> dict:
    from conftest import set_dotted

    d = {
        "name": "det",
        "backbone": {"name": "mobilenet_v2", "weights": "offline"},
        "input": {"kind": "image", "image_size": 64},
        "tasks": [{"name": "det", "kind": "detection", "column": "boxes"}],
        "data": {
            "source": "fashion-detect",
            "split": {"limit_train": 64, "limit_val": 24, "limit_test": 24},
            "augment": ["hflip"],
        },
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.003, "seed": 0, "num_threads": 2},
        "export": {"calibration": {"size": 16}, "verify_samples": 16, "max_drop": 100.0},
    }
    return set_dotted(d, over)


# ------------------------------------------------------------------------------------------------ metrics
def _target(rows):
    """[[class, x1, y1, x2, y2], ...] per image -> the padded [N, M, 5] target."""
    m = max(len(r) for r in rows)
    out = np.zeros((len(rows), m, 5), np.float32)
    out[..., 0] = -1
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = r
    return out


def test_perfect_detections_score_map_1_and_a_miss_lowers_it():
    truth = _target([[[0, 10, 10, 30, 40], [1, 40, 5, 60, 25]], [[1, 0, 0, 20, 20]]])
    perfect = pack(
        [[2], [1]],
        [[[10, 10, 30, 40], [40, 5, 60, 25]], [[0, 0, 20, 20], [0, 0, 0, 0]]],
        [[0.9, 0.8], [0.7, 0]],
        [[0, 1], [1, 0]],
    )
    m = coco_metrics(perfect, truth, ["a", "b"], full=True)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    wrong_class = perfect.copy()
    wrong_class[1, 0, 5] = 0  # the second image's box called class a: b loses half its objects
    m2 = coco_metrics(wrong_class, truth, ["a", "b"], full=True)
    assert m2["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert m2["map"] < m["map"]
    shifted = perfect.copy()
    shifted[0, 0, :4] += 6  # IoU ~0.44 with its object: counts at no threshold
    assert coco_metrics(shifted, truth, ["a", "b"])["map"] < 1.0
    assert coco_metrics(np.zeros((2, 3, 6), np.float32) - 1, truth, ["a", "b"])["map"] == 0.0


def test_images_without_boxes_are_negatives_and_false_positives_there_cost_precision():
    truth = _target([[[0, 10, 10, 30, 30]], []])
    clean = pack([[1], [0]], [[[10, 10, 30, 30]], [[0, 0, 0, 0]]], [[0.9], [0.0]], [[0], [0]])
    noisy = pack([[1], [1]], [[[10, 10, 30, 30]], [[5, 5, 25, 25]]], [[0.5], [0.9]], [[0], [0]])
    assert coco_metrics(clean, truth, ["a"])["map"] == pytest.approx(1.0)
    assert coco_metrics(noisy, truth, ["a"])["map"] < 0.9


@pytest.mark.parametrize("resize", ["bilinear", "letterbox"])
def test_boxes_go_to_the_model_input_and_back_to_the_image_exactly(resize):
    from edgetl.data.boxes import BoxTable

    table = BoxTable(np.array([[120, 200]]), [np.array([[20, 30, 110, 90]], np.float32)], [np.array([2])])
    t = table.at_size(64, resize)
    assert t.shape == (1, 1, 5) and t[0, 0, 0] == 2
    if resize == "letterbox":  # 200x120 -> 64x38 (y scale 38/120), 13 px of padding above
        np.testing.assert_allclose(t[0, 0, 1:], [6.4, 9.5 + 13, 35.2, 28.5 + 13], atol=0.05)
    back = to_image(t[0, :, 1:], (120, 200), 64, resize)
    np.testing.assert_allclose(back, [[20, 30, 110, 90]], atol=0.1)


def test_the_letterbox_resize_keeps_the_aspect_and_pads_with_grey():
    from edgetl.runtime.crop import LETTERBOX_FILL, letterbox

    img = np.full((40, 80, 3), 200, np.uint8)
    out = letterbox(img, 32)
    assert out.shape == (32, 32, 3)
    assert (out[:8] == LETTERBOX_FILL).all() and (out[-8:] == LETTERBOX_FILL).all()
    assert (out[8:24] == 200).all()


def test_horizontal_flip_moves_boxes_with_the_image_and_keeps_padding():
    from edgetl.data.augment import flip_targets

    t = torch.tensor([[[1, 10, 5, 30, 20], [-1, 0, 0, 0, 0]]], dtype=torch.float32)
    f = flip_targets(t, "boxes", 64)
    assert f[0, 0].tolist() == [1, 34, 5, 54, 20] and f[0, 1].tolist() == [-1, 0, 0, 0, 0]


def test_augmentation_moves_clips_and_drops_boxes_with_torchvision():
    from edgetl.data.augment import BatchAugment
    from edgetl.recipe import AugmentStep

    aug = BatchAugment([AugmentStep(name="random_resized_crop", scale=[0.3, 0.5])], 64, None)
    img = torch.zeros((64, 64, 3), dtype=torch.uint8)
    boxes = torch.tensor([[[0, 2, 2, 20, 20], [1, 40, 40, 62, 62], [-1, 0, 0, 0, 0]]], dtype=torch.float32)
    torch.manual_seed(3)
    _, moved = aug.images_and_masks([img], {"det": boxes}, {"det": "boxes"})
    got = moved["det"][0]
    assert got.shape == (3, 5)
    real = got[got[:, 0] >= 0]
    assert len(real) <= 2
    assert (real[:, 1:] >= 0).all() and (real[:, 1:] <= 64).all()  # clipped to the crop
    assert ((real[:, 3] - real[:, 1]) >= 1).all() and ((real[:, 4] - real[:, 2]) >= 1).all()  # none degenerate


# ------------------------------------------------------------------------------------------------ head
def random_raw(seed: int, n: int, a: int, c: int, span: float, side: float) -> torch.Tensor:
    """A raw head output [n, a, 8 + c]: boxes of 4..4 + side px at up to `span` px, random centerness and logits."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand((n, a, 2), generator=g) * span
    wh = torch.rand((n, a, 2), generator=g) * side + 4
    return torch.cat([xy, xy + wh, torch.randn((n, a, 1), generator=g), torch.zeros((n, a, 3)),
                      torch.randn((n, a, c), generator=g) * 2], -1)  # fmt: skip


def test_the_assigner_picks_points_inside_each_objects_centre_region_at_its_level():
    from edgetl.tasks.detection import assign

    ys, xs = np.meshgrid(np.arange(8) * 8 + 4.0, np.arange(8) * 8 + 4.0, indexing="ij")
    pts = np.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    raw = torch.zeros((1, 64, 8 + 2))
    raw[0, :, 5:7] = torch.from_numpy(pts)
    raw[0, :, 7] = 8
    target = torch.tensor([[[1, 8, 8, 40, 40], [0, 44, 44, 60, 60]]], dtype=torch.float32)
    matched, rows = assign(raw, target)
    pos = matched[0] >= 0
    assert pos.any()
    for a in np.flatnonzero(pos.numpy()):
        k = int(matched[0, a])
        x1, y1, x2, y2 = target[0, k, 1:].tolist()
        px, py = pts[a]
        assert x1 < px < x2 and y1 < py < y2
        assert abs(px - (x1 + x2) / 2) < 12 and abs(py - (y1 + y2) / 2) < 12  # 1.5 strides
        assert rows[0, a, 0] == target[0, k, 0]
    assert set(matched[0][pos].tolist()) == {0, 1}


def test_nms_in_pytorch_matches_onnx_nonmaxsuppression(tmp_path):
    import onnxruntime as ort

    from edgetl.tasks.detection import detect

    class Head(torch.nn.Module):
        def forward(self, raw):
            return detect(raw, None)

    n, a, c = 2, 60, 3
    raw = random_raw(0, n, a, c, span=50, side=20)
    path = tmp_path / "nms.onnx"
    names = ["num", "boxes", "scores", "classes"]
    torch.onnx.export(Head(), (raw,), str(path), dynamo=False, opset_version=17, input_names=["raw"],
                      output_names=names, dynamic_axes={"raw": {0: "b"}})  # fmt: skip
    types = {node.op_type for node in __import__("onnx").load(str(path)).graph.node}
    assert "NonMaxSuppression" in types
    ref = [t.numpy() for t in Head()(raw)]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"raw": raw.numpy()})
    assert got[0].dtype == np.int32 and got[3].dtype == np.int32 and got[1].shape == (n, 100, 4)
    np.testing.assert_array_equal(got[0], ref[0])
    _, ok = DET.outputs_match(pack(*ref), pack(*got), 1e-4)
    assert ok
    # one image alone gives the same detections as in the batch (dynamic batch, per-image NMS)
    one = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"raw": raw[1:].numpy()})
    np.testing.assert_array_equal(one[0][0], got[0][1])


def test_recipe_fields_of_detection_are_its_own():
    from edgetl.recipe import recipe_from_dict

    with pytest.raises(Exception, match="dice_weight does not apply to a detection task"):
        recipe_from_dict(det_recipe_dict(tasks=[{"name": "det", "kind": "detection", "dice_weight": 1.0}]))
    with pytest.raises(Exception, match="output_format 'classmap'; a detection task takes nms, raw"):
        recipe_from_dict(det_recipe_dict(tasks=[{"name": "det", "kind": "detection", "output_format": "classmap"}]))
    with pytest.raises(Exception, match="score_threshold does not apply to a classification task"):
        recipe_from_dict(det_recipe_dict(tasks=[{"name": "c", "kind": "classification", "score_threshold": 0.3}]))


def test_a_box_target_in_a_label_column_is_refused_in_one_line():
    with pytest.raises(EdgetlError, match="detection boxes come from COCO JSON, YOLO txt"):
        DET.encode(["x"], ["a"], "det", "label")


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_detection_trains_exports_nms_in_the_graph_int8_and_predicts_boxes_in_image_pixels(tmp_path):
    import onnx

    from edgetl.bench.harness import bench
    from edgetl.bundle.deepstream import deepstream_config
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.recipe import recipe_from_dict
    from edgetl.runtime import Predictor
    from edgetl.runtime.outputs import prediction_rows
    from edgetl.train.loop import train

    d = det_recipe_dict(tasks=[{"name": "det", "kind": "detection", "column": "boxes"},
                               {"name": "main", "kind": "classification", "column": "main"}])  # fmt: skip
    run = train(recipe_from_dict(d), runs_dir=tmp_path / "runs", progress=False)
    metrics = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= metrics[-1]["val"]["det"]["map"] <= 1.0 and "accuracy" in metrics[-1]["val"]["main"]
    bundle = export_run(run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    manifest = json.loads((bundle / "manifest.json").read_text())
    task = manifest["tasks"][0]
    assert task["output_format"] == "nms" and task["max_detections"] == 100
    model = onnx.load(str(bundle / manifest["artifacts"]["fp32"]["file"]))
    assert [o.name for o in model.graph.output] == [
        "det/num_detections", "det/boxes", "det/scores", "det/classes", "main"]  # fmt: skip
    assert "NonMaxSuppression" in {n.op_type for n in model.graph.node}
    int8 = onnx.load(str(bundle / manifest["artifacts"]["int8-ort"]["file"]))
    # decoding and NMS stay float: no Q/DQ feeds the NMS or its boxes/scores
    producer = {o: n for n in int8.graph.node for o in n.output}
    nms = next(n for n in int8.graph.node if n.op_type == "NonMaxSuppression")
    assert all(producer[i].op_type != "DequantizeLinear" for i in nms.input if i in producer)
    gate = manifest["artifacts"]["int8-ort"]["quantization"]["gate"]
    assert "det" in json.dumps(gate)
    assert "map" in manifest["artifacts"]["int8-ort"]["test_metrics"]["det"]
    from PIL import Image

    from edgetl.data.scenes import load_fashion_detect

    frame = tmp_path / "frame.png"
    Image.fromarray(load_fashion_detect().images[-1]).resize((150, 120)).save(frame)
    pred = Predictor.load(bundle)
    p = pred.predict(str(frame), score_threshold=0.0, top_k=5)["det"]
    assert p.boxes.shape[1] == 4 and len(p.boxes) <= 5 and len(p.labels) == len(p.scores) == len(p.boxes)
    assert (p.boxes[:, [0, 2]] <= 150).all() and (p.boxes[:, [1, 3]] <= 120).all()  # the frame's own pixels
    assert set(p.labels) <= {"tops", "bottoms", "footwear", "bags"}
    rows = prediction_rows([str(frame)], [pred.predict(str(frame), score_threshold=0.0)], tmp_path / "pics")
    assert (tmp_path / "pics" / "frame.det.jpg").is_file() and rows[0]["det"]["image_file"].endswith(".jpg")
    props = deepstream_config(bundle)
    assert props["network-type"] == "0" and props["parse-bbox-func-name"] == "NvDsInferParseCustomEfficientNMS"
    assert props["output-blob-names"] == "det/num_detections;det/boxes;det/scores;det/classes;main"
    assert props["output-tensor-meta"] == "1"  # the image-level classifier's scores reach the application as tensors
    report = bench(run.dir, "cpu", batch_sizes=[1], budget_s=0.1)
    rows = {r["artifact"]: r for r in report["rows"]}
    assert "map" in rows["int8-ort"]["metrics"]["det"]
    assert rows["fp32"]["frame_latency_ms"]["p50_ms"] > 0


def test_a_raw_head_decoded_by_the_runtime_gives_the_graphs_detections():
    """`output_format: raw` bundles are scored and run by numpy decoding + NMS; it must agree with the graph's."""
    from edgetl.runtime.tasks.detection import decode_raw
    from edgetl.tasks.detection import detect, packed

    n, a, c = 2, 80, 3
    raw = random_raw(1, n, a, c, span=60, side=25)
    ref = packed(detect(raw, None)).numpy()
    got = decode_raw(raw.numpy())
    assert DET.outputs_match(ref, got, 1e-5)[1]
    assert DET.metrics(raw.numpy(), ref[..., [5, 0, 1, 2, 3]], ["a", "b", "c"])["n"] == n


# ------------------------------------------------------------------------------------------------ your data
def _file_recipe(root, source: str, path, **over) -> dict:
    return det_recipe_dict(**{"data": {"source": source, "path": str(path), "workers": 0,
                                       "split": {"val_fraction": 0.2}, "augment": ["hflip"]},
                              "tasks": [{"name": "det", "kind": "detection"}], "train.batch_size": 8, **over})  # fmt: skip


@pytest.mark.parametrize("source", ["yolo", "coco"])
def test_yolo_and_coco_folders_load_lazily_with_boxes_moved_by_the_resize_policy(tmp_path, source):
    from yourdata import det_folder

    from edgetl.data.load import load_splits
    from edgetl.recipe import recipe_from_dict

    root = det_folder(tmp_path / "d", n=12, fmt=source)
    path = root if source == "yolo" else root / "annotations.json"
    splits = load_splits(recipe_from_dict(_file_recipe(root, source, path, **{"input.resize": "letterbox"})))
    assert splits.train.files is not None and splits.train.images is None  # paths, decoded per batch
    assert splits.labels["det"] == ["tops", "bottoms", "footwear", "bags"]
    t = splits.train.targets["det"]
    real = t[t[..., 0] >= 0]
    # 120x72 letterboxed into 64x64: scale 64/120, 19 or 20 px of grey above and below
    assert real[:, 2].min() >= 13 and real[:, 4].max() <= 64 - 13
    if source == "yolo":
        assert splits.info["split_from"] and len(splits.test) == 4  # the folder's own split
    every = [splits.train, splits.val] + ([splits.test] if splits.test is not splits.val else [])
    negatives = sum(int((x.targets["det"][:, :, 0] < 0).all(axis=1).sum()) for x in every)
    assert negatives >= (3 if source == "yolo" else 1)  # images without boxes are kept as negatives


@pytest.mark.slow
def test_a_yolo_folder_trains_with_letterbox_and_predicts_boxes_in_each_images_pixels(tmp_path):
    from yourdata import det_folder

    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.recipe import recipe_from_dict
    from edgetl.runtime import Predictor
    from edgetl.train.loop import train

    root = det_folder(tmp_path / "d", n=16)
    run = train(recipe_from_dict(_file_recipe(root, "yolo", root, **{"input.resize": "letterbox"})),
                runs_dir=tmp_path / "runs", progress=False)  # fmt: skip
    bundle = export_run(run.dir, ExportOptions(progress=False))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["input"]["resize"] == "letterbox"
    p = Predictor.load(bundle).predict(str(root / "images" / "test" / "test_0.png"), score_threshold=0.0)["det"]
    assert len(p.boxes) and (p.boxes[:, [0, 2]] <= 120).all() and (p.boxes[:, [1, 3]] <= 72).all()


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("yolo-malformed", r"labels/train/train_0.txt:1: expected 5 numbers"),
        ("yolo-class", r"labels/train/train_0.txt:1: class '9' is not an integer in 0..3"),
        ("yolo-orphan", r"labels/train/ghost.txt: label file without an image"),
        ("yolo-zero", r"labels/train/train_0.txt:1: box width 0"),
        ("coco-keys", r"annotations.json: no 'categories' key"),
        ("coco-image", r"annotations\[0\] \(id 1\): image_id 999 is not in 'images'"),
        ("coco-outside", r"annotations\[0\].*lies entirely outside its 120x72"),
    ],
)
def test_bad_detection_data_is_one_line_naming_the_file_and_line_and_exits_non_zero(
    tmp_path, monkeypatch, capsys, breakage, match
):
    import yaml
    from helpers import edgetl_cli, one_error_line, run_cli
    from yourdata import det_folder

    fmt = breakage.split("-")[0]
    root = det_folder(tmp_path / "d", n=6, fmt=fmt)
    if breakage == "yolo-malformed":
        (root / "labels/train/train_0.txt").write_text("0 0.5 0.5 0.2\n")
    elif breakage == "yolo-class":
        (root / "labels/train/train_0.txt").write_text("9 0.5 0.5 0.2 0.2\n")
    elif breakage == "yolo-orphan":
        (root / "labels/train/ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    elif breakage == "yolo-zero":
        (root / "labels/train/train_0.txt").write_text("0 0.5 0.5 0 0.2\n")
    else:
        coco = json.loads((root / "annotations.json").read_text())
        if breakage == "coco-keys":
            del coco["categories"]
        elif breakage == "coco-image":
            coco["annotations"][0]["image_id"] = 999
        else:
            coco["annotations"][0]["bbox"] = [500, 500, 10, 10]
        (root / "annotations.json").write_text(json.dumps(coco))
    path = root if fmt == "yolo" else root / "annotations.json"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_file_recipe(root, fmt, path)))
    if breakage == "yolo-malformed":  # once through the real console entry point, in its own process
        line = one_error_line(edgetl_cli("train", recipe, "--runs-dir", tmp_path / "runs"))
    else:
        code, _out, err = run_cli(monkeypatch, capsys, "train", recipe, "--runs-dir", tmp_path / "runs")
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1, err
        line = lines[0]
    assert __import__("re").search(match, line), line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.safetensors"))


def test_recipe_labels_reorder_the_files_classes_by_name_and_an_unknown_one_is_refused(tmp_path):
    from yourdata import det_folder

    from edgetl.data.load import load_splits
    from edgetl.recipe import recipe_from_dict

    root = det_folder(tmp_path / "d", n=6)
    plain = load_splits(recipe_from_dict(_file_recipe(root, "yolo", root)))
    flipped = ["bags", "footwear", "bottoms", "tops"]
    d = _file_recipe(root, "yolo", root, tasks=[{"name": "det", "kind": "detection", "labels": flipped}])
    moved = load_splits(recipe_from_dict(d))
    a, b = plain.train.targets["det"], moved.train.targets["det"]
    real = a[..., 0] >= 0
    assert (b[..., 0][real] == 3 - a[..., 0][real]).all()  # same objects, each class found by its name
    d["tasks"][0]["labels"] = ["tops", "bottoms", "footwear", "purses"]
    with pytest.raises(EdgetlError, match="class 'bags' of .* is not in tasks\\[\\].labels"):
        load_splits(recipe_from_dict(d))


def test_the_predictor_shows_detections_above_the_bundles_display_threshold_unless_told_otherwise():
    from types import SimpleNamespace

    from edgetl.runtime.manifest import ImageInput, Task
    from edgetl.runtime.predictor import Predictor

    task = Task("det", "detection", ("a", "b"), "det", "nms",
                {"score_threshold": 0.05, "display_threshold": 0.3, "max_detections": 100})  # fmt: skip
    inp = ImageInput("input", (64, 64), 3, 1 / 255, (0.5,) * 3, (0.25,) * 3)
    fake = SimpleNamespace(manifest=SimpleNamespace(input=inp))
    opts = Predictor.task_options(fake, task)  # type: ignore[arg-type]
    assert opts["score_threshold"] == 0.3 and opts["top_k"] == 100 and opts["image_size"] == 64
    assert Predictor.task_options(fake, task, {"score_threshold": 0.1})["score_threshold"] == 0.1  # type: ignore[arg-type]
    out = pack([[3]], [[[0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 40]]], [[0.9, 0.35, 0.1]], [[0, 1, 1]])
    p = DET.decode("det", out, ("a", "b"), [(64, 64)], opts)[0]
    assert p.labels == ["a", "b"] and p.scores == pytest.approx([0.9, 0.35])
