"""Segmentation masks: one class-index image per input image, at the model's working size.

A mask is a PNG (or any lossless image) whose pixel values are class indices: greyscale (`L`, 16-bit `I;16`) or
a palette image (`P`: the palette indices are the classes, what VOC and most annotation tools write). An RGB mask
without a palette is refused (its colours would have to be guessed). Masks are resized with nearest neighbour
(class indices are never blended) to the same square working size as their images, and the recipe's
`ignore_index` is stored as 255 (`edgetl.runtime.tasks.segmentation.IGNORE`).

File masks stay paths (`MaskFiles`) and are decoded when a batch needs them, so memory stays flat in dataset size;
`check_masks` reads each once when the data is listed, so a bad mask is one line naming the file before training
starts, never a crash mid-epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.limits import regular_file
from edgetl.runtime.tasks.segmentation import IGNORE, resize_nearest

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")


def mask_name(ref) -> str:
    """What error messages call a mask: its path, or shard:member for a WebDataset shard member."""
    return f"{ref[0]}:{ref[3]}" if isinstance(ref, tuple) else str(ref)


def read_mask(ref) -> np.ndarray:
    """A mask file (or a shard member (shard, offset, size, name)) -> HxW class indices (int64); RGB without a
    palette and unreadable files are one line each."""
    from PIL import Image, UnidentifiedImageError

    from edgetl.data.decode import open_member

    path = mask_name(ref)
    if not isinstance(ref, tuple):
        regular_file(ref, "mask")
    try:
        with Image.open(open_member(ref) if isinstance(ref, tuple) else ref) as im:
            im.load()
            if im.mode in ("L", "P", "1"):
                return np.asarray(im, dtype=np.int64)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im, dtype=np.int64)
            raise EdgetlError(
                f"{path}: mask is {im.mode} without a palette; save class indices as a greyscale (L) or palette (P) "
                "PNG, one index per pixel"
            )
    except EdgetlError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise EdgetlError(f"{path}: unreadable mask ({type(e).__name__}: {e})") from None


def encode_mask(mask: np.ndarray, n_classes: int, ignore_index: int, where: str) -> np.ndarray:
    """Class indices -> uint8 with `ignore_index` as 255; an index beyond the label list is one line."""
    mask = np.asarray(mask, dtype=np.int64)
    ignore = mask == ignore_index
    bad = (~ignore) & ((mask < 0) | (mask >= n_classes))
    if bad.any():
        v = int(mask[bad][0])
        raise EdgetlError(
            f"{where}: class index {v} but the label list has {n_classes} classes (0..{n_classes - 1}); "
            f"ignore_index is {ignore_index}"
        )
    out = mask.astype(np.uint8)
    out[ignore] = IGNORE
    return out


class MaskFiles:
    """Per-row mask files decoded on demand: `masks[rows]` -> uint8 [len(rows), size, size]. Picklable."""

    ndim = 3

    def __init__(self, paths: list, size: int | None = None, n_classes: int = 255, ignore_index: int = 255):
        self.paths = list(paths)
        self.size, self.n_classes, self.ignore_index = size, n_classes, ignore_index

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows) -> MaskFiles:
        return MaskFiles([self.paths[int(i)] for i in rows], self.size, self.n_classes, self.ignore_index)

    def load(self, i: int) -> np.ndarray:
        ref = self.paths[int(i)]
        m = encode_mask(read_mask(ref), self.n_classes, self.ignore_index, mask_name(ref))
        return m if self.size is None else resize_nearest(m, (self.size, self.size))

    def __getitem__(self, rows) -> np.ndarray:
        if np.ndim(rows) == 0:
            return self.load(int(rows))
        return np.stack([self.load(int(i)) for i in np.asarray(rows).reshape(-1)]) if len(rows) else self._empty()

    def _empty(self) -> np.ndarray:
        s = self.size or 1
        return np.zeros((0, s, s), dtype=np.uint8)

    def __array__(self, dtype=None, copy=None):
        arr = self[np.arange(len(self))]
        return arr if dtype is None else arr.astype(dtype)


def take_rows(target, rows):
    """Rows of a task's targets: a numpy array, or lazy masks kept lazy."""
    return target.subset(rows) if isinstance(target, MaskFiles) else target[rows]


def check_masks(images: list, masks: list, n_classes: int, ignore_index: int) -> None:
    """Every mask read once: it exists, has its image's size, holds known class indices (one line each)."""
    from PIL import Image

    from edgetl.data.decode import open_member

    for img, msk in zip(images, masks):
        m = encode_mask(read_mask(msk), n_classes, ignore_index, mask_name(msk))
        try:
            with Image.open(open_member(img) if isinstance(img, tuple) else img) as im:
                w, h = im.size  # the header only: nothing decoded
        except OSError:  # an unreadable image is skipped and listed when training reads it
            continue
        if m.shape != (h, w):
            raise EdgetlError(
                f"{mask_name(msk)}: mask is {m.shape[1]}x{m.shape[0]} but its image {mask_name(img)} is {w}x{h}"
            )


def masks_beside(images: list[str], image_root: Path, mask_root: Path) -> list[str]:
    """The mask of `image_root/<rel>/<stem>.<ext>` is `mask_root/<rel>/<stem>.png` (or another mask suffix)."""
    if not mask_root.is_dir():
        raise EdgetlError(f"data.masks: mask folder not found: {mask_root}")
    if not any(p.suffix.lower() in MASK_SUFFIXES for p in mask_root.rglob("*")):
        raise EdgetlError(f"{mask_root}: mask folder has no masks ({', '.join(MASK_SUFFIXES)})")
    out = []
    for img in images:
        rel = Path(img).relative_to(image_root).with_suffix("")
        found = next(
            (mask_root / rel.with_suffix(s) for s in MASK_SUFFIXES if (mask_root / rel.with_suffix(s)).exists()), None
        )
        if found is None:
            raise EdgetlError(f"{img}: no mask for this image (expected {mask_root / rel.with_suffix('.png')})")
        out.append(str(found))
    return out


def read_classes_file(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise EdgetlError(f"{path}: no class names (one per line, line 1 = class index 0)")
    return names
