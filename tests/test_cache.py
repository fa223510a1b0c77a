"""Feature cache: the key changes with everything the features depend on, cached training equals recomputed
training, disk caches are reused, and the cache is skipped whenever the prefix output is not fixed."""

import numpy as np
import pytest
import torch
from conftest import tiny_recipe_dict

from edgetl.data import load_splits
from edgetl.models import build_model
from edgetl.recipe import recipe_from_dict
from edgetl.train.cache import build_cache, cache_key, cache_usable

SMALL = {
    "data.split": {"val_fraction": 0.15, "test_fraction": 0.15, "limit_train": 64, "limit_val": 32, "limit_test": 32},
    "train.batch_size": 16,
}
LABELS = {"digit": [str(i) for i in range(10)]}


def _recipe(**over):
    return recipe_from_dict(tiny_recipe_dict(**{**SMALL, **over}))


@pytest.fixture(scope="module")
def base():
    from edgetl.models.preprocess import make_preprocess

    rec = _recipe()
    splits = load_splits(rec)
    model = build_model(rec, splits.labels)
    return rec, splits, model, make_preprocess(rec, model.backbone)


def test_cache_key_changes_with_everything_the_features_depend_on(base):
    from edgetl.models.preprocess import make_preprocess

    rec, splits, model, prep = base
    ex = splits.train
    key = cache_key(rec, 3, ex, "train", model, prep)
    assert key == cache_key(rec, 3, ex, "train", model, prep)  # deterministic
    assert key != cache_key(rec, 2, ex, "train", model, prep)  # depth
    assert key != cache_key(rec, 3, ex, "val", model, prep)  # split name
    assert key != cache_key(rec, 3, ex.take(np.arange(1, len(ex))), "train", model, prep)  # rows
    # data: one pixel of one image changed (same rows, same indices)
    changed = ex.take(np.arange(len(ex)))
    changed.images = changed.images.copy()
    changed.images[0, 0, 0, 0] ^= 1
    assert key != cache_key(rec, 3, changed, "train", model, prep)
    # input spec: image size (recipe + pre-processing)
    rec64 = _recipe(**{"input.image_size": 48})
    assert key != cache_key(rec64, 3, ex, "train", model, make_preprocess(rec64, model.backbone))
    # weights: same recipe, one weight of a frozen stage perturbed -> different prefix tensors
    other = build_model(rec, splits.labels)
    assert cache_key(rec, 3, ex, "train", other, prep) == key
    with torch.no_grad():
        next(other.backbone.stages[0].parameters()).view(-1)[0] += 1e-3
    assert cache_key(rec, 3, ex, "train", other, prep) != key
    # ... but a change above the frozen prefix does not invalidate it
    other2 = build_model(rec, splits.labels)
    with torch.no_grad():
        next(other2.backbone.stages[4].parameters()).view(-1)[0] += 1e-3
    assert cache_key(rec, 3, ex, "train", other2, prep) == key
    # backbone weights source (a from-scratch backbone has different tensors too)
    scratch = _recipe(**{"backbone.weights": "none"})
    assert key != cache_key(scratch, 3, ex, "train", build_model(scratch, splits.labels), prep)


def test_disk_cache_is_reused_and_equals_memory(base, tmp_path):
    rec, splits, model, prep = base
    model.eval()
    key = cache_key(rec, 3, splits.val, "val", model, prep)
    kw = dict(batch_size=16, device="cpu", cache_dir=tmp_path, key=key)
    mem = build_cache(model, prep, splits.val, 3, mode="memory", **kw)
    assert not list(tmp_path.iterdir())
    disk = build_cache(model, prep, splits.val, 3, mode="disk", **kw)
    f = tmp_path / f"{key}.npy"
    assert f.is_file() and not list(tmp_path.glob("*.tmp*"))
    torch.testing.assert_close(disk.clone(), mem)
    # a second build with the same key reads the file instead of recomputing
    np.save(f, np.full(tuple(mem.shape), 7.0, dtype=np.float32))
    again = build_cache(model, prep, splits.val, 3, mode="disk", **kw)
    assert float(again[0].flatten()[0]) == 7.0
    # what is cached is the prefix: the suffix on it gives the full model's features
    feats = model.backbone.forward_suffix(mem[:4], 3)
    x = prep(splits.val.inputs(np.arange(4)))
    with torch.no_grad():
        torch.testing.assert_close(feats.detach(), model.backbone(x), atol=1e-4, rtol=1e-4)


def test_cache_only_when_the_prefix_output_is_fixed(base):
    _, _, model, _ = base
    assert cache_usable(_recipe(), model, 3)
    assert not cache_usable(_recipe(), model, 0)
    assert not cache_usable(_recipe(**{"data.augment": "hflip"}), model, 3)
    assert not cache_usable(
        _recipe(**{"train.freeze": {"policy": "first_k", "stages": 3, "freeze_bn": False}}), model, 3
    )
    assert not cache_usable(_recipe(**{"train.feature_cache": "off"}), model, 3)


def test_cached_training_matches_recomputed_training(tmp_path):
    from edgetl.train.loop import train

    common = {"train.freeze": {"policy": "first_k", "stages": 4}, "train.epochs": 2}
    a = train(_recipe(**common, **{"train.feature_cache": "memory"}), runs_dir=tmp_path, progress=False)
    b = train(_recipe(**common, **{"train.feature_cache": "off"}), runs_dir=tmp_path, progress=False)
    ra, rb = a.metrics(), b.metrics()
    assert [r["cached"] for r in ra] == [True, True] and [r["cached"] for r in rb] == [False, False]
    for x, y in zip(ra, rb):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4, abs=1e-5)
        assert x["val"]["digit"]["accuracy"] == pytest.approx(y["val"]["digit"]["accuracy"], abs=1 / 32 + 1e-9)
    from safetensors.torch import load_file

    wa, wb = load_file(a.checkpoint("last")), load_file(b.checkpoint("last"))
    torch.testing.assert_close(wa["heads.digit.1.weight"], wb["heads.digit.1.weight"], atol=2e-4, rtol=1e-3)
