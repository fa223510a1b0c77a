"""Semantic segmentation end to end: masks in, mIoU out, a class map from the exported graph and the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from yourdata import seg_folder

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks import get_kind
from edgetl.runtime.tasks.segmentation import IGNORE, confusion, resize_nearest

SEG = get_kind("segmentation")


def seg_recipe_dict(root, **over) -> dict:
    from conftest import set_dotted

    d = {
        "name": "seg",
        "backbone": {"name": "mobilenet_v2", "weights": "offline"},
        "input": {"kind": "image", "image_size": 32},
        "tasks": [{"name": "seg", "kind": "segmentation", "column": "mask", "dice_weight": 0.5}],
        "data": {"source": "imagefolder", "path": str(root / "images"), "masks": str(root / "masks"), "workers": 0},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "seed": 0, "num_threads": 2},
        "export": {"calibration": {"size": 16}, "verify_samples": 8, "max_drop": 100.0},
    }
    return set_dotted(d, over)


# ------------------------------------------------------------------------------------------------ metrics
def test_miou_from_one_confusion_matrix_with_ignored_pixels():
    truth = np.array([[[0, 0, 1, 1], [0, 2, 2, IGNORE]]], dtype=np.uint8)
    pred = np.array([[[0, 1, 1, 1], [0, 2, 0, 1]]])
    cm = confusion(pred, truth, 3)
    assert cm.sum() == 7  # the ignored pixel counts nowhere
    m = SEG.metrics(pred, truth, ["bg", "a", "b"], full=True)
    # IoU: bg 2/(3+3-2)=0.5, a 2/(2+3-2)=2/3, b 1/(2+1-1)=0.5
    assert m["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
    assert m["per_class_iou"]["a"] == pytest.approx(2 / 3)
    logits = np.eye(3)[pred].transpose(0, 3, 1, 2)  # the same prediction as logits: the same scores
    assert SEG.metrics(logits, truth, ["bg", "a", "b"])["miou"] == pytest.approx(m["miou"])


def test_gate_damage_and_agreement_on_class_maps_and_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4))
    assert SEG.damage(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert SEG.damage(logits, logits + rng.normal(scale=0.5, size=logits.shape)) > 0
    a = logits.argmax(1)
    b = a.copy()
    b[0, 0, 0] = (b[0, 0, 0] + 1) % 3
    assert SEG.damage(a, b) == pytest.approx(1 / 32)
    assert SEG.agreement(logits, b) == pytest.approx(31 / 32)


def test_nearest_resize_never_blends_classes():
    m = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    big = resize_nearest(m, (5, 7))
    assert big.shape == (5, 7) and set(np.unique(big)) == {0, 1, 2, 3}
    assert big[0, 0] == 0 and big[-1, -1] == 3


# ------------------------------------------------------------------------------------------------ bad input
def _load(root, **over):
    from edgetl.data import load_splits
    from edgetl.recipe import recipe_from_dict

    return load_splits(recipe_from_dict(seg_recipe_dict(root, **over)))


def test_a_missing_mask_is_one_line_naming_the_image(tmp_path):
    root = seg_folder(tmp_path / "d", n=6)
    (root / "masks" / "train" / "3.png").unlink()
    with pytest.raises(EdgetlError) as e:
        _load(root)
    assert "3.png" in str(e.value) and "no mask" in str(e.value) and "\n" not in str(e.value)


def test_a_mask_of_another_size_is_one_line_naming_both(tmp_path):
    from PIL import Image

    root = seg_folder(tmp_path / "d", n=6)
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(root / "masks" / "val" / "1.png")
    with pytest.raises(EdgetlError, match=r"masks/val/1\.png: mask is 10x10 but its image .*1\.png is 48x40"):
        _load(root)


def test_a_class_index_beyond_the_labels_is_refused_and_ignore_index_is_stored_as_255(tmp_path):
    from PIL import Image

    root = seg_folder(tmp_path / "d", n=6)
    splits = _load(root)
    t = splits.train.targets["seg"]
    assert t[0][0, 0] == IGNORE and t[np.arange(len(t))].max() == IGNORE  # the masks' 255 pixels: ignored
    with pytest.raises(EdgetlError, match=r"class index 255 but the label list has 3 classes.*ignore_index is 7"):
        _load(root, **{"tasks": [{"name": "seg", "kind": "segmentation", "column": "mask", "ignore_index": 7}]})
    m = np.array(Image.open(root / "masks" / "train" / "2.png"))
    m[5, 5] = 7
    Image.fromarray(m, mode="L").save(root / "masks" / "train" / "2.png")
    with pytest.raises(EdgetlError, match=r"train/2\.png: class index 7 but the label list has 3 classes"):
        _load(root)


def test_an_rgb_mask_without_a_palette_is_refused(tmp_path):
    from PIL import Image

    root = seg_folder(tmp_path / "d", n=6)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "masks" / "test" / "0.png")
    with pytest.raises(EdgetlError, match=r"test/0\.png: mask is RGB without a palette"):
        _load(root)


def test_an_empty_mask_folder_is_one_line(tmp_path):
    root = seg_folder(tmp_path / "d", n=6)
    empty = tmp_path / "nomasks"
    empty.mkdir()
    with pytest.raises(EdgetlError, match="mask folder has no masks"):
        _load(root, **{"data.masks": str(empty)})


def test_class_names_are_required(tmp_path):
    root = seg_folder(tmp_path / "d", n=6)
    (root / "masks" / "classes.txt").unlink()
    with pytest.raises(EdgetlError, match="needs its class names: tasks\\[\\].labels, or a classes.txt"):
        _load(root)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"tasks": [{"name": "c", "kind": "classification", "dice_weight": 1.0}]}, "dice_weight does not apply"),
        ({"tasks": [{"name": "r", "kind": "regression", "labels": ["a"]}]}, "labels does not apply"),
        ({"input.resize": "shorter_crop"}, "shorter_crop crops the image"),
        ({"tasks": [{"name": "s", "kind": "segmentation", "decoder": "unet"}]}, "decoder"),
        ({"data.augment": ["trivial_augment"]}, "cannot move task 'seg'"),
    ],
)
def test_recipe_options_a_kind_does_not_support_are_one_line(tmp_path, over, match):
    from edgetl.recipe import recipe_from_dict

    with pytest.raises(EdgetlError, match=match) as e:
        recipe_from_dict(seg_recipe_dict(tmp_path, **over))
    assert "\n" not in str(e.value)


def test_distilling_a_segmentation_task_is_refused_in_one_line(tmp_path):
    from edgetl.recipe import recipe_from_dict
    from edgetl.train.checks import check_distill

    r = recipe_from_dict(seg_recipe_dict(tmp_path, **{"distill.teacher": str(tmp_path / "runs" / "t")}))
    with pytest.raises(EdgetlError, match="task 'seg' is segmentation, which cannot be distilled"):
        check_distill(r)


# ------------------------------------------------------------------------------------------------ augmentation
def test_masks_move_with_their_image_through_the_same_draw():
    """An image whose red channel encodes the class (100 x class): after a random resized crop the mask still
    matches the image (bilinear blends only at borders); colour jitter moves no mask pixel."""
    import torch

    from edgetl.data.augment import BatchAugment
    from edgetl.recipe import recipe_from_dict

    def augment(steps):
        r = recipe_from_dict(seg_recipe_dict(Path("/nowhere"), **{"data.augment": steps}))
        return BatchAugment.make(r, None)

    mask = torch.zeros(32, 32, dtype=torch.uint8)
    mask[4:20, 6:26] = 1
    mask[22:30, :] = 2
    img = torch.stack([mask * 100, torch.zeros_like(mask), torch.zeros_like(mask)], -1).to(torch.uint8)
    crop = augment([{"name": "random_resized_crop", "scale": [0.2, 0.6]}])
    torch.manual_seed(3)
    moved = 0
    for _ in range(8):
        ims, ms = crop.images_and_masks([img], {"seg": mask[None]})
        out_img, out_mask = ims[0], ms["seg"][0]
        assert out_mask.dtype == torch.uint8 and out_mask.shape == (32, 32)
        assert set(out_mask.unique().tolist()) <= {0, 1, 2}  # nearest: no blended class values
        moved += int(not torch.equal(out_mask, mask))
        from_image = (out_img[..., 0].float() / 100).round().to(torch.uint8)
        assert (from_image == out_mask).float().mean() > 0.9
    assert moved > 0
    jitter = augment([{"name": "color_jitter", "brightness": 0.5, "contrast": 0.5}])
    ims, ms = jitter.images_and_masks([img], {"seg": mask[None]})
    assert torch.equal(ms["seg"][0], mask) and not torch.equal(ims[0], img)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow  # train + export + bench: the e2e tier (the fast tier stays within its budget)
def test_segmentation_trains_exports_int8_and_predicts_masks_at_the_input_size(tmp_path):
    import onnx

    from edgetl.bench.harness import bench
    from edgetl.bundle.deepstream import deepstream_config
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.recipe import recipe_from_dict
    from edgetl.runtime import Predictor
    from edgetl.train.loop import train

    root = seg_folder(tmp_path / "d", n=16)
    recipe = recipe_from_dict(seg_recipe_dict(root, **{"data.augment": ["hflip"]}))
    run = train(recipe, runs_dir=tmp_path / "runs", progress=False)
    metrics = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 < metrics[-1]["val"]["seg"]["miou"] <= 1.0
    bundle = export_run(run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["tasks"][0]["output_format"] == "classmap"
    assert {"fp32", "int8-ort"} <= set(manifest["artifacts"])
    gate = manifest["artifacts"]["int8-ort"]["quantization"]["gate"]
    assert "seg" in json.dumps(gate)
    model = onnx.load(str(bundle / manifest["artifacts"]["fp32"]["file"]))
    out = model.graph.output[0]
    assert out.type.tensor_type.elem_type == onnx.TensorProto.UINT8  # argmax inside the graph
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [32, 32]
    pred = Predictor.load(bundle)
    image = str(root / "images" / "test" / "0.png")
    p = pred.predict(image)["seg"]
    assert p.mask.shape == (40, 48) and p.mask.dtype == np.uint8  # the input image's own size
    assert sum(p.areas.values()) == pytest.approx(1.0)
    assert set(p.areas) <= {"background", "square", "bar"}
    props = deepstream_config(bundle)
    assert props["network-type"] == "100" and props["output-tensor-meta"] == "1"
    report = bench(run.dir, "cpu", batch_sizes=[1], budget_s=0.1)
    rows = {r["artifact"]: r for r in report["rows"]}
    assert "miou" in rows["int8-ort"]["metrics"]["seg"]
    assert rows["fp32"]["frame_latency_ms"]["p50_ms"] > 0


@pytest.mark.slow
def test_segment_and_classify_share_one_backbone_and_one_onnx(tmp_path):
    import onnx

    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.data.scenes import SCENE_CLASSES
    from edgetl.recipe import recipe_from_dict
    from edgetl.runtime import Predictor
    from edgetl.train.loop import train

    d = seg_recipe_dict(
        tmp_path,
        **{
            "data": {"source": "fashion-scenes", "split": {"limit_train": 64, "limit_val": 24, "limit_test": 24}},
            "tasks": [
                {"name": "seg", "kind": "segmentation", "column": "mask", "output_format": "logits"},
                {"name": "main", "kind": "classification", "column": "main"},
            ],
            "train.epochs": 1,
        },
    )
    run = train(recipe_from_dict(d), runs_dir=tmp_path / "runs", progress=False)
    bundle = export_run(run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = onnx.load(str(bundle / manifest["artifacts"]["fp32"]["file"]))
    assert [o.name for o in model.graph.output] == ["seg", "main"]
    assert manifest["artifacts"]["fp32"]["accuracy"].keys() == {"seg", "main"}
    res = Predictor.load(bundle).predict(np.zeros((64, 64, 3), np.uint8))
    assert res["seg"].mask.shape == (64, 64) and res["main"].label in {"tops", "bottoms", "footwear", "bags"}
    assert len(SCENE_CLASSES) == 5


def test_fashion_scenes_are_seeded_and_masks_follow_the_items():
    from edgetl.data.scenes import SCENE_CLASSES, load_fashion_scenes

    a, b = load_fashion_scenes(), load_fashion_scenes(seed=1)
    m = a.dense["mask"]
    assert a.images.shape[1:] == (64, 64, 3) and m.shape == a.images.shape[:3]
    assert set(np.unique(m)) <= set(range(len(SCENE_CLASSES)))
    assert not np.array_equal(a.images[:10], b.images[:10])
    assert np.array_equal(a.images[:10], load_fashion_scenes().images[:10])
    assert set(a.split.tolist()) == {"train", "test"}
    share = (m > 0).mean()
    assert 0.05 < share < 0.6  # items cover part of each canvas


def _seg_manifest(root) -> None:
    """labels.csv beside the seg_folder: path, mask (relative), a weather column; classes.txt beside it."""
    import csv

    rows = sorted((root / "images").rglob("*.png"))
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "mask", "weather"])
        for i, p in enumerate(rows):
            rel = p.relative_to(root)
            w.writerow([str(rel), str(Path("masks") / rel.relative_to("images")), "sun" if i % 2 else "rain"])
    (root / "classes.txt").write_text("background\nsquare\nbar\n")


def test_a_csv_manifest_names_masks_in_mask_column_beside_a_classifier(tmp_path):
    root = seg_folder(tmp_path / "d", n=6, splits=False)
    _seg_manifest(root)
    splits = _load(
        root,
        **{
            "data": {"source": "csv", "path": str(root / "labels.csv"), "mask_column": "mask"},
            "tasks": [
                {"name": "seg", "kind": "segmentation", "column": "mask"},
                {"name": "weather", "kind": "classification"},
            ],
        },
    )
    assert splits.labels == {"seg": ["background", "square", "bar"], "weather": ["rain", "sun"]}
    t = splits.train.targets["seg"]
    assert t[np.arange(len(t))].shape == (len(t), 32, 32)
    (root / "masks" / "1.png").unlink()
    with pytest.raises(EdgetlError, match=r"labels\.csv: row \d+: mask .*1\.png \(column 'mask'\) does not exist"):
        _load(root, **{"data": {"source": "csv", "path": str(root / "labels.csv"), "mask_column": "mask"}})


def test_webdataset_shards_carry_masks_as_mask_png_members(tmp_path):
    import io
    import tarfile

    root = seg_folder(tmp_path / "d", n=6, splits=False)
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "shard-000000.tar", "w") as tf:
        for p in sorted((root / "images").glob("*.png"), key=lambda p: int(p.stem)):
            for name, data in (
                (f"{p.stem}.png", p.read_bytes()),
                (f"{p.stem}.mask.png", (root / "masks" / p.name).read_bytes()),
                (f"{p.stem}.json", json.dumps({"split": "train" if int(p.stem) < 4 else "val"}).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (shards / "classes.txt").write_text("background\nsquare\nbar\n")
    splits = _load(root, **{"data": {"source": "webdataset", "path": str(shards)}})
    t = splits.train.targets["seg"]
    assert len(t) == 4 and t[np.arange(4)].shape == (4, 32, 32) and t[0][0, 0] == IGNORE
