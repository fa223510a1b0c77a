"""Datasets and splits: deterministic, stratified, and every bad input a one-line error."""

import json

import numpy as np
import pytest
from conftest import tiny_recipe_dict
from PIL import Image

from edgetl.data import load_splits
from edgetl.data.builtin import FASHION_GROUP_OF, load_fashion_mnist
from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict


def test_splits_are_deterministic_and_disjoint(tiny_recipe):
    a = load_splits(tiny_recipe())
    b = load_splits(tiny_recipe())
    for k in ("train", "val", "test"):
        assert a.info["indices"][k] == b.info["indices"][k]
    tr, va, te = (set(a.info["indices"][k]) for k in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert a.info["sizes"] == {"train": 300, "val": 120, "test": 120}
    c = load_splits(tiny_recipe(**{"train.seed": 1}))
    assert c.info["indices"]["train"] != a.info["indices"]["train"]


def test_stratified_subset_keeps_class_balance(tiny_recipe):
    s = load_splits(tiny_recipe())
    counts = np.bincount(s.train.targets["digit"], minlength=10)
    assert counts.min() >= 25 and counts.max() <= 35  # 300 over 10 balanced classes


def test_reloading_from_split_indices_gives_same_examples(tiny_recipe):
    s = load_splits(tiny_recipe())
    again = load_splits(tiny_recipe(), json.loads(json.dumps(s.info["indices"])))
    assert np.array_equal(s.test.images, again.test.images)


def test_fashion_mnist_two_tasks():
    raw = load_fashion_mnist()
    assert raw.images.shape == (70000, 28, 28, 1)
    assert (raw.split == "test").sum() == 10000
    assert set(raw.columns["group"]) == {"tops", "bottoms", "footwear", "bags"}
    assert FASHION_GROUP_OF[8] == "bags"


def _folder(tmp_path, classes=("cat", "dog"), n=6, size=(12, 10), mode="RGB"):
    root = tmp_path / "imgs"
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = (np.random.default_rng(i).random((*size, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).convert(mode).save(root / c / f"{i}.png")
    return root


def _folder_recipe(root, **kw):
    d = tiny_recipe_dict()
    d["data"] = {"source": "imagefolder", "path": str(root), "split": {"val_fraction": 0.25, "test_fraction": 0.25}}
    d["tasks"] = [{"name": "animal", "column": "label"}]
    d.update(kw)
    return recipe_from_dict(d)


def test_imagefolder_loads(tmp_path):
    s = load_splits(_folder_recipe(_folder(tmp_path)))
    assert s.labels["animal"] == ["cat", "dog"]
    assert len(s.train) + len(s.val) + len(s.test) == 12


def test_imagefolder_missing_dir(tmp_path):
    with pytest.raises(EdgetlError, match="image folder not found"):
        load_splits(_folder_recipe(tmp_path / "nope"))


def test_imagefolder_empty_class(tmp_path):
    root = _folder(tmp_path)
    (root / "empty").mkdir()
    with pytest.raises(EdgetlError, match=r"empty: class folder has no images"):
        load_splits(_folder_recipe(root))


def test_truncated_image_names_the_file_when_read(tmp_path):
    """Loading keeps paths only (nothing decoded up front); reading the bad file names it."""
    root = _folder(tmp_path)
    bad = root / "cat" / "0.png"
    bad.write_bytes(bad.read_bytes()[:40])
    s = load_splits(_folder_recipe(root))
    ex = next(e for e in (s.train, s.val, s.test) if str(bad) in e.files.items)
    with pytest.raises(EdgetlError, match=r"0\.png: unreadable or truncated image"):
        ex.inputs([ex.files.items.index(str(bad))])


def test_csv_manifest_and_label_outside_declared_set(tmp_path):
    root = _folder(tmp_path)
    rows = ["path,kind"] + [f"{c}/{i}.png,{c}" for c in ("cat", "dog") for i in range(6)]
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    d = tiny_recipe_dict()
    d["data"] = {"source": "csv", "path": str(root / "m.csv"), "split": {"val_fraction": 0.25, "test_fraction": 0.25}}
    d["tasks"] = [{"name": "kind"}]
    s = load_splits(recipe_from_dict(d))
    assert s.labels["kind"] == ["cat", "dog"]
    d["tasks"] = [{"name": "kind", "labels": ["cat", "bird"]}]
    with pytest.raises(EdgetlError, match="label 'dog' is not in the declared labels"):
        load_splits(recipe_from_dict(d))
    d["tasks"] = [{"name": "kind", "column": "species"}]
    with pytest.raises(EdgetlError, match="has no column 'species'"):
        load_splits(recipe_from_dict(d))


def test_class_in_val_but_not_train(tmp_path):
    root = _folder(tmp_path)
    rows = (
        ["path,kind,split"] + [f"cat/{i}.png,cat,train" for i in range(4)] + ["dog/0.png,dog,val", "cat/5.png,cat,test"]
    )
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    d = tiny_recipe_dict()
    d["data"] = {"source": "csv", "path": str(root / "m.csv"), "split_column": "split"}
    d["tasks"] = [{"name": "kind", "labels": ["cat", "dog"]}]
    with pytest.raises(EdgetlError, match="class dog appears in the val split but not in train"):
        load_splits(recipe_from_dict(d))


def test_empty_split_is_an_error(tmp_path):
    root = _folder(tmp_path)
    rows = ["path,kind,split"] + [f"cat/{i}.png,cat,test" for i in range(4)]
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    d = tiny_recipe_dict()
    d["data"] = {"source": "csv", "path": str(root / "m.csv"), "split_column": "split"}
    d["tasks"] = [{"name": "kind"}]
    with pytest.raises(EdgetlError, match="the train split is empty"):
        load_splits(recipe_from_dict(d))


def test_duplicates_across_splits_warn(tmp_path):
    root = _folder(tmp_path)
    rows = [
        "path,kind,split",
        "cat/0.png,cat,train",
        "cat/1.png,cat,train",
        "dog/0.png,dog,train",
        "dog/1.png,dog,train",
        "cat/0.png,cat,val",
        "dog/2.png,dog,val",
        "cat/3.png,cat,test",
    ]
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    d = tiny_recipe_dict()
    d["data"] = {"source": "csv", "path": str(root / "m.csv"), "split_column": "split"}
    d["tasks"] = [{"name": "kind"}]
    s = load_splits(recipe_from_dict(d))
    assert any("train and val" in w for w in s.info["warnings"])


def test_grey_images_and_two_channel_refused(tmp_path):
    root = _folder(tmp_path, mode="L")
    s = load_splits(_folder_recipe(root))
    assert {im.shape[-1] for im in s.train.inputs(np.arange(len(s.train)))} == {1}
    la = root / "cat" / "la.png"
    Image.fromarray(np.zeros((12, 10, 2), dtype=np.uint8), mode="LA").save(la)
    s2 = load_splits(_folder_recipe(root))  # LA converts to RGB, never silently a 2-channel tensor
    assert all(im.shape[-1] in (1, 3) for im in s2.train.inputs(np.arange(len(s2.train))))


def test_manifest_row_pointing_nowhere_is_one_line_naming_row_and_file(tmp_path):
    root = _folder(tmp_path)
    rows = ["path,kind"] + [f"{c}/{i}.png,{c}" for c in ("cat", "dog") for i in range(6)] + ["cat/ghost.png,cat"]
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    d = tiny_recipe_dict()
    d["data"] = {"source": "csv", "path": str(root / "m.csv"), "split": {"val_fraction": 0.25, "test_fraction": 0.25}}
    d["tasks"] = [{"name": "kind"}]
    with pytest.raises(EdgetlError, match=r"m\.csv: row 14: column 'path': .*ghost\.png: not found$") as e:
        load_splits(recipe_from_dict(d))
    assert "\n" not in str(e.value)
