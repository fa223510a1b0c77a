"""Detection annotations from disk (edgetl.data.box_formats): COCO, YOLO and a manifest boxes column.

Tiny datasets are written to tmp_path (40x30 images): what a reader yields is checked box by box, and every
bad input is an EdgetlError of one line naming the file and the line, row or annotation at fault.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
from PIL import Image

from edgetl.data.box_formats import boxes_from_manifest, check_boxes, load_coco, load_yolo, parse_boxes_cell
from edgetl.data.boxes import BoxTable
from edgetl.data.lazy import ImageFiles
from edgetl.errors import EdgetlError

W, H = 40, 30


def _image(path, w=W, h=H, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 60, 30)).save(path, format=fmt)
    return path


# ------------------------------------------------------------------------------------------------------------ COCO
def _coco(tmp_path, images=None, annotations=None, categories=None, sub="", drop=None):
    """A COCO file beside (or, with sub="images", above) three images: a.png, b.jpg and c.png (a negative)."""
    for name in ("a.png", "b.jpg", "c.png"):
        _image(tmp_path / sub / name if sub else tmp_path / name)
    data = {
        "images": images
        if images is not None
        else [
            {"id": 10, "file_name": "a.png", "width": W, "height": H},
            {"id": 20, "file_name": "b.jpg"},  # no width/height: read from the header
            {"id": 30, "file_name": "c.png", "width": W, "height": H},
        ],
        "annotations": annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [4, 3, 10, 6]},
            {"id": 2, "image_id": 20, "category_id": 3, "bbox": [0, 0, 40, 30]},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [20, 10, 5.5, 4]},
            {"id": 4, "image_id": 20, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1},
        ],
        "categories": categories
        if categories is not None
        else [{"id": 7, "name": "shoe"}, {"id": 3, "name": "shirt"}],  # out of order, not contiguous
    }
    if drop:
        del data[drop]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_round_trip(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="edgetl"):
        raw = load_coco(_coco(tmp_path))
    assert raw.kind == "image" and len(raw) == 3 and raw.split is None
    assert isinstance(raw.files, ImageFiles)
    assert raw.files.items == [str(tmp_path / n) for n in ("a.png", "b.jpg", "c.png")]
    assert raw.sources == raw.files.items
    assert raw.columns == {"boxes": [None, None, None]}
    assert raw.class_names == {"boxes": ["shirt", "shoe"]}  # by category id: 3 -> 0, 7 -> 1
    t = raw.dense["boxes"]
    assert isinstance(t, BoxTable) and len(t) == 3 and t.clipped == 0
    assert t.sizes.tolist() == [[H, W]] * 3
    np.testing.assert_allclose(t.boxes[0], [[4, 3, 14, 9], [20, 10, 25.5, 14]])  # xywh -> xyxy, listed order
    assert t.classes[0].tolist() == [1, 0]
    np.testing.assert_allclose(t.boxes[1], [[0, 0, 40, 30]])  # the crowd annotation is skipped
    assert t.classes[1].tolist() == [0]
    assert t.boxes[2].shape == (0, 4) and t.classes[2].shape == (0,)  # a negative is kept
    assert t.boxes[0].dtype == np.float32 and t.classes[0].dtype == np.int64 and t.sizes.dtype == np.int64
    assert "1 crowd" in caplog.text


def test_coco_images_subfolder_and_image_root(tmp_path):
    raw = load_coco(_coco(tmp_path, sub="images"))
    assert raw.files.items[0] == str(tmp_path / "images" / "a.png")
    raw = load_coco(_coco(tmp_path / "x", sub="pics"), image_root=tmp_path / "x" / "pics", column="objects")
    assert raw.files.items[2] == str(tmp_path / "x" / "pics" / "c.png")
    assert set(raw.dense) == {"objects"} and raw.class_names["objects"] == ["shirt", "shoe"]


def test_coco_clips_boxes_partly_outside(tmp_path):
    ann = [
        {"id": 1, "image_id": 10, "category_id": 3, "bbox": [-5, 20, 15, 20]},  # out left and bottom
        {"id": 2, "image_id": 30, "category_id": 3, "bbox": [35, 0, 10, 10]},  # out right
        {"id": 3, "image_id": 30, "category_id": 3, "bbox": [0, 0, 40, 30]},  # exactly the image: not clipped
    ]
    t = load_coco(_coco(tmp_path, annotations=ann)).dense["boxes"]
    assert t.clipped == 2
    np.testing.assert_allclose(t.boxes[0], [[0, 20, 10, 30]])
    np.testing.assert_allclose(t.boxes[2], [[35, 0, 40, 10], [0, 0, 40, 30]])


def test_coco_at_size_scales_to_the_model_input(tmp_path):
    t = load_coco(_coco(tmp_path)).dense["boxes"]
    target = t.at_size(64, "bilinear")
    assert target.shape == (3, 2, 5)
    sx, sy = 64 / W, 64 / H
    np.testing.assert_allclose(target[0, 0], [1, 4 * sx, 3 * sy, 14 * sx, 9 * sy], rtol=1e-6)
    np.testing.assert_allclose(target[1, 0], [0, 0, 0, 64, 64], rtol=1e-6)
    assert target[1, 1, 0] == -1 and (target[2, :, 0] == -1).all()  # padding rows


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_coco_missing_key(tmp_path, key):
    path = _coco(tmp_path, drop=key)
    with pytest.raises(EdgetlError, match=rf"^{re.escape(str(path))}: no '{key}' key"):
        load_coco(path)


def _bad_ann(**fields):
    return [{"id": 5, "image_id": 10, "category_id": 3, "bbox": [1, 1, 4, 4]}, {"id": 6, **fields}]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]}, r"image_id 99 is not in 'images'"),
        (
            {"image_id": 10, "category_id": 4, "bbox": [1, 1, 2, 2]},
            r"category_id 4 is not in 'categories' \(ids: 3, 7\)",
        ),
        ({"image_id": 10, "category_id": 3, "bbox": [1, 1, 2]}, r"'bbox' must be 4 numbers \[x, y, width, height\]"),
        ({"image_id": 10, "category_id": 3, "bbox": [1, 1, "2", 2]}, r"'bbox' must be 4 numbers"),
        ({"image_id": 10, "category_id": 3}, r"'bbox' must be 4 numbers .* got None"),
        ({"image_id": 10, "category_id": 3, "bbox": [1, 1, 0, 2]}, r"box has width 0 and height 2 pixels"),
        (
            {"image_id": 10, "category_id": 3, "bbox": [1, 1, 3, -2]},
            r"box has width 3 and height -2 pixels; both must be > 0",
        ),
        (
            {"image_id": 10, "category_id": 3, "bbox": [40, 5, 3, 3]},
            r"box \(x1, y1, x2, y2 = 40, 5, 43, 8\) lies entirely outside its 40x30 \(w x h\) image",
        ),
        ({"image_id": 10, "category_id": 3, "bbox": [-9, -9, 9, 9]}, r"box .* lies entirely outside"),
    ],
)
def test_coco_bad_annotation_names_file_and_annotation(tmp_path, fields, message):
    path = _coco(tmp_path, annotations=_bad_ann(**fields))
    with pytest.raises(EdgetlError, match=rf"^{re.escape(str(path))}: annotations\[1\] \(id 6\): {message}") as e:
        load_coco(path)
    assert "\n" not in str(e.value)


def test_coco_missing_image_file(tmp_path):
    path = _coco(tmp_path)
    (tmp_path / "b.jpg").unlink()
    with pytest.raises(EdgetlError, match=rf"{re.escape(str(path))}: images\[1\] \(id 20\).*b\.jpg.*not found"):
        load_coco(path)


def test_coco_bad_json_and_categories(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [')
    with pytest.raises(EdgetlError, match=rf"^{re.escape(str(path))}: invalid JSON"):
        load_coco(path)
    cats = [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]
    with pytest.raises(EdgetlError, match=r"categories\[1\]: id 1 appears twice"):
        load_coco(_coco(tmp_path, categories=cats))
    with pytest.raises(EdgetlError, match=r"ann.json: not found"):
        load_coco(tmp_path / "nope" / "ann.json")


# ------------------------------------------------------------------------------------------------------------ YOLO
def _yolo(root, split=True, names="list"):
    """train: a.jpg (2 boxes), b.png (empty label file), c.png (no label file); val (as `valid`): d.png."""
    tr, va = ("train", "valid") if split else ("", "")
    for name, sub in (("a.jpg", tr), ("b.png", tr), ("c.png", tr), ("d.png", va)):
        _image(root / "images" / sub / name)
    (root / "labels" / tr).mkdir(parents=True, exist_ok=True)
    (root / "labels" / va).mkdir(parents=True, exist_ok=True)
    (root / "labels" / tr / "a.txt").write_text("1 0.5 0.5 0.5 0.2\n\n0 0.25 0.5 0.1 0.4\n")
    (root / "labels" / tr / "b.txt").write_text("")
    (root / "labels" / va / "d.txt").write_text("2 0.5 0.5 1.0 1.0\n")
    if names == "list":
        (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog, bird]\n")
    elif names == "dict":
        (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n  2: bird\n")
    elif names == "txt":
        (root / "classes.txt").write_text("cat\ndog\nbird\n")
    return root


@pytest.mark.parametrize("names", ["list", "dict", "txt"])
def test_yolo_round_trip_with_splits(tmp_path, names, caplog):
    root = _yolo(tmp_path / "ds", names=names)
    with caplog.at_level(logging.INFO, logger="edgetl"):
        raw = load_yolo(root)
    assert raw.class_names == {"boxes": ["cat", "dog", "bird"]}
    stems = [p.rsplit("/", 1)[1] for p in raw.files.items]
    assert stems == ["a.jpg", "b.png", "c.png", "d.png"]  # sorted, train before val
    # `valid` is val; a tuple, since a list starting "train" reads as a CLI call to conftest's tier rule
    assert tuple(raw.split) == ("train", "train", "train", "val")
    assert raw.sources == raw.files.items and raw.columns == {"boxes": [None] * 4}
    t = raw.dense["boxes"]
    assert t.sizes.tolist() == [[H, W]] * 4 and t.clipped == 0
    np.testing.assert_allclose(t.boxes[0], [[10, 12, 30, 18], [8, 9, 12, 21]], rtol=1e-6)
    assert t.classes[0].tolist() == [1, 0]
    assert t.boxes[1].shape == (0, 4) and t.boxes[2].shape == (0, 4)  # empty label file, no label file: negatives
    np.testing.assert_allclose(t.boxes[3], [[0, 0, 40, 30]])
    assert "1 of 4 images have no label file" in caplog.text


def test_yolo_flat_layout_classes_argument_and_at_size(tmp_path):
    root = _yolo(tmp_path / "ds", split=False, names=None)
    raw = load_yolo(root, column="objects", classes=["x", "y", "z"])
    assert raw.split is None and raw.class_names == {"objects": ["x", "y", "z"]}
    target = raw.dense["objects"].at_size(64, "bilinear")
    np.testing.assert_allclose(target[0, 0], [1, 10 * 64 / W, 12 * 64 / H, 30 * 64 / W, 18 * 64 / H], rtol=1e-6)
    assert (target[1, :, 0] == -1).all()


def test_yolo_clips_boxes_partly_outside(tmp_path):
    root = _yolo(tmp_path / "ds")
    (root / "labels" / "train" / "a.txt").write_text("0 0.9 0.5 0.4 0.2\n0 0.5 0.5 0.2 0.2\n0 0.5 0.0 0.2 0.2\n")
    t = load_yolo(root).dense["boxes"]
    assert t.clipped == 2
    np.testing.assert_allclose(t.boxes[0], [[28, 12, 40, 18], [16, 12, 24, 18], [16, 0, 24, 3]], rtol=1e-6)


def test_yolo_no_class_names(tmp_path):
    root = _yolo(tmp_path / "ds", names=None)
    with pytest.raises(EdgetlError, match=r"no class names .* classes=\[\.\.\.\], .*data\.yaml .*classes\.txt"):
        load_yolo(root)


def test_yolo_bad_data_yaml_names(tmp_path):
    root = _yolo(tmp_path / "ds", names=None)
    (root / "data.yaml").write_text("names:\n  0: cat\n  2: dog\n")
    with pytest.raises(EdgetlError, match=r"data\.yaml: `names` keys must be the class indices 0\.\.1"):
        load_yolo(root)


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2", r"expected 5 numbers 'class cx cy w h' .*got 4 fields"),
        ("0 0.5 0.5 0.2 0.2 0.3 0.3", r"expected 5 numbers .* got 7 fields; polygon"),
        ("0 0.5 abc 0.2 0.2", r"'abc' is not a number"),
        ("0 0.5 nan 0.2 0.2", r"'nan' is not a number"),
        ("cat 0.5 0.5 0.2 0.2", r"'cat' is not a number"),
        ("1.5 0.5 0.5 0.2 0.2", r"class '1.5' is not an integer in 0\.\.2 \(3 class names\)"),
        ("3 0.5 0.5 0.2 0.2", r"class '3' is not an integer in 0\.\.2 \(3 class names\)"),
        ("-1 0.5 0.5 0.2 0.2", r"class '-1' is not an integer in 0\.\.2"),
        ("0 0.5 0.5 0 0.2", r"box width 0 and height 0.2 must both be > 0"),
        ("0 0.5 0.5 0.2 -0.1", r"box width 0.2 and height -0.1 must both be > 0"),
        ("0 1.5 0.5 0.2 0.2", r"box \(x1, y1, x2, y2 = 56, 12, 64, 18\) lies entirely outside its 40x30 \(w x h\)"),
        ("0 0.5 -0.2 0.2 0.2", r"box .* lies entirely outside"),
    ],
)
def test_yolo_bad_line_names_file_and_line(tmp_path, line, message):
    root = _yolo(tmp_path / "ds")
    label = root / "labels" / "valid" / "d.txt"
    label.write_text(f"2 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(EdgetlError, match=rf"^{re.escape(str(label))}:2: {message}") as e:
        load_yolo(root)
    assert "\n" not in str(e.value)


def test_yolo_label_without_image(tmp_path):
    root = _yolo(tmp_path / "ds")
    orphan = root / "labels" / "train" / "zz.txt"
    orphan.write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(EdgetlError, match=rf"^{re.escape(str(orphan))}: label file without an image"):
        load_yolo(root)


def test_yolo_missing_folders(tmp_path):
    with pytest.raises(EdgetlError, match=r"YOLO folder not found"):
        load_yolo(tmp_path / "nope")
    (tmp_path / "ds" / "images").mkdir(parents=True)
    with pytest.raises(EdgetlError, match=r"no labels/ folder"):
        load_yolo(tmp_path / "ds", classes=["a"])


# -------------------------------------------------------------------------------------------- manifest boxes column
def test_parse_boxes_cell_forms():
    cell = '[{"label": "shirt", "box": [1, 2, 10, 20]}, {"label": "shoe", "box": [0, 0, 5.5, 5]}]'
    b, labels = parse_boxes_cell(cell, "m.csv: row 2", None)
    assert b.dtype == np.float32 and b.tolist() == [[1, 2, 10, 20], [0, 0, 5.5, 5]]
    assert labels == ["shirt", "shoe"]
    b2, labels2 = parse_boxes_cell(json.loads(cell), "m.jsonl: row 1", None)  # JSONL: the list itself
    assert b2.tolist() == b.tolist() and labels2 == labels
    for empty in ("", "  ", "[]", [], None):
        b, labels = parse_boxes_cell(empty, "m.csv: row 2", None)
        assert b.shape == (0, 4) and labels == []
    b, labels = parse_boxes_cell([{"label": 1, "box": [1, 1, 2, 2]}], "w", ["a", "b"])  # a class index
    assert labels == [1]


@pytest.mark.parametrize(
    "cell, names, message",
    [
        ("[{", None, r"not a JSON list of"),
        ('{"label": "a"}', None, r"expected a list of .* got dict"),
        ('[{"box": [1, 1, 2, 2]}]', None, r"box 0: expected \{\"label\""),
        ('[{"label": "a", "box": [1, 1, 2]}]', None, r"box 0: 'box' must be 4 numbers \[x1, y1, x2, y2\]"),
        ('[{"label": "a", "box": [1, 1, 2, 2]}, {"label": "z", "box": [1, 1, 2, 2]}]', ["a"], r"box 1: label 'z'"),
        ('[{"label": 3, "box": [1, 1, 2, 2]}]', ["a"], r"box 0: class index 3 is not in 0\.\.0"),
        ('[{"label": 0, "box": [1, 1, 2, 2]}]', None, r"box 0: label 0 is a class index, but no class names"),
        ('[{"label": null, "box": [1, 1, 2, 2]}]', None, r"box 0: 'label' must be a class name, got None"),
    ],
)
def test_parse_boxes_cell_errors(cell, names, message):
    with pytest.raises(EdgetlError, match=rf"^m\.csv: row 5: column 'boxes': {message}"):
        parse_boxes_cell(cell, "m.csv: row 5: column 'boxes'", names)


def test_boxes_from_manifest(tmp_path):
    imgs = [str(_image(tmp_path / f"{i}.png")) for i in range(3)]
    cells = [
        '[{"label": "shoe", "box": [1, 2, 11, 12]}, {"label": "bag", "box": [30, 20, 50, 40]}]',  # clipped
        "",  # a negative
        '[{"label": "shoe", "box": [0, 0, 40, 30]}]',
    ]
    table, names = boxes_from_manifest(cells, imgs, str(tmp_path / "m.csv"), "boxes", None)
    assert names == ["bag", "shoe"]  # sorted labels seen
    assert table.sizes.tolist() == [[H, W]] * 3 and table.clipped == 1
    np.testing.assert_allclose(table.boxes[0], [[1, 2, 11, 12], [30, 20, 40, 30]])
    assert table.classes[0].tolist() == [1, 0] and table.classes[2].tolist() == [1]
    assert table.boxes[1].shape == (0, 4)
    target = table.at_size(64, "bilinear")
    np.testing.assert_allclose(target[0, 1], [0, 30 * 64 / W, 20 * 64 / H, 64, 64], rtol=1e-6)
    table, names = boxes_from_manifest(cells, imgs, "m.jsonl", "boxes", ["shoe", "bag", "hat"])
    assert names == ["shoe", "bag", "hat"] and table.classes[0].tolist() == [0, 1]


def test_boxes_from_manifest_errors_name_the_row(tmp_path):
    imgs = [str(_image(tmp_path / f"{i}.png")) for i in range(2)]
    cells = ["", '[{"label": "a", "box": [1, 1, 5, 5]}, {"label": "a", "box": [45, 1, 50, 5]}]']
    with pytest.raises(EdgetlError, match=r"^m\.csv: row 3: column 'boxes': box 1: box .* lies entirely outside"):
        boxes_from_manifest(cells, imgs, "m.csv", "boxes", None)
    with pytest.raises(EdgetlError, match=r"^m\.jsonl: row 2: column 'boxes': box 1: box .* entirely outside"):
        boxes_from_manifest(cells, imgs, "m.jsonl", "boxes", None)
    cells[1] = '[{"label": "a", "box": [5, 1, 5, 5]}]'
    with pytest.raises(EdgetlError, match=r"^m\.csv: row 3: column 'boxes': box 0: box has width 0 and height 4"):
        boxes_from_manifest(cells, imgs, "m.csv", "boxes", None)
    (tmp_path / "1.png").unlink()
    with pytest.raises(EdgetlError, match=r"1\.png: not found"):
        boxes_from_manifest(["", ""], imgs, "m.csv", "boxes", ["a"])


# ------------------------------------------------------------------------------------------------ the shared check
def test_check_boxes_clips_counts_and_refuses():
    boxes = np.array([[0, 0, 40, 30], [-0.005, 0, 40.005, 30], [-3, 5, 10, 35], [10, 10, 20, 20]], np.float32)
    kept, clipped = check_boxes(boxes, H, W, "x")
    assert clipped == 1  # rounding within 0.01 px is not counted as a clip
    np.testing.assert_allclose(kept, [[0, 0, 40, 30], [0, 0, 40, 30], [0, 5, 10, 30], [10, 10, 20, 20]])
    kept, clipped = check_boxes(np.zeros((0, 4)), H, W, "x")
    assert kept.shape == (0, 4) and kept.dtype == np.float32 and clipped == 0
    with pytest.raises(
        EdgetlError, match=r"^row 1: box \(x1, y1, x2, y2 = 0, nan, 1, 1\) has a coordinate that is not"
    ):
        check_boxes([[0, 0, 1, 1], [0, np.nan, 1, 1]], H, W, lambda i: f"row {i}")
    with pytest.raises(EdgetlError, match=r"^where: box .* entirely outside its 20x10 \(w x h\) image"):
        check_boxes([[25, 0, 30, 5], [25, 0, 30, 5]], [30, 10], [40, 20], "where")  # per-box sizes: 2nd is 20x10
