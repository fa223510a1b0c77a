"""`edgetl train --data PATH`: look at a folder or a CSV/JSONL file and write the starter recipe for it.

A folder of class sub-folders (optionally under train/ val/ test/) becomes an `imagefolder` recipe; a CSV or JSONL
becomes a manifest recipe: a column of image paths (image) or of sentences (text), a `split` column when its
values are train/val/test, and every other column a task (classification, multi-label when values hold `|`,
regression when they are numbers with many distinct values). What was chosen is a plain recipe dict, printed
and saved like any other; anything can be overridden with key=value.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from edgetl.data.decode import image_size
from edgetl.data.files import IMAGE_SUFFIXES, _read_rows
from edgetl.errors import EdgetlError
from edgetl.runtime.limits import regular_file

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = {"image": "mobilenet_v2", "text": "minilm"}
SPLIT_VALUES = {"train", "val", "test"}
_SPLIT_NAMES = ("split", "subset", "fold", "partition")
_TEXT_NAMES = ("text", "sentence", "sentences", "review", "comment", "title", "body", "content", "message")
_FILE_NAME = re.compile(r"[^\s]+\.[A-Za-z0-9]{1,5}")  # one word with a file suffix: "a/b.dat", not a sentence
_PATH_NAMES = re.compile(r"^(path|file|filename|filepath|file_path|image|img|image_path|photo|picture)s?$", re.I)
_ID_NAMES = re.compile(r"^(id|idx|index|uid|key|row|filename|file|name)$", re.I)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _is_number(v) -> bool:
    if isinstance(v, bool):
        return False
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _name_from(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", (path.stem if path.is_file() else path.resolve().name) or "data")
    return (stem.lstrip("-._") or "data")[:64]


def _image_size(sides: list[int]) -> int:
    """Median image side rounded up to a multiple of 32, between 64 and 224: small images stay small (fast)."""
    if not sides:
        return 224
    med = sorted(sides)[len(sides) // 2]
    return int(min(224, max(64, -(-med // 32) * 32)))


def _sample_sides(files: list[Path]) -> list[int]:
    """Largest side of the first 50 images. A FIFO or device among them is refused in one line (as the loaders
    do); an unreadable image (truncated, a decompression bomb) is skipped and named, as training does."""
    sides, skipped = [], []
    for f in files[:50]:
        if not f.exists() and not f.is_symlink():
            continue  # a manifest row pointing nowhere: loading the data names it
        regular_file(f, "image")
        try:
            sides.append(max(image_size(f)))
        except EdgetlError as e:
            skipped.append(e.message)
    for why in skipped:
        log.warning("skipped unreadable image while inspecting: %s", why)
    if skipped:
        log.warning("%d of the first %d image(s) could not be read (skipped)", len(skipped), min(len(files), 50))
    return sides


def _inspect_folder(root: Path) -> dict:
    split_dirs = [d for d in ("train", "val", "test") if (root / d).is_dir()]
    base = root / split_dirs[0] if split_dirs else root
    classes = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [f for c in classes for f in sorted(c.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not classes or not files:
        raise EdgetlError(
            f"--data {root}: expected class sub-folders of images ({root}/<class>/<image>, or "
            f"{root}/train/<class>/<image> with val/ and test/ beside it); see docs/your-data.md"
        )
    return {
        "input": {"kind": "image", "image_size": _image_size(_sample_sides(files))},
        "tasks": [{"name": "label", "kind": "classification", "column": "label"}],
        "data": {"source": "imagefolder", "path": str(root)},
    }


def _column_kind(values: list) -> str | None:
    """classification | multilabel | regression for a label column; None for an id-like column."""
    present = [v for v in values if not _blank(v)]
    if not present:
        return None
    distinct = {str(v).strip() for v in present}
    if all(_is_number(v) for v in present):
        nums = [float(v) for v in present]
        if len(distinct) > 20 or any(x != int(x) for x in nums):
            return "regression"
        return "classification"
    if any(isinstance(v, list) for v in present) or any("|" in str(v) for v in present):
        return "multilabel"
    if len(distinct) == len(present) and len(present) > 20:
        return None  # every value different: an identifier, not a label
    return "classification"


def _inspect_manifest(path: Path, fmt: str) -> dict:
    rows = _read_rows(path, fmt)
    columns = list(rows[0])
    values = {c: [r.get(c) for r in rows] for c in columns}

    def present(c: str) -> list[str]:
        return [str(v) for v in values[c] if not _blank(v)]

    def looks_like_images(c: str) -> bool:
        vals = present(c)
        return bool(vals) and all(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in vals)

    def file_names(c: str) -> bool:  # every value a single word ending in a file suffix: names, not sentences
        vals = present(c)
        return bool(vals) and all(isinstance(v, str) and _FILE_NAME.fullmatch(v) for v in values[c] if not _blank(v))

    path_col = next((c for c in columns if looks_like_images(c)), None)
    if path_col is None:  # a column of file names that are not all images: say so, never read them as text
        for c in columns:
            others = sorted({Path(v).suffix.lower() or "(none)" for v in present(c)} - IMAGE_SUFFIXES)
            if file_names(c) and any(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in present(c)):
                bad = next(v for v in present(c) if Path(v).suffix.lower() not in IMAGE_SUFFIXES)
                raise EdgetlError(
                    f"--data {path}: column {c!r} holds image files but also {bad!r} ({', '.join(others)}): "
                    f"every value of the image column must be an image ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
    split_col = next(
        (
            c
            for c in columns
            if c.lower() in _SPLIT_NAMES and values[c] and {str(v).strip().lower() for v in values[c]} <= SPLIT_VALUES
        ),
        None,
    )
    data: dict = {"source": fmt, "path": str(path)}
    used = {path_col, split_col}
    why: list[str] = []
    if path_col is not None:
        kind = "image"
        data["path_column"] = path_col
        why.append(f"column {path_col!r}: the image paths (every value ends in an image suffix)")
        files = [(path.parent / str(v)) if not Path(str(v)).is_absolute() else Path(str(v)) for v in values[path_col]]
        inp: dict = {"kind": "image", "image_size": _image_size(_sample_sides(files))}
    else:

        def mean_len(c):
            vals = [v for v in values[c] if isinstance(v, str)]
            return sum(len(v) for v in vals) / max(len(vals), 1)

        text_cols = [c for c in columns if c not in used and all(isinstance(v, str) for v in values[c])]
        named = [c for c in text_cols if c.lower() in _TEXT_NAMES]
        text_col = named[0] if named else max(text_cols, key=mean_len, default=None)
        # a column of file names is a path column whose files are not images: never read it as text
        paths = [c for c in columns if file_names(c) and (c == text_col or (not named and _PATH_NAMES.match(c)))]
        if paths:
            found = sorted({Path(v).suffix.lower() for v in present(paths[0])})
            raise EdgetlError(
                f"--data {path}: column {paths[0]!r} holds file names ({', '.join(found)}) but not images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}), so it is neither an image column nor text; "
                "see docs/your-data.md"
            )
        if text_col is None or mean_len(text_col) < 8:
            raise EdgetlError(
                f"--data {path}: found neither a column of image paths ({', '.join(sorted(IMAGE_SUFFIXES))})"
                f" nor a column of text (columns: {', '.join(columns)}); see docs/your-data.md"
            )
        kind = "text"
        data["text_column"] = text_col
        why.append(
            f"column {text_col!r}: the text ("
            + (
                "named like text"
                if named
                else f"the longest text column, {mean_len(text_col):.0f} characters on average"
            )
            + "; no column of image paths)"
        )
        used.add(text_col)
        inp = {"kind": "text", "max_length": 128}
    if split_col is not None:
        data["split_column"] = split_col
        why.append(f"column {split_col!r}: the split (values only train/val/test)")
    tasks = []
    for c in columns:
        if c in used or _ID_NAMES.match(c):
            if c not in used:
                why.append(f"column {c!r}: ignored (named like an identifier)")
            continue
        k = _column_kind(values[c])
        if k is not None:
            name = re.sub(r"[^A-Za-z0-9_]", "_", c)
            name = name if re.match(r"^[A-Za-z_]", name) else f"t_{name}"
            tasks.append({"name": name[:64], "kind": k, "column": c})
            why.append(f"column {c!r}: a {k} task")
        else:
            why.append(f"column {c!r}: ignored (a different value on every row: an identifier)")
    if not tasks:
        raise EdgetlError(
            f"--data {path}: no label column found (columns: {', '.join(columns)}); see docs/your-data.md"
        )
    return {"input": inp, "tasks": tasks, "data": data, "_kind": kind, "_why": why}


def starter_recipe(path: str | Path, backbone: str | None = None) -> dict:
    """The recipe dict `edgetl train --data PATH` trains: inspected data + a small, CPU-friendly setup."""
    return _starter(path, backbone)[0]


def _starter(path: str | Path, backbone: str | None) -> tuple[dict, list[str]]:
    """(starter recipe, why each manifest column was taken for what: shown above the printed recipe)."""
    p = Path(path)
    if p.is_dir():
        found = _inspect_folder(p)
    elif p.is_file() and p.suffix.lower() in (".csv", ".jsonl"):
        found = _inspect_manifest(p, p.suffix.lower().lstrip("."))
    elif p.is_file():
        raise EdgetlError(f"--data {p}: expected a folder of images or a .csv / .jsonl file")
    else:
        raise EdgetlError(f"--data {p}: not found")
    kind = found.pop("_kind", found["input"]["kind"])
    why = found.pop("_why", [])
    recipe = {
        "name": _name_from(p),
        "description": f"starter recipe for {p} (edgetl train --data)",
        "backbone": {"name": backbone or DEFAULT_BACKBONE[kind], "weights": "offline"},
        **found,
    }
    if kind == "text":  # frozen encoder + cached features: the head trains in seconds on a CPU
        recipe["backbone"]["pooling"] = "mean"
        recipe["train"] = {"epochs": 20, "batch_size": 32, "lr": 0.003, "freeze": {"policy": "linear_probe"}}
    else:
        recipe["train"] = {"epochs": 5, "batch_size": 32, "lr": 0.001}
    return recipe, why


def load_starter(path: str | Path, backbone: str | None = None, overrides: list[str] | None = None):
    """(validated Recipe, its YAML) for `--data PATH`; override errors name the command-line argument."""
    import yaml

    from edgetl.recipe import apply_overrides, recipe_from_dict

    found, why = _starter(path, backbone)
    data = apply_overrides(found, list(overrides or []))
    rec = recipe_from_dict(data, f"--data {path}", list(overrides or []))
    head = "".join(f"# {line}\n" for line in why)  # which column was taken for what, and why
    return rec, head + yaml.safe_dump(data, sort_keys=False)  # what was chosen, not every default
