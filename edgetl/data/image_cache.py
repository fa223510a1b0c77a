"""`data.cache: ram | disk`: every image of a split decoded once, kept at the working size as uint8.

The first pass over a split reads through the DataLoader workers as usual and the training process stores
each batch it receives; once every row of the split is stored (or known unreadable), later passes serve
batches straight from the cache: no JPEG decoding, no workers. `ram` keeps one array in the training
process (N x size x size x 3 bytes: 15,000 images at 64 px = 184 MB); `disk` fills a memory-mapped .npy file
under ~/.cache/edgetl/images (or $EDGETL_CACHE_DIR), keyed by the files' content hashes, the working size and
the resize, so later runs on the same data reuse it. A partial disk file is never used: it is written under a
temporary name and renamed when complete. The frozen-prefix feature cache works as before on top.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgetl.data.lazy import ImageFiles
from edgetl.runtime.atomic import atomic_write_text


def cache_root() -> Path:
    return Path(os.environ.get("EDGETL_CACHE_DIR") or Path.home() / ".cache" / "edgetl") / "images"


def files_key(files: ImageFiles) -> str:
    """sha1 over the files' contents (in row order), the working size and the resize."""
    h = hashlib.sha1(f"images-v1:{files.size}:{files.resize}:{files.crop_pct}:{len(files)}".encode())
    for i in range(len(files)):
        h.update(files.content_hash(i).encode())
    return h.hexdigest()[:32]


class ImageCache:
    """Rows of one split at the working size; `complete` once every row is stored or marked unreadable."""

    def __init__(self, files: ImageFiles, mode: str):
        self.files, self.mode = files, mode
        self.n = len(files)
        self.data: np.ndarray | None = None  # [N, size, size, C] uint8, allocated at the first batch
        self.have = np.zeros(self.n, dtype=bool)
        self.bad: dict[int, tuple[str, str]] = {}  # row -> (path, why)
        self.complete = False
        self._path = self._tmp = None
        if mode == "disk":
            key = files_key(files)
            self._path = cache_root() / f"{key}.npy"
            if self._path.is_file() and self._path.with_suffix(".json").is_file():
                self.data = np.load(self._path, mmap_mode="r")
                meta = json.loads(self._path.with_suffix(".json").read_text())
                self.bad = {int(k): tuple(v) for k, v in meta["bad"].items()}
                self.have[:] = True
                self.complete = True

    def put(self, rows: np.ndarray, images: np.ndarray, bad: list[tuple[int, str, str]]) -> None:
        """Store a batch read by the loader (`rows` kept, their uint8 NHWC `images`) and its unreadable rows."""
        if self.complete:
            return
        for r, path, why in bad:
            self.bad[int(r)] = (path, why)
            self.have[int(r)] = True
        if len(rows):
            if self.data is None:
                self._allocate(images.shape[1:])
            if images.shape[-1] == 1:  # stored as RGB (what the model takes; grey is repeated anyway)
                images = np.repeat(images, 3, axis=-1)
            self.data[rows] = images
            self.have[rows] = True
        if self.have.all():
            self._finish()

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """(rows kept, their images, [(path, why)] of the unreadable ones) from a complete cache."""
        bad = [self.bad[int(r)] for r in rows if int(r) in self.bad]
        keep = rows if not bad else np.array([r for r in rows if int(r) not in self.bad], dtype=np.int64)
        if self.data is None:  # every row unreadable
            return keep, np.zeros((0, 1, 1, 3), np.uint8), bad
        return keep, np.asarray(self.data[keep]), bad

    def _allocate(self, shape: tuple) -> None:
        full = (self.n, shape[0], shape[1], 3)
        if self.mode == "disk":
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self._path.with_name(f".{self._path.stem}.{os.getpid()}.tmp.npy")
            self.data = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=np.uint8, shape=full)
        else:
            self.data = np.zeros(full, dtype=np.uint8)

    def _finish(self) -> None:
        self.complete = True
        if self.mode != "disk":
            return
        if self.data is not None:
            self.data.flush()
        else:  # nothing readable: an empty file still records the verdict
            self._tmp = self._path.with_name(f".{self._path.stem}.{os.getpid()}.tmp.npy")
            np.save(self._tmp, np.zeros((0, 1, 1, 3), np.uint8))
        atomic_write_text(
            self._path.with_suffix(".json"), json.dumps({"bad": {str(k): list(v) for k, v in self.bad.items()}})
        )
        os.replace(self._tmp, self._path)
        self.data = np.load(self._path, mmap_mode="r") if self.data is not None else None
