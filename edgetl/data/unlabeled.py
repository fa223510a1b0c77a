"""`distill.unlabeled`: extra training rows without labels, learnt from through the teacher's soft targets only.

The rows are appended to the training split with every target missing (-1 / NaN) and `Examples.dataset` =
UNLABELED, so they take the labelled rows' data path: the same pre-processing, feature cache, epoch order (a
pure function of (seed, epoch)) and teacher-output cache. The masked task loss skips them; only the
distillation terms see them. Where they come from:

- `self`: the labelled train rows again, without their labels;
- a built-in dataset: its training rows that are none of the labelled train/val/test rows (by row when it is
  the recipe's own source, and by content always), so no validation or test image can leak in;
- `folder`: every image file under `path` (any depth, sorted; no class sub-folders needed);
- `csv` / `jsonl`: a manifest with a path (or text) column and no labels.

`limit` keeps a seeded sample. The selection is a pure function of (recipe, data): a resumed run rebuilds the
same rows, and splits.json records their count and a digest so a changed folder is an error, not a silent drift.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgetl.data.examples import Examples, RawDataset
from edgetl.errors import EdgetlError

UNLABELED = -1  # Examples.dataset of an unlabeled row


def _content_hashes(raw: RawDataset, rows) -> list[str]:
    out = []
    for i in rows:
        if raw.texts is not None:
            out.append(hashlib.sha1(raw.texts[i].encode()).hexdigest())
        elif raw.files is not None:  # files listed lazily: the file's bytes
            out.append(raw.files.content_hash(int(i)))
        else:
            arr = raw.images[i] if raw.images is not None else raw.image_list[i]
            out.append(hashlib.sha1(arr.tobytes()).hexdigest())
    return out


def _folder(path: str) -> RawDataset:
    from pathlib import Path

    from edgetl.data.files import IMAGE_SUFFIXES, _images_dataset

    root = Path(path)
    if not root.is_dir():
        raise EdgetlError(f"distill.unlabeled.path: folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgetlError(f"distill.unlabeled.path {root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _images_dataset(str(root), [str(f) for f in files], {}, [str(f) for f in files], None, {})  # paths only


def select_unlabeled(recipe, raw: RawDataset, parts: dict[str, np.ndarray]) -> tuple[RawDataset, np.ndarray, dict]:
    """(source dataset, its rows to use, info for splits.json) for `recipe.distill.unlabeled`."""
    from edgetl.data.builtin import load_builtin
    from edgetl.data.files import load_manifest_file
    from edgetl.recipe import BUILTIN_DATASETS

    spec = recipe.distill.unlabeled
    if spec.source == "self":
        src, rows = raw, np.asarray(parts["train"], dtype=np.int64)
        what = "the labelled train rows, without their labels"
    elif spec.source in BUILTIN_DATASETS:
        src = load_builtin(spec.source, download=recipe.data.download)
        rows = np.flatnonzero(src.split == "train") if src.split is not None else np.arange(len(src))
        labelled = np.concatenate([np.asarray(v, dtype=np.int64) for v in parts.values()])
        if spec.source == recipe.data.source and not recipe.extra_data:  # same row numbering as `raw`
            rows = rows[~np.isin(rows, labelled)]
        # by content too: a duplicate image of a val/test row must not become training data
        seen = set(_content_hashes(raw, np.unique(labelled)))
        rows = np.array([r for r, h in zip(rows, _content_hashes(src, rows)) if h not in seen], dtype=np.int64)
        what = f"{spec.source} training rows outside the labelled train/val/test rows"
    elif spec.source == "folder":
        src = _folder(spec.path)
        rows = np.arange(len(src))
        what = f"images under {spec.path}"
    else:
        src = load_manifest_file(
            spec.path, spec.source, recipe.input.kind, spec.path_column, spec.text_column, [], None
        )
        rows = np.arange(len(src))
        what = f"rows of {spec.path}"
    if src.kind != recipe.input.kind:
        raise EdgetlError(
            f"distill.unlabeled.source {spec.source!r} holds {src.kind} examples but input.kind is {recipe.input.kind!r}"
        )
    if len(rows) == 0:
        raise EdgetlError(f"distill.unlabeled: no rows left ({what})")
    if spec.limit is not None and spec.limit < len(rows):
        seed = recipe.train.seed if recipe.data.split.seed is None else recipe.data.split.seed
        rng = np.random.default_rng([seed, 15_001])
        rows = np.sort(rows[rng.permutation(len(rows))[: spec.limit]])
    digest = hashlib.sha1("".join(_content_hashes(src, rows)).encode()).hexdigest()[:16]
    info = {"source": spec.source, "path": spec.path, "rows": int(len(rows)), "from": what, "digest": digest}
    if spec.source != "folder" and spec.source not in ("csv", "jsonl"):
        info["indices"] = rows.tolist()
    return src, rows, info


def _missing(t: np.ndarray, n: int) -> np.ndarray:
    if t.dtype == np.int64:
        return np.full((n, *t.shape[1:]), -1, dtype=np.int64)
    return np.full((n, *t.shape[1:]), np.nan, dtype=t.dtype)


def _items(ex, rows=None) -> list:
    """Per-row image sources (file paths, shard members or uint8 arrays) of examples or a raw dataset."""
    n = len(ex)
    rows = range(n) if rows is None else rows
    if ex.files is not None:
        return [ex.files.items[int(i)] for i in rows]
    return [ex.images[i] if ex.images is not None else ex.image_list[i] for i in rows]


def append_unlabeled(train: Examples, src: RawDataset, rows: np.ndarray, recipe=None) -> Examples:
    """The training split followed by `rows` of `src`, every target missing, dataset id UNLABELED.

    Image files stay lazy (`ImageFiles`): unlabeled images are decoded on demand at the recipe's working size,
    like the labelled ones, so a large unlabeled folder does not grow memory."""
    n_l, n_u = len(train), len(rows)
    images = image_list = texts = files = None
    if train.kind == "text":
        texts = list(train.texts) + [src.texts[i] for i in rows]
    elif train.files is not None or src.files is not None:
        from edgetl.data.eval_resize import resize_of
        from edgetl.data.lazy import ImageFiles

        if train.files is not None:
            size, resize, crop_pct = train.files.size, train.files.resize, train.files.crop_pct
        else:
            size = recipe.input.image_size if recipe is not None else None
            resize, crop_pct = resize_of(recipe) if recipe is not None else ("bilinear", 0.875)
        files = ImageFiles(_items(train) + _items(src, rows), size, resize, crop_pct)
    elif train.images is not None and src.images is not None and train.images.shape[1:] == src.images.shape[1:]:
        images = np.concatenate([train.images, src.images[rows]])
    else:
        mine = list(train.images) if train.images is not None else list(train.image_list)
        theirs = [src.images[i] if src.images is not None else src.image_list[i] for i in rows]
        image_list = mine + theirs
    ids = train.dataset if train.dataset is not None else np.zeros(n_l, dtype=np.int64)
    index = train.index if train.index is not None else np.arange(n_l)
    return Examples(
        kind=train.kind,
        targets={k: np.concatenate([v, _missing(v, n_u)]) for k, v in train.targets.items()},
        images=images,
        image_list=image_list,
        files=files,
        texts=texts,
        index=np.concatenate([index, -1 - np.arange(n_u)]),  # negative: not a row of the labelled source
        dataset=np.concatenate([ids, np.full(n_u, UNLABELED, dtype=np.int64)]),
    )


def add_unlabeled(recipe, raw: RawDataset, parts: dict[str, np.ndarray], train: Examples, info: dict, saved=None):
    """`train` with the recipe's unlabeled rows appended; records them in `info` (splits.json). `saved`: the
    `unlabeled` entry of an earlier run's splits.json, which the rebuilt selection must match (resume)."""
    src, rows, u_info = select_unlabeled(recipe, raw, parts)
    if saved is not None and (saved.get("rows"), saved.get("digest")) != (u_info["rows"], u_info["digest"]):
        raise EdgetlError(
            f"distill.unlabeled: the unlabeled rows changed since this run started ({saved.get('rows')} rows, "
            f"digest {saved.get('digest')}; now {u_info['rows']}, {u_info['digest']}): {u_info['from']}"
        )
    info["unlabeled"] = u_info
    return append_unlabeled(train, src, rows, recipe)
