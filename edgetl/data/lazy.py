"""Image files kept as paths and decoded on demand, so memory does not grow with the dataset.

A decoded image is brought to the working size (the recipe's `input.image_size`, square) as uint8 right away:
JPEGs decode at a reduced scale first (`Image.draft`, DCT scaling: a 1024x768 photo for a 64 px model
decodes at 128x96, ~10x less work), then the runtime's own resize (`input.resize`: shorter side + centre
crop, or the square bilinear one) brings it to size. Rows can also be in-memory arrays (a built-in dataset mixed
with a folder through `extra_data`); they get the same resize.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edgetl.data.decode import fit_to_size  # noqa: F401  (lazy.fit_to_size: used by callers)


class ImageFiles:
    """Per-row image sources (file paths, WebDataset shard members, or uint8 arrays) + the working size.

    `size` None: decode at full size (what `decode_image` returns). Picklable (DataLoader workers get a copy).
    """

    def __init__(self, items: list, size: int | None = None, resize: str = "bilinear", crop_pct: float = 0.875):
        self.items = items
        self.size = size
        self.resize, self.crop_pct = resize, crop_pct  # see edgetl.data.eval_resize
        self.hashes: list[str] | None = None  # content hashes, once computed (duplicate checks, cache keys)

    def __len__(self) -> int:
        return len(self.items)

    def take(self, idx) -> ImageFiles:
        out = ImageFiles([self.items[int(i)] for i in idx], self.size, self.resize, self.crop_pct)
        if self.hashes is not None:
            out.hashes = [self.hashes[int(i)] for i in idx]
        return out

    def name(self, i: int) -> str:
        item = self.items[i]
        if isinstance(item, tuple):  # a WebDataset shard member
            return f"{item[0]}:{item[3]}"
        return item if isinstance(item, str) else f"row {i} (in memory)"

    def load(self, i: int) -> np.ndarray:
        """uint8 HxWxC (C = 1 or 3) at the working size; EdgetlError naming the file when it cannot be read."""
        from edgetl.data.decode import decode_image

        item = self.items[int(i)]
        if isinstance(item, (str, tuple)):  # a file, or a member of a WebDataset shard
            return decode_image(Path(item) if isinstance(item, str) else item, self.size, self.resize, self.crop_pct)
        return fit_to_size(item, self.size, self.resize, self.crop_pct)

    def content_hash(self, i: int) -> str:
        """sha1 of the file's bytes (or the array's): duplicate checks across splits and cache keys."""
        if self.hashes is not None:
            return self.hashes[int(i)]
        item = self.items[int(i)]
        if isinstance(item, tuple):
            from edgetl.data.decode import read_member

            try:
                return hashlib.sha1(read_member(item)).hexdigest()
            except OSError:
                return f"unreadable:{self.name(int(i))}"
        if not isinstance(item, str):
            return hashlib.sha1(repr(item.shape).encode() + np.ascontiguousarray(item).tobytes()).hexdigest()
        h = hashlib.sha1()
        try:
            with open(item, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:  # unique: reading it for training fails later, naming the file (and it is skipped)
            return f"unreadable:{item}"
        return h.hexdigest()


def stack_images(images: list[np.ndarray], size: int | None) -> np.ndarray:
    """One uint8 NHWC batch; a batch mixing grey and colour images gets grey repeated to 3 channels."""
    if not images:
        return np.zeros((0, size or 1, size or 1, 3), dtype=np.uint8)
    if len({im.shape[-1] for im in images}) > 1:
        images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
    return np.stack(images)
