"""Recipe -> deterministic train/val/test splits with per-task targets.

The split is a pure function of (source, recipe.data.split, train.seed); its definition (row indices into
the source) is written to the run dir so any later step can rebuild exactly the same examples.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from edgetl.data.builtin import load_builtin
from edgetl.data.examples import DataSplits, Examples, RawDataset
from edgetl.data.files import load_imagefolder, load_manifest_file, load_mask_folder
from edgetl.data.lazy import ImageFiles
from edgetl.data.masks import take_rows
from edgetl.errors import EdgetlError
from edgetl.recipe import BUILTIN_DATASETS, DataSpec, Recipe, TaskSpec
from edgetl.runtime.tasks import get_kind
from edgetl.runtime.tasks import is_missing as _is_missing

log = logging.getLogger("edgetl")


def load_raw(
    spec: DataSpec,
    kind: str,
    label_columns: list[str],
    where: str = "data",
    image_size: int | None = None,
    resize: tuple[str, float] = ("bilinear", 0.875),
) -> RawDataset:
    if spec.source == "fashion-scenes":  # generated from fashion-mnist (edgetl.data.scenes)
        from edgetl.data.scenes import load_fashion_scenes

        raw = load_fashion_scenes()
    elif spec.source == "fashion-detect":  # generated from fashion-mnist (edgetl.data.scenes)
        from edgetl.data.scenes import load_fashion_detect

        raw = load_fashion_detect()
    elif spec.source in BUILTIN_DATASETS:
        raw = load_builtin(spec.source, download=spec.download)
    elif spec.source in ("coco", "yolo"):  # detection annotations (edgetl.data.box_formats)
        from edgetl.data import box_formats

        if not spec.path:
            raise EdgetlError(f"{where}.source {spec.source}: set {where}.path (the COCO JSON file, the YOLO folder)")
        raw = box_formats.load_coco(spec.path) if spec.source == "coco" else box_formats.load_yolo(spec.path)
    elif spec.source == "imagefolder" and spec.masks:
        raw = load_mask_folder(spec.path, spec.masks)
    elif spec.source == "imagefolder":
        raw = load_imagefolder(spec.path)
    elif spec.source == "webdataset":
        from edgetl.data.shards import load_webdataset

        raw = load_webdataset(spec.path, spec.split_column)
    else:
        boxes = [spec.boxes_column] if spec.boxes_column and spec.boxes_column not in label_columns else []
        raw = load_manifest_file(
            spec.path,
            spec.source,
            kind,
            spec.path_column,
            spec.text_column,
            [*label_columns, *boxes],
            spec.split_column,
            spec.mask_column,
        )
        if spec.boxes_column:  # each row's objects (edgetl.data.box_formats.parse_boxes_cell)
            from edgetl.data.box_formats import boxes_from_manifest
            from edgetl.data.masks import read_classes_file

            names_file = Path(spec.path).parent / "classes.txt"
            names = read_classes_file(names_file) if names_file.is_file() else None
            paths = list(raw.files.items) if raw.files is not None else []
            table, names = boxes_from_manifest(raw.columns[spec.boxes_column], paths, str(spec.path),
                                               spec.boxes_column, names)  # fmt: skip
            raw.columns[spec.boxes_column] = [None] * len(paths)
            raw.dense[spec.boxes_column] = table
            raw.class_names[spec.boxes_column] = names
    if raw.kind != kind:
        raise EdgetlError(f"{where}.source {spec.source!r} holds {raw.kind} examples but input.kind is {kind!r}")
    if raw.files is not None and image_size is not None:
        raw.files.size = image_size  # decoded straight to the working size, never kept at full size
        raw.files.resize, raw.files.crop_pct = resize
    for col in label_columns:
        if col not in raw.columns:
            hint = (
                "; an image folder's one label column is 'label' (the class folder's name): set the task's "
                "column: label"
                if spec.source == "imagefolder"
                else "; set the task's column to one of them"
            )
            raise EdgetlError(
                f"{where}: {spec.source} has no label column {col!r} "
                f"(available: {', '.join(raw.columns) or 'none'}){hint}"
            )
    return raw


def encode_task(task: TaskSpec, values: list, labels: list[str]) -> np.ndarray:
    """Raw column values -> target array (see Examples), by the task kind's rules; values outside `labels` are errors."""
    return get_kind(task.kind).encode(values, labels, task.name, task.label_column)


def dense_column(task: TaskSpec, raw: RawDataset) -> str:
    """The mask column of a dense task: its `column`, else the source's only mask column."""
    if task.label_column not in raw.dense and len(raw.dense) == 1:
        return next(iter(raw.dense))
    return task.label_column


def dense_targets(task: TaskSpec, raw: RawDataset, labels: list[str], size: int | None, resize: str = "bilinear"):
    """A dense task's targets at the working size: in-memory masks encoded now, mask files checked once (size,
    class indices) and kept lazy; boxes moved into the model input by the resize policy (`BoxTable.at_size`)."""
    from edgetl.data.boxes import BoxTable
    from edgetl.data.masks import MaskFiles, check_masks, encode_mask
    from edgetl.runtime.tasks.segmentation import resize_nearest

    src = raw.dense.get(dense_column(task, raw))
    if isinstance(src, BoxTable):
        names = raw.class_names.get(dense_column(task, raw)) or []
        if names and list(names) != list(labels):  # tasks[].labels reorders (or renames) the file's classes
            missing = [n for n in names if n not in labels]
            if missing:
                raise EdgetlError(
                    f"task {task.name!r}: class {missing[0]!r} of {raw.name} is not in tasks[].labels "
                    f"({', '.join(labels[:12])})"
                )
            order = np.array([labels.index(n) for n in names], dtype=np.int64)
            src = BoxTable(src.sizes, src.boxes, [order[c] for c in src.classes], src.clipped)
        n_cls = max((int(c.max()) for c in src.classes if len(c)), default=-1) + 1
        if n_cls > len(labels):
            raise EdgetlError(f"task {task.name!r}: class index {n_cls - 1} beyond the {len(labels)} labels")
        if size is None:
            raise EdgetlError(f"task {task.name!r}: detection needs input.image_size")
        return src.at_size(size, resize)
    ignore = task.ignore_index if task.ignore_index is not None else 255
    if src is None:
        raise EdgetlError(
            f"task {task.name!r}: {raw.name} has no masks or boxes for column "
            f"{task.label_column!r} (segmentation: data.masks or data.mask_column; detection: data.source coco, "
            "yolo or fashion-detect, or data.boxes_column)"
        )
    if len(labels) > 255:  # masks are stored as uint8 with 255 kept for ignored pixels
        raise EdgetlError(f"task {task.name!r}: {len(labels)} classes; segmentation takes at most 255")
    if isinstance(src, MaskFiles):
        check_masks(raw.files.items if raw.files is not None else [], src.paths, len(labels), ignore)
        return MaskFiles(src.paths, size, len(labels), ignore)
    out = encode_mask(src, len(labels), ignore, f"{raw.name} masks")
    if size is not None and out.shape[1:] != (size, size):
        out = np.stack([resize_nearest(m, (size, size)) for m in out])
    return out


def stratified_order(keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation in which every prefix is (nearly) class-proportional: take its first n for a stratified sample."""
    perm = rng.permutation(len(keys))
    keys = keys[perm]
    rank = np.zeros(len(keys), dtype=np.float64)
    for k in np.unique(keys):
        where = np.flatnonzero(keys == k)
        rank[where] = (np.arange(len(where)) + rng.random()) / len(where)
    return perm[np.argsort(rank, kind="stable")]


def _strata(task: TaskSpec | None, values: list | None, n: int) -> np.ndarray:
    if task is None or not get_kind(task.kind).stratifies:
        return np.zeros(n, dtype=np.int64)
    return np.array([str(v) for v in values])


def _labels_for(task: TaskSpec, raw: RawDataset, train_rows: np.ndarray) -> list[str]:
    if not get_kind(task.kind).has_labels:
        return []
    if task.labels is not None:
        if len(set(task.labels)) != len(task.labels):
            raise EdgetlError(f"task {task.name!r}: labels contain duplicates")
        return list(task.labels)
    col = dense_column(task, raw) if get_kind(task.kind).dense else task.label_column
    if col in raw.class_names and raw.class_names[col]:
        return list(raw.class_names[col])
    if get_kind(task.kind).dense:
        raise EdgetlError(
            f"task {task.name!r}: {task.kind} needs its class names: tasks[].labels, or a classes.txt (one name per "
            "line, line 1 = class index 0) beside the masks or the manifest"
        )
    vals = raw.columns[col]
    seen: set[str] = set()
    for i in train_rows:
        v = vals[i]
        if _is_missing(v):
            continue
        seen.update(get_kind(task.kind).label_names_in(v))
    return sorted(seen)


def _content_hash(raw: RawDataset, i: int) -> str:
    if raw.texts is not None:
        return hashlib.sha1(raw.texts[i].encode()).hexdigest()
    if raw.files is not None:
        return raw.files.content_hash(i)
    arr = raw.images[i] if raw.images is not None else raw.image_list[i]
    return hashlib.sha1(arr.tobytes()).hexdigest()


def make_split_indices(
    raw: RawDataset, recipe: Recipe, spec: DataSpec | None = None, tasks: list[TaskSpec] | None = None
) -> dict[str, np.ndarray]:
    """Row indices of train/val/test for one source (`spec` and its `tasks`; default: the recipe's `data`)."""
    s = (spec or recipe.data).split
    rng = np.random.default_rng(recipe.train.seed if s.seed is None else s.seed)
    first = next((t for t in (tasks if tasks is not None else recipe.tasks) if get_kind(t.kind).stratifies), None)
    if s.stratify is not None:
        strata_all = np.array([str(v) for v in raw.columns[s.stratify]])
    else:
        strata_all = _strata(first, raw.columns[first.label_column] if first else None, len(raw))
    if raw.split is not None:
        parts = {k: np.flatnonzero(raw.split == k) for k in ("train", "val", "test")}
    else:
        order = stratified_order(strata_all, rng)
        n = len(order)
        n_test, n_val = int(round(n * s.test_fraction)), int(round(n * s.val_fraction))
        parts = {
            "test": np.sort(order[:n_test]),
            "val": np.sort(order[n_test : n_test + n_val]),
            "train": np.sort(order[n_test + n_val :]),
        }
    if len(parts["val"]) == 0 and s.val_fraction > 0 and len(parts["train"]) > 1:
        order = parts["train"][stratified_order(strata_all[parts["train"]], rng)]
        n_val = max(1, int(round(len(order) * s.val_fraction)))
        parts["val"], parts["train"] = np.sort(order[:n_val]), np.sort(order[n_val:])
    for name, limit in (("train", s.limit_train), ("val", s.limit_val), ("test", s.limit_test)):
        if limit is not None and limit < len(parts[name]):
            rows = parts[name]
            parts[name] = np.sort(rows[stratified_order(strata_all[rows], rng)[:limit]])
    return parts


def load_splits(
    recipe: Recipe, split_indices: dict[str, list[int]] | None = None, saved_unlabeled: dict | None = None
) -> DataSplits:
    """Load the recipe's data; `split_indices` (from a run's splits.json) reproduces an earlier split exactly.

    `distill.unlabeled` rows are appended to the train split without labels (edgetl.data.unlabeled);
    `saved_unlabeled`: splits.json's record of them, which the rebuilt rows must match.
    """
    if recipe.extra_data:
        raw, tasks, dataset_ids, sources, auto_parts = combine_sources(recipe, split_indices is None)
    else:
        # dense tasks read mask columns (raw.dense), checked by `dense_targets`
        label_columns = sorted(
            {t.label_column for t in recipe.tasks if not get_kind(t.kind).dense} | _stratify_columns(recipe.data)
        )
        raw = load_raw(
            recipe.data, recipe.input.kind, label_columns, image_size=_image_size(recipe), resize=_resize(recipe)
        )
        if len(raw) == 0:
            raise EdgetlError(f"data: {recipe.data.source} has no examples")
        tasks, dataset_ids, sources = list(recipe.tasks), None, None
        auto_parts = make_split_indices(raw, recipe) if split_indices is None else None
    if split_indices is not None:
        parts = {k: np.asarray(split_indices[k], dtype=np.int64) for k in ("train", "val", "test")}
        if any(len(v) and v.max() >= len(raw) for v in parts.values()):
            raise EdgetlError("splits.json does not match the dataset (row index out of range): the data changed")
    else:
        parts = auto_parts
    split_from, fractions_used = _split_origin(recipe, raw, parts) if not recipe.extra_data else ("per dataset", [])
    missing_info: dict = {}
    if not recipe.extra_data and len(tasks) == 1 and not get_kind(tasks[0].kind).dense:  # masks: every row has one
        parts, missing_info = _single_task_missing(recipe, raw, tasks[0], parts)
    for name in ("train", "val"):
        if len(parts[name]) == 0:
            raise EdgetlError(f"data: the {name} split is empty ({len(raw)} examples; check data.split)")
    if len(parts["test"]) == 0:
        parts["test"] = parts["val"]
        log.warning("no test split: evaluating on the validation split")
    warnings: list[str] = []
    clipped_boxes: dict[str, int] = {}
    labels: dict[str, list[str]] = {}
    targets: dict[str, np.ndarray] = {}
    for task in tasks:
        labels[task.name] = _labels_for(task, raw, parts["train"])
        kind = get_kind(task.kind)
        if kind.has_labels and not labels[task.name]:
            raise EdgetlError(f"task {task.name!r}: no labels found in column {task.label_column!r}")
        if kind.dense:
            targets[task.name] = dense_targets(task, raw, labels[task.name], _image_size(recipe), _resize(recipe)[0])
            clipped = getattr(raw.dense.get(dense_column(task, raw)), "clipped", 0)  # boxes partly outside
            if clipped:
                clipped_boxes[task.name] = int(clipped)
                warnings.append(f"task {task.name!r}: {clipped} box(es) partly outside their image were clipped to it")
        else:
            targets[task.name] = encode_task(task, raw.columns[task.label_column], labels[task.name])
        t = targets[task.name]
        present = kind.present(t)
        if not present[parts["train"]].any():
            raise EdgetlError(f"task {task.name!r}: no labelled examples in the train split")
        if kind.stratifies:
            train_classes = set(t[parts["train"]][present[parts["train"]]].tolist())
            for split_name in ("val", "test"):
                rows = parts[split_name]
                extra = set(t[rows][present[rows]].tolist()) - train_classes
                if extra:
                    names = ", ".join(labels[task.name][i] for i in sorted(extra)[:5])
                    raise EdgetlError(
                        f"task {task.name!r}: class {names} appears in the {split_name} split but not in train"
                    )
    if raw.files is not None and len(raw) <= 200_000:  # each file read once; image caches reuse the hashes
        raw.files.hashes = [raw.files.content_hash(i) for i in range(len(raw))]
    hashes = {k: {_content_hash(raw, i) for i in v} for k, v in parts.items()} if len(raw) <= 200_000 else None
    if hashes:
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            n = len(hashes[a] & hashes[b]) if parts[a] is not parts[b] else 0
            if n:
                msg = f"{n} identical examples appear in both the {a} and {b} splits"
                warnings.append(msg)
                log.warning(msg)

    def make(rows: np.ndarray) -> Examples:
        return Examples(
            kind=raw.kind,
            targets={k: take_rows(v, rows) for k, v in targets.items()},
            images=None if raw.images is None else raw.images[rows],
            image_list=None if raw.image_list is None else [raw.image_list[i] for i in rows],
            files=None if raw.files is None else raw.files.take(rows),
            texts=None if raw.texts is None else [raw.texts[i] for i in rows],
            index=rows,
            dataset=None if dataset_ids is None else dataset_ids[rows],
        )

    first = tasks[0]

    info = {
        "source": recipe.data.source,
        "dataset": raw.name,
        "seed": recipe.train.seed,
        "sizes": {k: int(len(v)) for k, v in parts.items()},
        "split_from": split_from,
        "split_fractions_used": fractions_used,
        "missing_labels": {t.name: {k: int(_n_missing(targets[t.name][v])) for k, v in parts.items()} for t in tasks},
        **missing_info,
        "class_counts": {
            k: dict(
                Counter(
                    str(raw.columns[first.label_column][i]).strip()
                    for i in v
                    if not _is_missing(raw.columns[first.label_column][i])
                )
            )
            for k, v in parts.items()
        }
        if get_kind(first.kind).stratifies
        else {},
        "indices": {k: v.tolist() for k, v in parts.items()},
        "warnings": warnings,
        **({"clipped_boxes": clipped_boxes} if clipped_boxes else {}),
    }
    if sources is not None:
        info["datasets"] = sources
        info["sizes_per_dataset"] = {
            k: np.bincount(dataset_ids[v], minlength=len(sources)).tolist() for k, v in parts.items()
        }
    train = make(parts["train"])
    if recipe.distill is not None and recipe.distill.unlabeled is not None:
        from edgetl.data.unlabeled import add_unlabeled

        train = add_unlabeled(recipe, raw, parts, train, info, saved_unlabeled)
    return DataSplits(train, make(parts["val"]), make(parts["test"]), labels, info)


def _image_size(recipe: Recipe) -> int | None:
    return recipe.input.image_size if recipe.input.kind == "image" else None


def _resize(recipe: Recipe) -> tuple[str, float]:
    from edgetl.data.eval_resize import resize_of

    return resize_of(recipe) if recipe.input.kind == "image" else ("bilinear", 0.875)


def _n_missing(t: np.ndarray) -> int:
    """Rows of an encoded target with no label (see Examples for the encodings)."""
    if t.dtype == np.int64:
        return int((t < 0).sum())
    return int(np.isnan(t if t.ndim == 1 else t[:, 0]).sum())


def _row_number(spec: DataSpec, i: int) -> int:
    """A row index -> the number a person finds it by: CSV counts the header as row 1, JSONL lines from 1."""
    return i + 2 if spec.source == "csv" else i + 1


def _single_task_missing(recipe: Recipe, raw: RawDataset, task: TaskSpec, parts: dict[str, np.ndarray]):
    """Single-task recipe: a blank label is an error naming the file and rows, unless data.missing_labels=skip
    (then those rows leave every split and the count is reported). Nothing is dropped silently."""
    values = raw.columns[task.label_column]
    rows = np.array([i for i in range(len(raw)) if _is_missing(values[i])], dtype=np.int64)
    if len(rows) == 0:
        return parts, {}
    spec = recipe.data
    where = spec.path or spec.source
    if spec.missing_labels == "error":
        shown = ", ".join(str(_row_number(spec, int(i))) for i in rows[:10]) + (", ..." if len(rows) > 10 else "")
        raise EdgetlError(
            f"{where}: {len(rows)} row(s) without a label in column {task.label_column!r} "
            f"(row {shown}); fill them in, or set data.missing_labels=skip to leave them out"
        )
    keep = {k: v[~np.isin(v, rows)] for k, v in parts.items()}
    skipped = {k: int(len(parts[k]) - len(keep[k])) for k in parts}
    log.warning(
        "%s: skipped %d row(s) without a label in column %r (data.missing_labels=skip)",
        where,
        len(rows),
        task.label_column,
    )
    return keep, {"skipped_unlabelled_rows": skipped}


def _split_origin(recipe: Recipe, raw: RawDataset, parts: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    """Where the train/val/test split came from, in words, and which `data.split` fractions it used."""
    spec, s = recipe.data, recipe.data.split
    seed = recipe.train.seed if s.seed is None else s.seed
    if raw.split is None:
        return (
            f"random stratified split (val_fraction {s.val_fraction}, test_fraction {s.test_fraction}, seed {seed})",
            ["val_fraction", "test_fraction"],
        )
    present = [k for k in ("train", "val", "test") if (raw.split == k).any()]
    if spec.source == "imagefolder":
        text = f"sub-folders {', '.join(k + '/' for k in present)} of {spec.path}"
    elif spec.source in ("csv", "jsonl"):
        text = f"column {spec.split_column!r} of {spec.path} ({', '.join(present)})"
    elif spec.source == "webdataset":
        text = (
            f"the samples' {spec.split_column or 'split'!r} field in the shards of {spec.path} ({', '.join(present)})"
        )
    else:
        text = f"the {spec.source} dataset's own {' / '.join(present)} split"
    used = []
    if "val" not in present and s.val_fraction > 0:
        text += f"; val: val_fraction {s.val_fraction} of train (seed {seed})"
        used.append("val_fraction")
    if "test" not in present:
        text += "; no test rows: test = val"
    return text, used


def _stratify_columns(spec: DataSpec) -> set[str]:
    return {spec.split.stratify} if spec.split.stratify else set()


def tasks_by_dataset(recipe: Recipe) -> list[tuple[str, DataSpec, list[TaskSpec]]]:
    """(where, spec, tasks) per source, the primary `data` first, then `extra_data` in recipe order."""
    out = [("data", recipe.data, [t for t in recipe.tasks if t.dataset is None])]
    for name, spec in recipe.extra_data.items():
        out.append((f"extra_data.{name}", spec, [t for t in recipe.tasks if t.dataset == name]))
    for where, _, tasks in out:
        if not tasks:
            hint = (
                "every task sets task.dataset; leave it unset for the tasks of data"
                if where == "data"
                else f"set dataset: {where.split('.', 1)[1]} on the tasks it labels"
            )
            raise EdgetlError(f"{where}: no task uses this dataset ({hint})")
    return out


def combine_sources(recipe: Recipe, make_parts: bool = True):
    """Several datasets with one input type -> one RawDataset, rows of `data` first, then each `extra_data`.

    Each source is split on its own (its own split spec, stratified by its first classification task); the
    combined indices are offsets into the concatenation, so splits.json reproduces them exactly. Label columns
    are re-keyed by task name (two sources may both call their column `label`); a row carries the labels of
    its own source's tasks and None (missing, masked out of losses and metrics) for every other task.
    Returns (raw, tasks re-pointed at the task-named columns, per-row dataset id, source summaries, parts).
    """
    groups = tasks_by_dataset(recipe)
    raws: list[RawDataset] = []
    for where, spec, tasks in groups:
        raw = load_raw(
            spec,
            recipe.input.kind,
            sorted({t.label_column for t in tasks} | _stratify_columns(spec)),
            where,
            image_size=_image_size(recipe),
            resize=_resize(recipe),
        )
        if len(raw) == 0:
            raise EdgetlError(f"{where}: {spec.source} has no examples")
        raws.append(raw)
    sizes = [len(r) for r in raws]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    columns: dict[str, list] = {}
    class_names: dict[str, list[str]] = {}
    new_tasks: dict[str, TaskSpec] = {}
    for gi, ((_where, _spec, tasks), raw) in enumerate(zip(groups, raws)):
        for t in tasks:
            col = [None] * n
            col[offsets[gi] : offsets[gi + 1]] = list(raw.columns[t.label_column])
            columns[t.name] = col
            if raw.class_names.get(t.label_column):
                class_names[t.name] = list(raw.class_names[t.label_column])
            new_tasks[t.name] = t.model_copy(update={"column": t.name})
    kind = raws[0].kind
    if kind == "text":
        combined = RawDataset(
            kind,
            "+".join(r.name for r in raws),
            texts=[x for r in raws for x in r.texts],
            columns=columns,
            class_names=class_names,
        )
    elif any(r.files is not None for r in raws):  # a folder among them: every row becomes a lazy item
        items = []
        for r in raws:
            items += r.files.items if r.files is not None else list(r.images if r.images is not None else r.image_list)
        combined = RawDataset(
            kind,
            "+".join(r.name for r in raws),
            files=ImageFiles(items, _image_size(recipe), *_resize(recipe)),
            columns=columns,
            class_names=class_names,
        )
    elif all(r.images is not None for r in raws) and len({r.images.shape[1:] for r in raws}) == 1:
        combined = RawDataset(
            kind,
            "+".join(r.name for r in raws),
            images=np.concatenate([r.images for r in raws]),
            columns=columns,
            class_names=class_names,
        )
    else:
        images = [im for r in raws for im in (r.images if r.images is not None else r.image_list)]
        combined = RawDataset(
            kind, "+".join(r.name for r in raws), image_list=images, columns=columns, class_names=class_names
        )
    dataset_ids = np.repeat(np.arange(len(raws)), sizes)
    parts = None
    if make_parts:
        parts = {"train": [], "val": [], "test": []}
        for gi, ((_where, spec, tasks), raw) in enumerate(zip(groups, raws)):
            p = make_split_indices(raw, recipe, spec, tasks)
            if len(p["test"]) == 0:  # a source without test rows evaluates on its validation rows
                p["test"] = p["val"]
            for k in parts:
                parts[k].append(p[k] + offsets[gi])
        parts = {k: np.concatenate(v).astype(np.int64) for k, v in parts.items()}
    sources = [
        {
            "name": where,
            "source": spec.source,
            "rows": [int(offsets[i]), int(offsets[i + 1])],
            "tasks": [t.name for t in tasks],
            "ratio": spec.ratio,
        }
        for i, (where, spec, tasks) in enumerate(groups)
    ]
    return combined, [new_tasks[t.name] for t in recipe.tasks], dataset_ids, sources, parts


def calibration_indices(examples: Examples, task_name: str | None, size: int, seed: int) -> np.ndarray:
    """A stratified sample of the training split for INT8 calibration (never the test split)."""
    n = len(examples)
    keys = examples.targets[task_name] if task_name and examples.targets[task_name].ndim == 1 else np.zeros(n)
    order = stratified_order(np.asarray(keys), np.random.default_rng(seed + 1))
    return np.sort(order[: min(size, n)])
