"""Datasets that outgrow a folder listing: WebDataset tar shards (`source: webdataset`).

Writing (`edgetl shard SRC OUT`): an image folder or a CSV/JSONL image manifest becomes shard-000000.tar, ...
with the `webdataset` package's ShardWriter; each sample is the original image file's bytes (no re-encoding)
under `<key>.<ext>` plus `<key>.json` with its label columns (and `split` when the source had one) - the
standard WebDataset layout, so the same shards feed any `webdataset.WebDataset` pipeline.

Reading: edgetl needs random access (an epoch's order is a pure function of seed and epoch; a resumed run
restarts mid-epoch exactly), which streaming readers do not give. So loading indexes the shards' tar headers
(stdlib `tarfile`: offsets only, nothing decoded) and each row refers to (shard, offset, size) of its image:
workers seek and read just that member, and under torchrun each rank reads only the rows of its share. The
webdataset package is needed to write shards, not to train on them.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from edgetl.data.examples import RawDataset
from edgetl.data.lazy import ImageFiles
from edgetl.errors import EdgetlError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
MASK_EXT = "mask.png"  # <key>.mask.png beside <key>.jpg: the sample's segmentation mask


def shard_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_file() and p.suffix == ".tar":
        return [p]
    if not p.is_dir():
        raise EdgetlError(f"data.path: webdataset shards not found: {p} (a folder of .tar shards, or one .tar)")
    tars = sorted(p.glob("*.tar"))
    if not tars:
        raise EdgetlError(f"{p}: no .tar shards in this folder (make them with: edgetl shard SRC {p})")
    return tars


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the path up to the first dot of the file name; the rest is the extension."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def load_webdataset(path: str | Path, split_column: str | None = None) -> RawDataset:
    """Index the shards: one row per sample with an image member and a .json member of label columns."""
    items, rows, sources, masks = [], [], [], []
    for shard in shard_files(path):
        samples: dict[str, dict] = {}
        try:
            with tarfile.open(shard, "r:") as tf:  # uncompressed tar: members are seekable
                for m in tf:
                    if not m.isfile():
                        continue
                    key, ext = _split_key(m.name)
                    s = samples.setdefault(key, {})
                    if ext in IMAGE_EXTS:
                        s["image"] = (str(shard), m.offset_data, m.size, m.name)
                    elif ext == MASK_EXT:  # a segmentation mask: class indices, read like a mask file
                        s["mask"] = (str(shard), m.offset_data, m.size, m.name)
                    elif ext == "json":
                        s["json"] = tf.extractfile(m).read()
        except (tarfile.TarError, OSError) as e:
            raise EdgetlError(f"{shard}: not a readable tar shard ({e})") from None
        for key, s in samples.items():
            if "image" not in s or "json" not in s:
                missing = f"image member ({', '.join(IMAGE_EXTS[:3])}, ...)" if "image" not in s else ".json member"
                raise EdgetlError(f"{shard}: sample {key!r} has no {missing}")
            try:
                row = json.loads(s["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise EdgetlError(f"{shard}: {key}.json is not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise EdgetlError(f"{shard}: {key}.json must be a JSON object of label columns")
            items.append(s["image"])
            masks.append(s.get("mask"))
            rows.append(row)
            sources.append(f"{shard}:{s['image'][3]}")
    if not rows:
        raise EdgetlError(f"{path}: the shards hold no samples")
    columns = {c: [r.get(c) for r in rows] for c in sorted({c for r in rows for c in r})}
    split = None
    col = split_column or ("split" if all("split" in r for r in rows) else None)
    if col is not None:
        import numpy as np

        if col not in columns:
            raise EdgetlError(f"{path}: no sample has the split column {col!r} (data.split_column)")
        split = np.array([str(v).strip().lower() for v in columns[col]])
        bad = sorted(set(split.tolist()) - {"train", "val", "test"})
        if bad:
            raise EdgetlError(f"{path}: split column {col!r} has {bad[0]!r}; allowed: train, val, test")
    raw = RawDataset("image", str(path), files=ImageFiles(items), columns=columns, sources=sources, split=split)
    if any(m is not None for m in masks):
        from edgetl.data.masks import MaskFiles, read_classes_file

        missing = next((i for i, m in enumerate(masks) if m is None), None)
        if missing is not None:
            raise EdgetlError(f"{sources[missing]}: no {MASK_EXT} member for this sample (other samples have masks)")
        raw.dense["mask"] = MaskFiles(masks)
        raw.columns["mask"] = [f"{m[0]}:{m[3]}" for m in masks]
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        if (folder / "classes.txt").is_file():
            raw.class_names["mask"] = read_classes_file(folder / "classes.txt")
    return raw


def write_shards(
    src: str | Path,
    out: str | Path,
    shard_size: int = 1000,
    path_column: str = "path",
) -> list[Path]:
    """An image folder (DIR/<class>/..., or DIR/{train,val,test}/<class>/...) or a CSV/JSONL image manifest ->
    WebDataset shards in `out`; every column of a manifest row goes into the sample's .json."""
    try:
        import webdataset as wds
    except ImportError:
        raise EdgetlError("writing shards needs the webdataset package: pip install 'edgetl[shards]'") from None
    src, out = Path(src), Path(out)
    if shard_size < 1:
        raise EdgetlError(f"--shard-size must be >= 1, got {shard_size}")
    samples = _folder_samples(src) if src.is_dir() else _manifest_samples(src, path_column)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob("*.tar")):
        raise EdgetlError(f"{out}: already holds .tar shards; write to an empty folder")
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for i, (path, meta) in enumerate(samples):
            ext = path.suffix.lower().lstrip(".") or "jpg"
            sink.write({"__key__": f"{i:09d}", ext: path.read_bytes(), "json": json.dumps(meta).encode()})
    return sorted(out.glob("*.tar"))


def _folder_samples(root: Path):
    from edgetl.data.files import load_imagefolder

    raw = load_imagefolder(root)  # the same checks and order as training on the folder
    for i, p in enumerate(raw.files.items):
        meta = {"label": raw.columns["label"][i]}
        if raw.split is not None:
            meta["split"] = str(raw.split[i])
        yield Path(p), meta


def _manifest_samples(path: Path, path_column: str):
    from edgetl.data.files import _read_rows
    from edgetl.runtime.limits import regular_file

    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("csv", "jsonl"):
        raise EdgetlError(f"{path}: expected an image folder, a .csv or a .jsonl manifest")
    for n, row in enumerate(_read_rows(path, fmt), 2 if fmt == "csv" else 1):
        if path_column not in row:
            raise EdgetlError(f"{path}: row {n} has no column {path_column!r} (--path-column)")
        p = Path(str(row[path_column]))
        p = p if p.is_absolute() else path.parent / p
        regular_file(p, f"{path}: row {n}: column {path_column!r}")
        yield p, {k: v for k, v in row.items() if k != path_column}
