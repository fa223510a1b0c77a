"""User datasets on disk: image folders (one sub-folder per class) and CSV/JSONL manifests.

Every bad file is an EdgetlError naming it: a missing folder or file, an empty class folder, rows without the
declared columns, unreadable or truncated images. Loading keeps only paths (checked to be regular files);
images are decoded on demand (`edgetl.data.lazy`), so an unreadable image surfaces when it is read: training
skips and counts it (see `edgetl.data.stream`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from edgetl.data.decode import decode_image, fit_to_size  # noqa: F401  (files.decode_image: the public name)
from edgetl.data.examples import RawDataset
from edgetl.data.lazy import ImageFiles
from edgetl.errors import EdgetlError
from edgetl.runtime.limits import regular_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_imagefolder(root: str | Path) -> RawDataset:
    root = Path(root)
    if not root.is_dir():
        raise EdgetlError(f"data.path: image folder not found: {root}")
    split_dirs = [d for d in ("train", "val", "test") if (root / d).is_dir()]
    bases = [(root / d, d) for d in split_dirs] if split_dirs else [(root, None)]
    images, labels, sources, split = [], [], [], []
    classes: set[str] = set()
    for base, split_name in bases:
        class_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise EdgetlError(f"{base}: no class sub-folders (expected {base}/<class>/<image files>)")
        for cdir in class_dirs:
            files = sorted(p for p in cdir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise EdgetlError(f"{cdir}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            classes.add(cdir.name)
            for f in files:
                if not f.is_dir():  # a directory named like an image is refused when read, with its name
                    regular_file(f, "image")
                images.append(str(f))
                labels.append(cdir.name)
                sources.append(str(f))
                split.append(split_name)
    return _images_dataset(
        str(root),
        images,
        {"label": labels},
        sources,
        np.array(split) if split_dirs else None,
        {"label": sorted(classes)},
    )


def load_mask_folder(root: str | Path, masks: str | Path) -> RawDataset:
    """Segmentation data: every image under `root` (optionally in train/val/test sub-folders), its mask at the
    same relative path under `masks` (.png); class names from classes.txt in `masks` or `root`."""
    from edgetl.data.masks import MaskFiles, masks_beside, read_classes_file

    root, mask_root = Path(root), Path(masks)
    if not root.is_dir():
        raise EdgetlError(f"data.path: image folder not found: {root}")
    images = sorted(
        str(p)
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and mask_root.resolve() not in p.resolve().parents
    )
    if not images:
        raise EdgetlError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    mask_paths = masks_beside(images, root, mask_root)
    for f in images:
        regular_file(f, "image")
    first = [Path(p).relative_to(root).parts[0] for p in images]
    split = np.array(first) if set(first) <= {"train", "val", "test"} else None
    classes_file = next((d / "classes.txt" for d in (mask_root, root) if (d / "classes.txt").is_file()), None)
    names = {"mask": read_classes_file(classes_file)} if classes_file else {}
    raw = _images_dataset(str(root), images, {"mask": mask_paths}, list(images), split, names)
    raw.dense["mask"] = MaskFiles(mask_paths)
    return raw


def _images_dataset(name, paths, columns, sources, split, class_names) -> RawDataset:
    """Paths only: nothing is decoded here (memory stays flat however large the folder)."""
    return RawDataset(
        "image", name, files=ImageFiles(paths), columns=columns, sources=sources, split=split, class_names=class_names
    )


def _read_rows(path: Path, fmt: str) -> list[dict]:
    if not path.exists():
        raise EdgetlError(f"data.path: {fmt} file not found: {path}")
    regular_file(path, f"data.path ({fmt})")  # says what it is: a FIFO, a device, a directory...
    rows: list[dict] = []
    try:
        if fmt == "csv":
            # utf-8-sig: spreadsheet exports start with a byte-order mark that would otherwise prefix the first column
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    if None in row or None in row.values():  # more or fewer fields than the header
                        width = len(reader.fieldnames or [])
                        got = width + len(row.get(None) or []) - sum(v is None for v in row.values())
                        hint = "quote fields that contain commas" if got > width else "fields are missing"
                        raise EdgetlError(
                            f"{path}: line {reader.line_num} has {got} fields but the header has {width} ({hint})"
                        )
                    rows.append(row)
        else:
            with path.open(encoding="utf-8-sig") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise EdgetlError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                    except (ValueError, RecursionError) as e:  # an integer over 4300 digits, absurd nesting
                        raise EdgetlError(f"{path}:{n}: invalid JSON ({str(e).split(';')[0]})") from None
                    if not isinstance(row, dict):
                        raise EdgetlError(f"{path}:{n}: each line must be a JSON object")
                    try:  # JSON can escape lone surrogates (\ud800) that no UTF-8 text may hold
                        json.dumps(row, ensure_ascii=False).encode("utf-8")
                    except UnicodeEncodeError:
                        raise EdgetlError(
                            f"{path}:{n}: invalid Unicode (a lone surrogate escape such as \\ud800)"
                        ) from None
                    rows.append(row)
    except UnicodeDecodeError as e:
        raise EdgetlError(f"{path}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise EdgetlError(f"{path}: invalid CSV ({e})") from None
    if not rows:
        raise EdgetlError(f"{path}: no rows")
    return rows


def load_manifest_file(
    path: str | Path,
    fmt: str,
    kind: str,
    path_column: str,
    text_column: str,
    label_columns: list[str],
    split_column: str | None,
    mask_column: str | None = None,
) -> RawDataset:
    """CSV/JSONL: one row per example; image (and mask) paths are relative to the manifest's folder."""
    path = Path(path)
    rows = _read_rows(path, fmt)
    label_columns = [c for c in label_columns if c != mask_column]
    need = [text_column if kind == "text" else path_column, *label_columns, *([mask_column] if mask_column else [])]
    if split_column:
        need.append(split_column)
    setting = {
        path_column: "data.path_column",
        text_column: "data.text_column",
        split_column: "data.split_column",
        mask_column: "data.mask_column",
    }
    for n, row in enumerate(rows, 2 if fmt == "csv" else 1):
        for col in need:
            if col not in row:
                key = setting.get(col, "the task's `column`")  # label columns come from tasks[].column
                raise EdgetlError(
                    f"{path}: row {n} has no column {col!r} (named by {key}); columns: "
                    f"{', '.join(map(str, row))} - set {key} to one of them"
                )
    columns = {c: [r[c] for r in rows] for c in label_columns}
    split = None
    if split_column:
        split = np.array([str(r[split_column]).strip().lower() for r in rows])
        bad = sorted(set(split.tolist()) - {"train", "val", "test"})  # str, not np.str_ in the message
        if bad:
            raise EdgetlError(f"{path}: column {split_column!r} has {bad[0]!r}; allowed: train, val, test")
    if kind == "text":
        texts = []
        for n, r in enumerate(rows, 1):
            t = r[text_column]
            if not isinstance(t, str) or not t.strip():
                raise EdgetlError(f"{path}: row {n}: empty text in column {text_column!r}")
            texts.append(t)
        return RawDataset("text", str(path), texts=texts, columns=columns, split=split)
    images, sources = [], []
    for n, r in enumerate(rows, 2 if fmt == "csv" else 1):
        p = Path(str(r[path_column]))
        if not p.is_absolute():
            p = path.parent / p
        regular_file(p, f"{path}: row {n}: column {path_column!r}")
        images.append(str(p))
        sources.append(str(p))
    raw = _images_dataset(str(path), images, columns, sources, split, {})
    if mask_column:
        from edgetl.data.masks import MaskFiles, read_classes_file

        masks = []
        for n, r in enumerate(rows, 2 if fmt == "csv" else 1):
            m = Path(str(r[mask_column]))
            m = m if m.is_absolute() else path.parent / m
            if not m.exists():
                raise EdgetlError(f"{path}: row {n}: mask {m} (column {mask_column!r}) does not exist")
            masks.append(str(m))
        raw.columns[mask_column] = masks
        raw.dense[mask_column] = MaskFiles(masks)
        if (path.parent / "classes.txt").is_file():
            raw.class_names[mask_column] = read_classes_file(path.parent / "classes.txt")
    return raw
