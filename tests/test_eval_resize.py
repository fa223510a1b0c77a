"""The evaluation resize (shorter side + centre crop, antialiased): torchvision's transform, one function on the
training side and in the torch-free runtime (parity), recorded in the manifest; bundles without it predict as
before (square bilinear)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_recipe_dict
from PIL import Image

from edgetl.data.eval_resize import default_crop_pct, resize_of
from edgetl.data.transforms import ImagePreprocess
from edgetl.recipe import recipe_from_dict
from edgetl.runtime.crop import shorter_crop, shorter_crop_geometry
from edgetl.runtime.manifest import parse_manifest
from edgetl.runtime.preprocess import ImagePreprocessor

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PARITY_ATOL = 2e-6  # float32 normalisation in torch vs numpy; the resized pixels are the same function's


def _images():
    rng = np.random.default_rng(3)
    return [
        rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8),  # landscape photo size
        rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),  # portrait
        rng.integers(0, 256, (50, 70, 1), dtype=np.uint8),  # grey, smaller than the crop: upscaled
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),  # already image_size: passed through
    ]


def test_geometry_matches_torchvision_on_photos():
    from torchvision.transforms import v2

    assert shorter_crop_geometry(768, 1024, 224, 0.875) == (256, 341, 16, 58)
    rng = np.random.default_rng(0)
    for h, w in ((768, 1024), (300, 200), (97, 131)):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        tv = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(Image.fromarray(arr))
        assert np.array_equal(shorter_crop(arr, 224, 0.875), np.asarray(tv)), (h, w)


@pytest.mark.parametrize("crop_pct", [0.875, 0.95, 1.0])
def test_runtime_equals_training_side_eval_transform(crop_pct):
    train_side = ImagePreprocess((64, 64), mean=MEAN, std=STD, resize="shorter_crop", crop_pct=crop_pct)
    runtime = ImagePreprocessor((64, 64), 3, 1 / 255, MEAN, STD, "shorter_crop", crop_pct)
    ims = _images()
    a = train_side(ims).numpy()
    b = runtime(ims)
    assert a.shape == b.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(a, b, rtol=0, atol=PARITY_ATOL)
    floats = [im.astype(np.float32) for im in ims[:2]]  # float input: per-channel float resize on both sides
    np.testing.assert_allclose(train_side(floats).numpy(), runtime(floats), rtol=0, atol=1e-4)


def test_manifest_records_it_and_old_manifests_keep_the_square_resize():
    prep = ImagePreprocess((64, 64), mean=MEAN, std=STD, resize="shorter_crop", crop_pct=0.9)
    m = prep.manifest()
    assert m["resize"] == "shorter_crop" and m["crop_pct"] == 0.9

    def bundle(inp):
        return {
            "schema_version": 1,
            "input": inp,
            "tasks": [{"name": "t", "kind": "classification", "labels": ["a", "b"], "output": "t"}],
            "artifacts": {"fp32": {"file": "model.onnx", "format": "onnx"}},
            "files": {},
        }

    new = parse_manifest(bundle(m)).input
    assert (new.resize, new.crop_pct) == ("shorter_crop", 0.9)
    old = ImagePreprocess((64, 64), mean=MEAN, std=STD).manifest()
    assert old["resize"] == "bilinear" and "crop_pct" not in old
    legacy = {k: v for k, v in old.items() if k != "resize"}  # written before the field existed
    ims = _images()[:2]
    for inp in (old, legacy):
        spec = parse_manifest(bundle(inp)).input
        assert spec.resize == "bilinear"
        got = ImagePreprocessor.from_spec(spec)(ims)
        want = ImagePreprocess((64, 64), mean=MEAN, std=STD)(ims).numpy()  # the square resize of before
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    with pytest.raises(Exception, match="crop_pct"):
        parse_manifest(bundle({**m, "crop_pct": 1.5}))


def test_recipe_resolution():
    digits = recipe_from_dict(tiny_recipe_dict())
    assert resize_of(digits) == ("bilinear", 0.875)  # built-in square arrays: as before
    d = tiny_recipe_dict()
    d["data"] = {"source": "imagefolder", "path": "x"}
    assert resize_of(recipe_from_dict(d)) == ("shorter_crop", 0.875)
    d["input"] = {**d["input"], "crop_pct": 0.95, "resize": "squash"}
    assert resize_of(recipe_from_dict(d)) == ("bilinear", 0.95)
    assert default_crop_pct("efficientnet_lite0") == 0.875 and default_crop_pct("resnet18") == 0.875
    assert default_crop_pct("timm:convnext_tiny") == 0.95  # timm's registry, no weights loaded


def test_tensor_batches_must_already_be_cropped():
    prep = ImagePreprocess((32, 32), mean=MEAN, std=STD, resize="shorter_crop")
    assert prep(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="cropped"):
        prep(torch.zeros(2, 40, 50, 3, dtype=torch.uint8))


def test_cache_keys_follow_the_resize():
    """Feature and teacher caches are keyed by the pre-processing and the rows: another resize is another key."""
    from edgetl.data.examples import Examples
    from edgetl.data.lazy import ImageFiles
    from edgetl.train.cache import _prep_spec, examples_digest

    square = ImagePreprocess((32, 32))
    crop = ImagePreprocess((32, 32), resize="shorter_crop", crop_pct=0.875)
    assert _prep_spec(square) != _prep_spec(crop) and "resize" not in _prep_spec(square)
    im = np.zeros((40, 48, 3), np.uint8)
    ex = [Examples("image", {}, files=ImageFiles([im], 32, r, 0.875)) for r in ("bilinear", "shorter_crop")]
    assert examples_digest(ex[0]) != examples_digest(ex[1])
