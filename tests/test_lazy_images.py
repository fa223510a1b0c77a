"""Image folders stream: only paths are held, JPEGs decode at reduced scale in DataLoader workers, an
unreadable image mid-epoch is skipped and listed (never a lost run), and mid-epoch resume stays exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_recipe_dict
from PIL import Image
from safetensors.numpy import load_file

from edgetl.data import load_splits
from edgetl.data.files import decode_image
from edgetl.data.stream import BatchPlan, auto_workers, make_loader, resolve_workers
from edgetl.recipe import recipe_from_dict
from edgetl.runs.layout import Run
from edgetl.runtime.crop import shorter_crop
from edgetl.train.loop import train

COLOURS = {"red": (200, 40, 40), "blue": (40, 60, 210)}


def _photos(root, per_class=(20, 6), size=(150, 200)):
    """train/ and val/ folders of JPEG 'photos': a coloured disc on noise, one colour per class."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: size[0], : size[1]]
    for split, n in zip(("train", "val"), per_class):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 120, (*size, 3), dtype=np.uint8)
                cy, cx, r = rng.integers(40, 110), rng.integers(40, 160), rng.integers(20, 40)
                arr[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rgb
                Image.fromarray(arr).save(root / split / name / f"{i:03d}.jpg", quality=90)
    return root


def _recipe(root, **over):
    d = tiny_recipe_dict(
        **{
            "data.split.limit_train": None,
            "data.split.limit_val": None,
            "data.split.limit_test": None,
            "train.batch_size": 8,
            "train.num_threads": 1,
            "train.epochs": 2,
            "data.workers": 1,
            **over,
        }
    )
    d["data"] = {**d["data"], "source": "imagefolder", "path": str(root)}
    d["tasks"] = [{"name": "colour", "kind": "classification", "column": "label"}]
    return recipe_from_dict(d)


def test_folder_holds_paths_and_decodes_at_working_size(tmp_path):
    root = _photos(tmp_path / "p")
    s = load_splits(_recipe(root))
    assert s.train.images is None and s.train.image_list is None and len(s.train.files) == 40
    assert all(isinstance(p, str) for p in s.train.files.items)  # nothing decoded at load
    (im,) = s.train.inputs([0])
    assert im.dtype == np.uint8 and im.shape == (32, 32, 3)
    # image files default to the eval transform (shorter side + centre crop); the reduced-scale JPEG decode
    # (150x200 -> 38x50) stays close to a full decode + the same transform
    assert s.train.files.resize == "shorter_crop" and s.train.files.crop_pct == 0.875
    full = decode_image(s.train.files.items[0])
    ref = shorter_crop(full, 32, 0.875)
    diff = np.abs(im.astype(np.float32) - ref)
    assert diff.mean() < 6, diff.mean()  # measured 4.1 on these pure-noise images (the worst case for resampling)
    sq = load_splits(_recipe(root, **{"input.resize": "squash"})).train.inputs([0])[0]  # the old square resize
    assert np.array_equal(sq, decode_image(s.train.files.items[0], 32, "bilinear")) and not np.array_equal(sq, im)


def test_loader_yields_planned_batches_in_order(tmp_path):
    root = _photos(tmp_path / "p")
    s = load_splits(_recipe(root))
    plan = BatchPlan()
    loader = make_loader(s.train.files, plan, workers=1, pin_memory=False)
    plan.batches = [np.array([5, 1, 7]), np.array([0, 2])]
    got = [b["x"].numpy() for b in loader]
    want = [np.stack(s.train.inputs(b)) for b in plan.batches]
    assert [g.shape for g in got] == [(3, 32, 32, 3), (2, 32, 32, 3)]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    plan.batches = [np.array([3])]  # persistent workers: the same loader reads a new plan
    assert np.array_equal(next(iter(loader))["x"].numpy()[0], s.train.inputs([3])[0])
    assert resolve_workers("auto") == auto_workers() and 0 <= auto_workers() <= 8 and resolve_workers(3) == 3


def test_unreadable_image_mid_epoch_is_skipped_counted_and_listed(tmp_path):
    root = _photos(tmp_path / "p")
    bad = root / "train" / "red" / "004.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    run = train(_recipe(root), name="bad", runs_dir=tmp_path / "runs", progress=False)
    assert run.info()["status"] == "completed"
    listed = (run.dir / "bad_images.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(str(bad) + "\t") and "truncated" in listed[0]
    assert [r["skipped_images"] for r in run.metrics()] == [1, 1]


@pytest.mark.parametrize("augment", ["none", "hflip"])
def test_mid_epoch_resume_with_workers_is_exact(tmp_path, augment):
    root = _photos(tmp_path / "p")
    over = {"train.checkpoint_every_steps": 1, "data.augment": augment}
    ref = train(_recipe(root, **over), name="ref", runs_dir=tmp_path / "runs", progress=False)
    stopped = train(_recipe(root, **over), name="stop", runs_dir=tmp_path / "runs", progress=False, stop_after_steps=7)
    resumed = train(_recipe(root), resume=Run(stopped.dir), progress=False)  # 5 steps per epoch: inside epoch 2
    ma, mb = ref.metrics(), resumed.metrics()
    assert [(r["train_loss"], r["val_loss"]) for r in ma] == [(r["train_loss"], r["val_loss"]) for r in mb]
    wa, wb = load_file(str(ref.checkpoint("last"))), load_file(str(resumed.checkpoint("last")))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert (
        json.loads((ref.dir / "splits.json").read_text())["indices"]
        == json.loads((resumed.dir / "splits.json").read_text())["indices"]
    )


def test_image_cache_ram_and_disk_train_like_no_cache_and_disk_is_reused(tmp_path, monkeypatch):
    root = _photos(tmp_path / "p")
    bad = root / "train" / "blue" / "002.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"

    def losses(run):
        return [(m["train_loss"], m["val_loss"], m["skipped_images"]) for m in run.metrics()]

    ref = losses(train(_recipe(root), name="none", runs_dir=runs, progress=False))
    assert losses(train(_recipe(root, **{"data.cache": "ram"}), name="ram", runs_dir=runs, progress=False)) == ref
    disk = _recipe(root, **{"data.cache": "disk", "data.workers": 0})
    assert losses(train(disk, name="disk", runs_dir=runs, progress=False)) == ref
    files = sorted(p.name for p in (tmp_path / "cache" / "images").iterdir())
    assert len(files) == 4 and all(not f.startswith(".") for f in files)  # train + val: .npy + .json each

    from edgetl.data import stream

    def no_decoding(self, rows):
        raise AssertionError("a complete disk cache must serve every batch")

    monkeypatch.setattr(stream.BatchReader, "__getitem__", no_decoding)
    again = train(disk, name="disk2", runs_dir=runs, progress=False)
    assert losses(again) == ref and (again.dir / "bad_images.txt").read_text().startswith(str(bad))
