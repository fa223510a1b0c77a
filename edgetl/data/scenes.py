"""`fashion-scenes`: an offline segmentation demo made from data the project already ships.

Each 64x64 RGB scene is a textured canvas (smooth colour noise plus faint stripes) with one to three
Fashion-MNIST items pasted at random sizes, places and tints; an item's own pixels (not its 28x28 box) become its
class in the mask: background, tops, bottoms, footwear, bags (Fashion-MNIST's classes grouped as in the
quickstart's second task). A later item covers an earlier one, in the image and in the mask. The scene's
classification label (`main`) is the group of its largest visible item, for segment + classify recipes.

Seeded and pure: the same seed gives the same scenes on every machine. Scenes from Fashion-MNIST's train items
form the train split, scenes from its test items the test split, so no item is seen in both.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgetl.data.builtin import FASHION_CLASSES, FASHION_GROUP_OF, FASHION_GROUPS, load_fashion_mnist
from edgetl.data.examples import RawDataset

SCENE_SIZE = 64
SCENE_CLASSES = ["background", *FASHION_GROUPS]
SCENES = {"train": 3000, "test": 600}
SEED = 20261207


def _resize(a: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((side, side), Image.BILINEAR))


def _canvas(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    from PIL import Image

    base = np.asarray(Image.fromarray(coarse).resize((SCENE_SIZE, SCENE_SIZE), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:SCENE_SIZE, 0:SCENE_SIZE]
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
    stripes = 18 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    noise = rng.normal(0, 6, size=(SCENE_SIZE, SCENE_SIZE, 1))
    return base + stripes[..., None] + noise


def make_scenes(items: np.ndarray, item_labels: np.ndarray, n: int, rng: np.random.Generator):
    """n scenes from the given 28x28 items: (images uint8 [n,64,64,3], masks uint8 [n,64,64], main labels)."""
    images = np.empty((n, SCENE_SIZE, SCENE_SIZE, 3), dtype=np.uint8)
    masks = np.zeros((n, SCENE_SIZE, SCENE_SIZE), dtype=np.uint8)
    main = []
    for s in range(n):
        img = _canvas(rng)
        mask = masks[s]
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(items)))
            side = int(rng.integers(22, 41))
            item = _resize(items[i], side).astype(np.float32)
            y, x = (int(v) for v in rng.integers(0, SCENE_SIZE - side + 1, size=2))
            alpha = np.clip(item / 255.0 * 1.6, 0, 1)[..., None]
            tint = rng.uniform(0.35, 1.0, size=3) * 255
            patch = img[y : y + side, x : x + side]
            img[y : y + side, x : x + side] = patch * (1 - alpha) + (item[..., None] / 255.0) * tint * alpha
            cls = SCENE_CLASSES.index(FASHION_GROUP_OF[int(item_labels[i])])
            mask[y : y + side, x : x + side][item > 40] = cls
        images[s] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        counts = np.bincount(mask.reshape(-1), minlength=len(SCENE_CLASSES))[1:]
        main.append(FASHION_GROUPS[int(counts.argmax())])
    return images, masks, main


@lru_cache(maxsize=2)
def _scenes(seed: int) -> tuple:
    fm = load_fashion_mnist()
    labels = np.array([FASHION_CLASSES.index(v) for v in fm.columns["label"]])
    parts = []
    for split, n in SCENES.items():
        rows = np.flatnonzero(fm.split == split)
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        parts.append((split, *make_scenes(fm.images[rows, :, :, 0], labels[rows], n, rng)))
    return tuple(parts)


def load_fashion_scenes(seed: int = SEED) -> RawDataset:
    parts = _scenes(seed)
    images = np.concatenate([p[1] for p in parts])
    masks = np.concatenate([p[2] for p in parts])
    main = [m for p in parts for m in p[3]]
    split = np.array([p[0] for p in parts for _ in range(len(p[1]))])
    return RawDataset(
        kind="image",
        name="fashion-scenes",
        images=images,
        columns={"main": main, "mask": [None] * len(images)},
        dense={"mask": masks},
        split=split,
        class_names={"main": list(FASHION_GROUPS), "mask": list(SCENE_CLASSES)},
    )
