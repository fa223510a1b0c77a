"""Object-detection annotations on disk: COCO JSON, YOLO txt folders, and a boxes column of a CSV/JSONL manifest.

Each reader yields a `RawDataset` whose images stay paths and whose boxes are one `BoxTable` (original pixels,
x1, y1, x2, y2, class indices), so the three formats look the same to training. Image sizes come from image
headers (nothing is decoded), since boxes are moved to the model's size later and need the original one.
Every box passes through `check_boxes`, the one place that decides what is clipped and what is refused, so a
box means the same whichever file listed it. A bad file is an EdgetlError of one line naming the file and the
line, row or annotation at fault; images without boxes are negatives (kept: they teach "nothing here").
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetl.data.boxes import BoxTable
from edgetl.data.decode import image_size
from edgetl.data.examples import RawDataset
from edgetl.data.files import IMAGE_SUFFIXES
from edgetl.data.lazy import ImageFiles
from edgetl.errors import EdgetlError
from edgetl.runtime.limits import MAX_MANIFEST_BYTES, MAX_RECIPE_BYTES, read_limited, regular_file

__all__ = ["boxes_from_manifest", "check_boxes", "load_coco", "load_yolo", "parse_boxes_cell"]

log = logging.getLogger("edgetl")

CLIP_TOLERANCE = 0.01  # pixels: a coordinate this close outside its image is rounding (YOLO's 6 decimals), not a clip
_YOLO_SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test"}  # folder -> split (Roboflow: valid)
_YOLO_LAYOUT = "images/<split>/*.jpg with labels/<split>/*.txt (split = train, val, test; optional)"


def check_boxes(
    xyxy, h, w, where: str | Callable[[int], str], tolerance: float = CLIP_TOLERANCE
) -> tuple[np.ndarray, int]:
    """Boxes [n, 4] (x1, y1, x2, y2, pixels) of images h x w (scalars, or one per box) -> (the boxes clipped to
    their image as float32, how many were partly outside).

    Shared by every reader so a box is judged one way: a partly outside box is an annotator's overshoot and is
    clipped (counted, for the start-of-run summary); a non-finite, empty or entirely outside box is a broken
    annotation and is refused, naming the first bad box by `where` (a string, or box index -> string).
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    if not n:
        return np.zeros((0, 4), np.float32), 0
    hh = np.broadcast_to(np.asarray(h, dtype=np.float64), (n,))
    ww = np.broadcast_to(np.asarray(w, dtype=np.float64), (n,))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(b).all(axis=1)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        empty = finite & ((bw <= 0) | (bh <= 0))
        outside = finite & ~empty & ((b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= ww) | (b[:, 1] >= hh))
    bad = ~finite | empty | outside
    if bad.any():
        i = int(np.argmax(bad))
        loc = where(i) if callable(where) else where
        coords = ", ".join(f"{v:g}" for v in b[i])
        if not finite[i]:
            raise EdgetlError(f"{loc}: box (x1, y1, x2, y2 = {coords}) has a coordinate that is not a finite number")
        if empty[i]:
            raise EdgetlError(
                f"{loc}: box has width {bw[i]:g} and height {bh[i]:g} pixels; both must be > 0 "
                f"(x1, y1, x2, y2 = {coords})"
            )
        raise EdgetlError(
            f"{loc}: box (x1, y1, x2, y2 = {coords}) lies entirely outside its {ww[i]:g}x{hh[i]:g} (w x h) image"
        )
    partly = (b[:, 0] < -tolerance) | (b[:, 1] < -tolerance) | (b[:, 2] > ww + tolerance) | (b[:, 3] > hh + tolerance)
    out = np.stack(
        [np.clip(b[:, 0], 0, ww), np.clip(b[:, 1], 0, hh), np.clip(b[:, 2], 0, ww), np.clip(b[:, 3], 0, hh)], axis=1
    )
    return out.astype(np.float32), int(partly.sum())


def _unique_names(names: list[str], where: str) -> list[str]:
    """Class names are looked up by name downstream (metrics, the bundle): two classes may not share one."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise EdgetlError(f"{where}: class name {name!r} appears twice")
        seen.add(name)
    return names


def _box_dataset(name: str, images: list[str], column: str, table: BoxTable, names: list[str], split) -> RawDataset:
    """Paths only, like every file source: images are decoded on demand (`edgetl.data.lazy`)."""
    return RawDataset(
        "image",
        name,
        files=ImageFiles(list(images)),
        columns={column: [None] * len(images)},
        sources=list(images),
        split=split,
        class_names={column: list(names)},
        dense={column: table},
    )


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------------------------------ COCO
def _read_json(path: Path) -> object:
    try:
        with path.open(encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EdgetlError(f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise EdgetlError(f"{path}: not UTF-8 text ({e.reason})") from None
    except (ValueError, RecursionError) as e:  # an integer over 4300 digits, absurd nesting
        raise EdgetlError(f"{path}: invalid JSON ({str(e).split(';')[0]})") from None
    except OSError as e:
        raise EdgetlError(f"{path}: cannot read ({e.strerror})") from None


def load_coco(path: str | Path, column: str = "boxes", image_root: str | Path | None = None) -> RawDataset:
    """A COCO detection file: `images` [{id, file_name, width, height}], `annotations` [{image_id, category_id,
    bbox [x, y, w, h]}], `categories` [{id, name}].

    Class index = the category's rank by id (ids need not be contiguous: COCO's own skip 12, 26, ...). Image
    paths are relative to `image_root`, by default the JSON's folder (or its `images/` sub-folder when the file
    is there and not beside the JSON). Crowd annotations (`iscrowd: 1`) mark regions, not objects: skipped and
    counted. Images without annotations are negatives. A missing width/height is read from the image header.
    """
    path = Path(path)
    regular_file(path, "COCO annotations")  # no size limit: real COCO files are hundreds of MB
    data = _read_json(path)
    if not isinstance(data, dict):
        raise EdgetlError(f"{path}: a COCO file is a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise EdgetlError(f"{path}: no {key!r} key (a COCO file has images, annotations and categories)")
        if not isinstance(data[key], list):
            raise EdgetlError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")

    cats: list[tuple[int, str]] = []
    seen: set[int] = set()
    for k, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise EdgetlError(f"{path}: categories[{k}] needs an integer 'id'")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise EdgetlError(f"{path}: categories[{k}] (id {c['id']}) needs a 'name'")
        if c["id"] in seen:
            raise EdgetlError(f"{path}: categories[{k}]: id {c['id']} appears twice")
        seen.add(c["id"])
        cats.append((c["id"], c["name"].strip()))
    if not cats:
        raise EdgetlError(f"{path}: 'categories' is empty (a detector needs at least one class)")
    cats.sort()
    cat_index = {cid: i for i, (cid, _) in enumerate(cats)}
    names = _unique_names([name for _, name in cats], f"{path}: categories")

    if not data["images"]:
        raise EdgetlError(f"{path}: 'images' is empty")
    json_dir = path.parent
    root = Path(image_root) if image_root is not None else json_dir
    images: list[str] = []
    sizes = np.zeros((len(data["images"]), 2), dtype=np.int64)
    row_of: dict[object, int] = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise EdgetlError(f"{path}: images[{k}] needs an 'id'")
        iid = im["id"]
        where = f"{path}: images[{k}] (id {iid!r})"
        if not isinstance(iid, int | str) or isinstance(iid, bool):
            raise EdgetlError(f"{where}: 'id' must be an integer or a string")
        if iid in row_of:
            raise EdgetlError(f"{where}: image id {iid!r} appears twice")
        fn = im.get("file_name")
        if not isinstance(fn, str) or not fn.strip():
            raise EdgetlError(f"{where}: needs a 'file_name'")
        p = root / fn
        if image_root is None and not p.exists() and (json_dir / "images" / fn).exists():
            p = json_dir / "images" / fn
        regular_file(p, f"{where}: file_name {fn!r}")
        w, h = im.get("width"), im.get("height")
        if w is None or h is None:  # some exporters leave them out: the header has them (nothing is decoded)
            w, h = image_size(p)
        elif not (
            _is_number(w) and _is_number(h) and w > 0 and h > 0 and float(w).is_integer() and float(h).is_integer()
        ):
            raise EdgetlError(f"{where}: width and height must be positive integers, got {w!r} x {h!r}")
        row_of[iid] = k
        images.append(str(p))
        sizes[k] = (int(h), int(w))

    rows, cls, xyxy, ann_at = [], [], [], []
    crowd = 0
    for k, a in enumerate(data["annotations"]):
        if not isinstance(a, dict):
            raise EdgetlError(f"{path}: annotations[{k}] must be a JSON object")
        where = f"{path}: annotations[{k}] (id {a.get('id')!r})"
        if a.get("iscrowd") in (1, True):
            crowd += 1
            continue
        iid = a.get("image_id")
        if not isinstance(iid, int | str) or isinstance(iid, bool) or iid not in row_of:
            raise EdgetlError(f"{where}: image_id {iid!r} is not in 'images'")
        cid = a.get("category_id")
        if not isinstance(cid, int) or isinstance(cid, bool) or cid not in cat_index:
            raise EdgetlError(f"{where}: category_id {cid!r} is not in 'categories' (ids: {_ids(cats)})")
        bb = a.get("bbox")
        if not isinstance(bb, list) or len(bb) != 4 or not all(_is_number(v) for v in bb):
            raise EdgetlError(f"{where}: 'bbox' must be 4 numbers [x, y, width, height], got {_short(bb)}")
        x, y, bw, bh = (float(v) for v in bb)
        rows.append(row_of[iid])
        cls.append(cat_index[cid])
        xyxy.append((x, y, x + bw, y + bh))
        ann_at.append(k)
    rows_a = np.asarray(rows, dtype=np.int64)
    boxes_a = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    kept, clipped = check_boxes(
        boxes_a,
        sizes[rows_a, 0],
        sizes[rows_a, 1],
        lambda i: f"{path}: annotations[{ann_at[i]}] (id {data['annotations'][ann_at[i]].get('id')!r})",
    )
    table = _group(len(images), rows_a, kept, np.asarray(cls, dtype=np.int64), sizes, clipped)
    if crowd:
        log.info("%s: skipped %d crowd annotations (iscrowd: 1 marks a region, not one object)", path, crowd)
    return _box_dataset(str(path), images, column, table, names, None)


def _ids(cats: list[tuple[int, str]]) -> str:
    ids = [str(cid) for cid, _ in cats]
    return ", ".join(ids[:10]) + (f", ... ({len(ids)} in all)" if len(ids) > 10 else "")


def _short(v, limit: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _group(n: int, rows: np.ndarray, boxes: np.ndarray, classes: np.ndarray, sizes: np.ndarray, clipped: int):
    """Per-box (row, box, class) -> a BoxTable, each image's boxes in the order they were listed."""
    order = np.argsort(rows, kind="stable")
    rows, boxes, classes = rows[order], boxes[order], classes[order]
    cuts = np.searchsorted(rows, np.arange(n + 1))
    return BoxTable(
        sizes=sizes,
        boxes=[boxes[cuts[i] : cuts[i + 1]].astype(np.float32) for i in range(n)],
        classes=[classes[cuts[i] : cuts[i + 1]].astype(np.int64) for i in range(n)],
        clipped=clipped,
    )


# ------------------------------------------------------------------------------------------------------------ YOLO
def _yolo_names(root: Path, classes: list[str] | None) -> list[str]:
    """The class names, from the first place that has them: the argument, data.yaml `names`, classes.txt."""
    if classes is not None:
        names = [str(c).strip() for c in classes]
        if not names or not all(names):
            raise EdgetlError(f"{root}: classes must be a non-empty list of non-empty names")
        return _unique_names(names, "classes")
    yml = root / "data.yaml"
    if yml.is_file():
        import yaml

        try:
            data = yaml.safe_load(read_limited(yml, "YOLO data.yaml", MAX_RECIPE_BYTES).decode("utf-8-sig"))
        except yaml.YAMLError as e:
            raise EdgetlError(f"{yml}: invalid YAML ({e})") from None
        except UnicodeDecodeError as e:
            raise EdgetlError(f"{yml}: not UTF-8 text ({e.reason})") from None
        raw = data.get("names") if isinstance(data, dict) else None
        if raw is not None:
            if isinstance(raw, dict):  # {0: person, 1: bicycle}
                try:
                    by_index = {int(k): v for k, v in raw.items() if not isinstance(k, bool | float)}
                except (TypeError, ValueError):
                    by_index = {}
                if len(by_index) != len(raw) or sorted(by_index) != list(range(len(raw))):
                    raise EdgetlError(
                        f"{yml}: `names` keys must be the class indices 0..{len(raw) - 1}, got {_short(list(raw))}"
                    )
                raw = [by_index[i] for i in range(len(raw))]
            if not isinstance(raw, list) or not raw or any(v is None or not str(v).strip() for v in raw):
                raise EdgetlError(f"{yml}: `names` must be a non-empty list of names, or a mapping index: name")
            return _unique_names([str(v).strip() for v in raw], f"{yml}: names")
    txt = root / "classes.txt"
    if txt.is_file():
        from edgetl.data.masks import read_classes_file

        regular_file(txt, "YOLO classes.txt", MAX_MANIFEST_BYTES)
        return _unique_names(read_classes_file(txt), str(txt))
    raise EdgetlError(
        f"{root}: no class names for the YOLO labels: pass classes=[...], or write {yml} with `names:` "
        f"(a list, or a mapping index: name), or {txt} (one name per line, line 1 = class 0)"
    )


def _parse_yolo_label(label: Path, n_classes: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One label file -> (boxes [n, 4] xyxy pixels, classes [n], clipped); lines are `class cx cy w h` in 0..1."""
    text = read_limited(label, "YOLO label file", MAX_MANIFEST_BYTES)
    try:
        lines = text.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise EdgetlError(f"{label}: not UTF-8 text ({e.reason})") from None
    cls, vals, line_of = [], [], []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            hint = "; polygon (segmentation) labels are not boxes" if len(fields) > 5 else ""
            raise EdgetlError(
                f"{label}:{n}: expected 5 numbers 'class cx cy w h' (normalised to 0..1), got {len(fields)} fields{hint}"
            )
        nums = []
        for tok in fields:
            try:
                v = float(tok)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise EdgetlError(f"{label}:{n}: {_short(tok, 30)} is not a number (expected 'class cx cy w h')")
            nums.append(v)
        c = nums[0]
        if not c.is_integer() or not 0 <= c < n_classes:
            raise EdgetlError(
                f"{label}:{n}: class {fields[0]!r} is not an integer in 0..{n_classes - 1} ({n_classes} class names)"
            )
        cls.append(int(c))
        vals.append(nums[1:])
        line_of.append(n)
    if not vals:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 0
    v = np.asarray(vals, dtype=np.float64)
    cx, cy, bw, bh = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
    bad = (bw <= 0) | (bh <= 0)  # said in the file's own normalised units (the shared check would say pixels)
    if bad.any():
        i = int(np.argmax(bad))
        raise EdgetlError(f"{label}:{line_of[i]}: box width {bw[i]:g} and height {bh[i]:g} must both be > 0")
    xyxy = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], axis=1)
    kept, clipped = check_boxes(xyxy, h, w, lambda i: f"{label}:{line_of[i]}")
    return kept, np.asarray(cls, dtype=np.int64), clipped


def load_yolo(root: str | Path, column: str = "boxes", classes: list[str] | None = None) -> RawDataset:
    """The Ultralytics layout: `root/images/<split>/x.jpg` with `root/labels/<split>/x.txt` (split folders
    train, val (or valid), test; optional: `root/images/x.jpg` with `root/labels/x.txt` has no split).

    Label lines are `class cx cy w h`, normalised to 0..1. A missing or empty label file means "no objects"
    (YOLO's own convention): a negative, counted in the log. A label file without its image is an error (a
    renamed or deleted image would otherwise lose its boxes silently). Class names: `classes`, else
    data.yaml `names`, else classes.txt.
    """
    root = Path(root)
    if not root.is_dir():
        raise EdgetlError(f"data.path: YOLO folder not found: {root}")
    img_dir, lab_dir = root / "images", root / "labels"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise EdgetlError(f"{root}: no {d.name}/ folder (the YOLO layout: {_YOLO_LAYOUT})")
    names = _yolo_names(root, classes)
    split_dirs = [d for d in _YOLO_SPLITS if (img_dir / d).is_dir()]
    if split_dirs:
        bases = [(img_dir / d, lab_dir / d, _YOLO_SPLITS[d]) for d in split_dirs]
        loose = [p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            log.warning("%s: %d images directly in images/ are ignored (the split folders are used)", root, len(loose))
    else:
        bases = [(img_dir, lab_dir, None)]

    images: list[str] = []
    split: list[str | None] = []
    sizes: list[tuple[int, int]] = []
    boxes: list[np.ndarray] = []
    cls: list[np.ndarray] = []
    clipped = unlabelled = 0
    for ibase, lbase, split_name in bases:
        files = sorted(p for p in ibase.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        keys = {p.relative_to(ibase).with_suffix("").as_posix() for p in files}
        if lbase.is_dir():
            for label in sorted(lbase.rglob("*.txt")):
                rel = label.relative_to(lbase)
                if rel.as_posix() == "classes.txt" or label.is_dir():
                    continue
                if rel.with_suffix("").as_posix() not in keys:
                    raise EdgetlError(
                        f"{label}: label file without an image (no {rel.with_suffix('').as_posix()}.<image> in {ibase})"
                    )
        for f in files:
            regular_file(f, "image")
            w, h = image_size(f)
            label = lbase / f.relative_to(ibase).with_suffix(".txt")
            if label.exists():
                b, c, nclip = _parse_yolo_label(label, len(names), h, w)
            else:
                b, c, nclip = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 0
                unlabelled += 1
            images.append(str(f))
            split.append(split_name)
            sizes.append((h, w))
            boxes.append(b)
            cls.append(c)
            clipped += nclip
    if not images:
        raise EdgetlError(f"{img_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}; layout: {_YOLO_LAYOUT})")
    if unlabelled:
        log.info("%s: %d of %d images have no label file (negatives: no objects)", root, unlabelled, len(images))
    table = BoxTable(np.asarray(sizes, dtype=np.int64).reshape(-1, 2), boxes, cls, clipped)
    return _box_dataset(str(root), images, column, table, names, np.array(split) if split_dirs else None)


# -------------------------------------------------------------------------------------------- manifest boxes column
def parse_boxes_cell(value, where: str, class_names: list[str] | None) -> tuple[np.ndarray, list[str | int]]:
    """One manifest cell -> (boxes float32 [n, 4], labels).

    The cell lists objects `{"label": "shirt", "box": [x1, y1, x2, y2]}`: corners in the ORIGINAL image's
    pixels (not normalised, not x, y, w, h). A CSV cell holds that list as a JSON string; a JSONL row holds
    the list itself. An empty cell, null or `[]` is a negative (an image with no objects). A label is a class
    name, or a class index when `class_names` is given. Geometry against the image size is checked later, by
    `check_boxes`, once the size is known.
    """
    empty = np.zeros((0, 4), np.float32)
    if value is None or (isinstance(value, str) and not value.strip()):
        return empty, []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e).split(";")[0]
            raise EdgetlError(
                f'{where}: not a JSON list of {{"label": ..., "box": [x1, y1, x2, y2]}} objects ({msg})'
            ) from None
    if not isinstance(value, list):
        raise EdgetlError(
            f'{where}: expected a list of {{"label": ..., "box": [x1, y1, x2, y2]}} objects, got {type(value).__name__}'
        )
    boxes, labels = [], []
    for k, obj in enumerate(value):
        at = f"{where}: box {k}"
        if not isinstance(obj, dict) or "label" not in obj or "box" not in obj:
            raise EdgetlError(f'{at}: expected {{"label": ..., "box": [x1, y1, x2, y2]}}, got {_short(obj)}')
        label, box = obj["label"], obj["box"]
        if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
            raise EdgetlError(f"{at}: 'box' must be 4 numbers [x1, y1, x2, y2] in original pixels, got {_short(box)}")
        if isinstance(label, str) and label.strip():
            label = label.strip()
            if class_names is not None and label not in class_names:
                raise EdgetlError(f"{at}: label {label!r} is not one of the {len(class_names)} class names")
        elif isinstance(label, int) and not isinstance(label, bool):
            if class_names is None:
                raise EdgetlError(f"{at}: label {label} is a class index, but no class names were given to index")
            if not 0 <= label < len(class_names):
                raise EdgetlError(f"{at}: class index {label} is not in 0..{len(class_names) - 1}")
        else:
            raise EdgetlError(f"{at}: 'label' must be a class name, got {_short(label)}")
        boxes.append([float(v) for v in box])
        labels.append(label)
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4) if boxes else empty), labels


def boxes_from_manifest(
    rows_cells: list,
    image_paths: list[str],
    where: str,
    column: str,
    class_names: list[str] | None,
    first_row: int | None = None,
) -> tuple[BoxTable, list[str]]:
    """A manifest's boxes column (one cell per row, see `parse_boxes_cell`) -> (BoxTable, class names).

    Class names: `class_names` when given, else the sorted labels seen (a stable order whatever the row
    order). Image sizes are read from the image headers. Errors name `where: row N` with the numbering of
    `load_manifest_file`: `first_row` defaults to 2 for a .csv `where` (line 1 is the header), else 1.
    """
    if len(rows_cells) != len(image_paths):
        raise ValueError(f"{len(rows_cells)} boxes cells for {len(image_paths)} images")
    if first_row is None:
        first_row = 2 if str(where).lower().endswith(".csv") else 1
    if class_names is not None:
        class_names = _unique_names([str(c) for c in class_names], f"{where}: column {column!r} class names")
    parsed = [
        parse_boxes_cell(cell, f"{where}: row {n}: column {column!r}", class_names)
        for n, cell in enumerate(rows_cells, first_row)
    ]
    names = class_names or sorted({lab for _, labels in parsed for lab in labels if isinstance(lab, str)})
    index = {name: i for i, name in enumerate(names)}
    sizes = np.zeros((len(image_paths), 2), dtype=np.int64)
    boxes, classes, clipped = [], [], 0
    for i, ((b, labels), img) in enumerate(zip(parsed, image_paths)):
        w, h = image_size(img)
        sizes[i] = (h, w)
        row = f"{where}: row {i + first_row}: column {column!r}"
        kept, n_clipped = check_boxes(b, h, w, lambda k, row=row: f"{row}: box {k}")
        boxes.append(kept)
        classes.append(np.asarray([lab if isinstance(lab, int) else index[lab] for lab in labels], dtype=np.int64))
        clipped += n_clipped
    return BoxTable(sizes, boxes, classes, clipped), list(names)
