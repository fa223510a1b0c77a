"""`data.augment` as a list (torchvision.transforms.v2 on the training device): recipe forms and one-line
errors, per-example draws that depend only on (seed, epoch, step), `hflip` unchanged, resume exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_recipe_dict
from safetensors.numpy import load_file
from test_resume import SMALL  # the same small, resumable budget

from edgetl.data.augment import BatchAugment, batch_seed, steps_of, uses_hflip
from edgetl.errors import EdgetlError
from edgetl.recipe import load_recipe, recipe_from_dict
from edgetl.runs.layout import Run
from edgetl.train.loop import train


def _recipe(**over):
    return recipe_from_dict(tiny_recipe_dict(**{**SMALL, **over}))


def test_recipe_forms(tmp_path):
    r = _recipe(
        **{
            "data.augment": [
                "hflip",
                {"random_resized_crop": {"scale": [0.5, 1.0]}},
                {"name": "color_jitter", "brightness": 0.2},
                "trivial_augment",
                {"randaugment": {"num_ops": 1}},
                {"mixup": {"alpha": 0.4}},
                "cutmix",
            ]
        }
    )
    names = [s.name for s in steps_of(r.data.augment)]
    assert names == [
        "hflip",
        "random_resized_crop",
        "color_jitter",
        "trivial_augment",
        "randaugment",
        "mixup",
        "cutmix",
    ]
    assert r.data.augment[1].scale == (0.5, 1.0) and r.data.augment[5].alpha == 0.4
    assert uses_hflip("hflip") and uses_hflip(r.data.augment) and not uses_hflip("none")
    p = tmp_path / "r.yaml"
    p.write_text(_recipe().to_yaml())
    over = load_recipe(p, ["data.augment=[random_resized_crop, hflip]"])  # a command-line list
    assert [s.name for s in over.data.augment] == ["random_resized_crop", "hflip"]


@pytest.mark.parametrize(
    "augment,extra,needle",
    [
        (["blur"], {}, "must be one of"),
        ([{"color_jitter": {"scale": [0.5, 1]}}], {}, "color_jitter takes no 'scale' (its settings: brightness"),
        ([{"random_resized_crop": {"scale": [0.9, 0.2]}}], {}, "a range must be [low, high]"),
        (["mixup"], {"tasks": [{"name": "d", "column": "label"}, {"name": "p", "column": "parity"}]}, "mixup mixes"),
        (["cutmix"], {"tasks": [{"name": "d", "kind": "regression", "column": "label"}]}, "single-label"),
    ],
)
def test_bad_augment_is_one_line(augment, extra, needle):
    d = tiny_recipe_dict(**{"data.augment": augment})
    d.update(extra)
    with pytest.raises(EdgetlError) as e:
        recipe_from_dict(d)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_draws_depend_on_the_seed_only_and_leave_global_rng_alone():
    r = _recipe(**{"data.augment": ["random_resized_crop", "color_jitter", "trivial_augment"]})
    aug = BatchAugment.make(r, 10)
    ims = [torch.from_numpy(np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)) for i in range(4)]

    def run(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return aug.images(ims)

    before = torch.random.get_rng_state()
    a, b, c = run(batch_seed(0, 1, 2)), run(batch_seed(0, 1, 2)), run(batch_seed(0, 1, 3))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(x.shape == (32, 32, 3) and x.dtype == torch.uint8 for x in a)  # cropped to input.image_size
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(a[0], a[1])  # examples get their own draw (different images anyway) ...
    same = [ims[0]] * 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        out = aug.images(same)
    assert not torch.equal(out[0], out[1])  # ... even when the images are identical


def test_hflip_list_trains_like_hflip(tmp_path):
    a = train(_recipe(**{"data.augment": "hflip", "train.epochs": 1}), name="a", runs_dir=tmp_path, progress=False)
    b = train(_recipe(**{"data.augment": ["hflip"], "train.epochs": 1}), name="b", runs_dir=tmp_path, progress=False)
    assert [m["train_loss"] for m in a.metrics()] == [m["train_loss"] for m in b.metrics()]


def test_mid_epoch_resume_with_augment_list_is_exact(tmp_path):
    over = {
        "data.augment": ["random_resized_crop", "hflip", "color_jitter", "mixup"],
        "train.checkpoint_every_steps": 1,
    }
    ref = train(_recipe(**over), name="ref", runs_dir=tmp_path, progress=False)
    stopped = train(_recipe(**over), name="stop", runs_dir=tmp_path, progress=False, stop_after_steps=6)
    torch.manual_seed(12345)  # the global RNG state at resume must not matter
    resumed = train(_recipe(), resume=Run(stopped.dir), progress=False)
    assert [m["train_loss"] for m in ref.metrics()] == [m["train_loss"] for m in resumed.metrics()]
    wa, wb = load_file(str(ref.checkpoint("last"))), load_file(str(resumed.checkpoint("last")))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
