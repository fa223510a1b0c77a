"""`fashion-scenes` and `fashion-detect`: offline segmentation and detection demos made from data the project
already ships.

Each 64x64 RGB scene is a textured canvas (smooth colour noise plus faint stripes) with one to three
Fashion-MNIST items pasted at random sizes, places and tints; an item's own pixels (not its 28x28 box) become its
class in the mask: background, tops, bottoms, footwear, bags (Fashion-MNIST's classes grouped as in the
quickstart's second task). A later item covers an earlier one, in the image and in the mask. The scene's
classification label (`main`) is the group of its largest visible item, for segment + classify recipes.

`fashion-detect` (`make_detect_scenes`): 96x96 canvases of the same kind with one to four items of 16-44 px,
placed so that no two boxes overlap by more than 0.2 IoU (a detector must still see each object); a box is the
tight box of the item's own pixels, its class the item's group (tops, bottoms, footwear, bags); `main` is again the
group of the largest item, for detect + classify recipes.

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


def _canvas(rng: np.random.Generator, size: int = SCENE_SIZE) -> np.ndarray:
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    from PIL import Image

    base = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
    stripes = 18 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    noise = rng.normal(0, 6, size=(size, size, 1))
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


DETECT_SIZE = 96
DETECT_SCENES = {"train": 2400, "test": 600}


def _iou(a, b) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


def make_detect_scenes(items: np.ndarray, item_labels: np.ndarray, n: int, rng: np.random.Generator):
    """n detection scenes: (images uint8 [n, 96, 96, 3], boxes [float32 [k, 4] x1 y1 x2 y2], classes [int64 [k]]
    (indices into FASHION_GROUPS), main labels)."""
    images = np.empty((n, DETECT_SIZE, DETECT_SIZE, 3), dtype=np.uint8)
    all_boxes, all_classes, main = [], [], []
    for s in range(n):
        img = _canvas(rng, DETECT_SIZE)
        boxes: list[np.ndarray] = []
        classes: list[int] = []
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(len(items)))
            side = int(rng.integers(16, 45))
            item = _resize(items[i], side).astype(np.float32)
            ys, xs = np.nonzero(item > 40)
            if not len(ys):
                continue
            for _try in range(10):  # a place that leaves every object visible
                y, x = (int(v) for v in rng.integers(0, DETECT_SIZE - side + 1, size=2))
                box = np.array([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1], np.float32)
                if all(_iou(box, b) <= 0.2 for b in boxes):
                    break
            else:
                continue
            alpha = np.clip(item / 255.0 * 1.6, 0, 1)[..., None]
            tint = rng.uniform(0.35, 1.0, size=3) * 255
            patch = img[y : y + side, x : x + side]
            img[y : y + side, x : x + side] = patch * (1 - alpha) + (item[..., None] / 255.0) * tint * alpha
            boxes.append(box)
            classes.append(FASHION_GROUPS.index(FASHION_GROUP_OF[int(item_labels[i])]))
        images[s] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        b = np.array(boxes, np.float32).reshape(-1, 4)
        all_boxes.append(b)
        all_classes.append(np.array(classes, np.int64))
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        main.append(FASHION_GROUPS[classes[int(areas.argmax())]] if classes else FASHION_GROUPS[0])
    return images, all_boxes, all_classes, main


def _split_scenes(make, counts: dict[str, int], seed: int, stream: int) -> tuple:
    """(split, *make(...)) per split: scenes from Fashion-MNIST's own train / test items, each split with its
    own seeded generator ([seed, stream] for train, [seed, stream + 1] for test)."""
    fm = load_fashion_mnist()
    labels = np.array([FASHION_CLASSES.index(v) for v in fm.columns["label"]])
    parts = []
    for split, n in counts.items():
        rows = np.flatnonzero(fm.split == split)
        rng = np.random.default_rng([seed, stream if split == "train" else stream + 1])
        parts.append((split, *make(fm.images[rows, :, :, 0], labels[rows], n, rng)))
    return tuple(parts)


@lru_cache(maxsize=2)
def _detect_scenes(seed: int) -> tuple:
    return _split_scenes(make_detect_scenes, DETECT_SCENES, seed, 2)


def load_fashion_detect(seed: int = SEED) -> RawDataset:
    from edgetl.data.boxes import BoxTable

    parts = _detect_scenes(seed)
    images = np.concatenate([p[1] for p in parts])
    table = BoxTable(
        sizes=np.full((len(images), 2), DETECT_SIZE, dtype=np.int64),
        boxes=[b for p in parts for b in p[2]],
        classes=[c for p in parts for c in p[3]],
    )
    return RawDataset(
        kind="image",
        name="fashion-detect",
        images=images,
        columns={"main": [m for p in parts for m in p[4]], "boxes": [None] * len(images)},
        dense={"boxes": table},
        split=np.array([p[0] for p in parts for _ in range(len(p[1]))]),
        class_names={"main": list(FASHION_GROUPS), "boxes": list(FASHION_GROUPS)},
    )


@lru_cache(maxsize=2)
def _scenes(seed: int) -> tuple:
    return _split_scenes(make_scenes, SCENES, seed, 0)


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
