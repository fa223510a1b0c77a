"""Tiny generated user data for the docs/your-data.md recipes: PNG folders, image manifests, text CSV/JSONL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

COLOURS = {"red": (200, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 210)}
SHAPES = ("square", "bar")


def _png(path: Path, colour, shape: str, rng) -> None:
    from PIL import Image

    img = rng.integers(0, 40, (32, 32, 3)).astype(np.uint8)
    if shape == "square":
        img[8:24, 8:24] = colour
    else:
        img[12:20, 2:30] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def image_folder(root: Path, per_class: int = 12, splits: bool = True) -> Path:
    """root/[train|val|test/]<colour>/<n>.png: three easily told apart classes."""
    rng = np.random.default_rng(0)
    parts = (
        {"train": per_class, "val": max(2, per_class // 3), "test": max(2, per_class // 3)}
        if splits
        else {"": per_class}
    )
    for part, n in parts.items():
        for c, rgb in COLOURS.items():
            for i in range(n):
                _png(root / part / c / f"{i}.png", rgb, SHAPES[i % 2], rng)
    return root


def image_manifest(root: Path, n: int = 36, fmt: str = "csv", blank_rows: tuple[int, ...] = ()) -> Path:
    """root/images/*.png + root/labels.{csv,jsonl}: columns path, colour, shape, size (a number), tags, split."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % 3]
        shape = SHAPES[(i // 3) % 2]
        _png(root / "images" / f"{i}.png", COLOURS[colour], shape, rng)
        rows.append(
            {
                "path": f"images/{i}.png",
                "colour": "" if i in blank_rows else colour,
                "shape": shape,
                "size": round(float(i % 7) + 0.5, 2),
                "tags": "|".join(t for t in (colour, shape)),
                "split": "test" if i % 6 == 5 else "val" if i % 6 == 4 else "train",
            }
        )
    return _write(root / f"labels.{fmt}", rows, fmt)


def text_manifest(root: Path, n: int = 48, fmt: str = "csv", blank_rows: tuple[int, ...] = ()) -> Path:
    """root/reviews.{csv,jsonl}: columns text, sentiment (pos/neg), stars (1-5 as a number), split."""
    good = ["great", "lovely", "excellent", "wonderful", "superb", "fantastic"]
    bad = ["awful", "terrible", "horrible", "dreadful", "poor", "boring"]
    things = ["film", "book", "meal", "hotel", "phone", "game", "song", "trip"]
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        word = (good if pos else bad)[i % 6]
        rows.append(
            {
                "text": f"The {things[i % 8]} was {word}, really {word}.",
                "sentiment": "" if i in blank_rows else ("pos" if pos else "neg"),
                "stars": (4 + i % 2) if pos else (1 + i % 2),
                "split": "test" if i % 8 == 7 else "val" if i % 8 == 6 else "train",
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    return _write(root / f"reviews.{fmt}", rows, fmt)


def _write(path: Path, rows: list[dict], fmt: str) -> Path:
    if fmt == "csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_for_recipe(recipe: dict, root: Path) -> Path | None:
    """The starter recipes for a user's own data read relative paths (data/...): generate tiny data of the shape
    docs/your-data.md describes at root/<data.path>; returns that path (None for built-in datasets)."""
    data = recipe.get("data") or {}
    path = data.get("path")
    if not path or Path(path).is_absolute():
        return None
    target = Path(root) / path
    if target.exists():
        return target
    if data["source"] == "imagefolder":
        return image_folder(target)
    made = (text_manifest if data.get("text_column") else image_manifest)(target.parent, fmt=data["source"])
    assert made == target, f"generated {made}, the recipe reads {target}"
    return made


def seg_folder(root: Path, n: int = 24, size: tuple[int, int] = (40, 48), splits: bool = True) -> Path:
    """root/images/[train|val|test/]<i>.png + root/masks/<same>.png (palette PNG, class indices) + classes.txt:
    a bright square (class 1) and a dark bar (class 2) on noise (class 0); a few pixels of 255 (ignored)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    h, w = size
    parts = {"train": n, "val": max(4, n // 3), "test": max(4, n // 3)} if splits else {"": n}
    for part, count in parts.items():
        for i in range(count):
            img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            mask = np.zeros((h, w), dtype=np.uint8)
            y, x = int(rng.integers(0, h - 16)), int(rng.integers(0, w - 16))
            img[y : y + 16, x : x + 16] = (230, 220, 40)
            mask[y : y + 16, x : x + 16] = 1
            by = int(rng.integers(0, h - 6))
            img[by : by + 6, :] = (20, 40, 200)
            mask[by : by + 6, :] = 2
            mask[0, 0] = 255
            rel = Path(part) / f"{i}.png" if part else Path(f"{i}.png")
            (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "images" / rel)
            m = Image.fromarray(mask, mode="P")
            m.putpalette([0, 0, 0, 255, 255, 0, 0, 0, 255] + [128] * (3 * 253))
            m.save(root / "masks" / rel)
    (root / "masks" / "classes.txt").write_text("background\nsquare\nbar\n")
    return root


def det_folder(root: Path, n: int = 24, size: tuple[int, int] = (72, 120), fmt: str = "yolo") -> Path:
    """Detection data cut from the fashion-detect scenes, stretched to `size` (h, w) so that boxes must be moved
    by the resize policy: a YOLO folder (images/ + labels/ per split, data.yaml names) or a COCO JSON
    (`annotations.json` beside images/). The last image of each split has no boxes (a negative)."""
    from PIL import Image

    from edgetl.data.scenes import DETECT_SIZE, load_fashion_detect

    raw = load_fashion_detect()
    table = raw.dense["boxes"]
    h, w = size
    sx, sy = w / DETECT_SIZE, h / DETECT_SIZE
    parts = {"train": n, "val": max(4, n // 3), "test": max(4, n // 3)}
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 10 + k, "name": c}
                                                                   for k, c in enumerate(raw.class_names["boxes"])]}  # fmt: skip
    row = 0
    for part, count in parts.items():
        for i in range(count):
            name = f"{part}_{i}.png"
            img = root / "images" / part / name if fmt == "yolo" else root / "images" / name
            img.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(raw.images[row]).resize((w, h), Image.BILINEAR).save(img)
            boxes = table.boxes[row] * np.array([sx, sy, sx, sy]) if i < count - 1 else np.zeros((0, 4))
            classes = table.classes[row] if i < count - 1 else np.zeros(0, np.int64)
            row += 1
            if fmt == "yolo":
                lab = root / "labels" / part / f"{part}_{i}.txt"
                lab.parent.mkdir(parents=True, exist_ok=True)
                lab.write_text("".join(
                    f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} "
                    f"{(b[3] - b[1]) / h:.6f}\n" for b, c in zip(boxes, classes)
                ))  # fmt: skip
            else:
                image_id = len(coco["images"]) + 1
                coco["images"].append({"id": image_id, "file_name": name, "width": w, "height": h})
                for b, c in zip(boxes, classes):
                    coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                                "category_id": 10 + int(c), "iscrowd": 0,
                                                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                                         float(b[3] - b[1])]})  # fmt: skip
    if fmt == "yolo":
        (root / "data.yaml").write_text("names: [" + ", ".join(raw.class_names["boxes"]) + "]\n")
    else:
        (root / "annotations.json").write_text(json.dumps(coco))
    return root
