"""The evaluation resize of pretrained backbones, without torch: shorter side to size / crop_pct, antialiased,
then a centred size x size crop (torchvision's `Weights.transforms()`, timm's `crop_pct`).

One function for every side: the training loader, the training-side eval transform and `edgetl.runtime` all
call `shorter_crop`, so they agree exactly on the same pixels. Resizing is Pillow's antialiased bilinear
(uint8 images as L/RGB, other dtypes per channel in float32 "F" mode). An image already at size x size is
taken as prepared and passed through (the loader hands such images on).
"""

from __future__ import annotations

import math

import numpy as np


def shorter_crop_geometry(h: int, w: int, size: int, crop_pct: float) -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left) for an h x w image."""
    short = max(size, int(math.floor(size / crop_pct)))
    if h <= w:
        nh, nw = short, max(size, int(short * w / h))
    else:
        nh, nw = max(size, int(short * h / w)), short
    return nh, nw, int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))


def shorter_crop(arr: np.ndarray, size: int, crop_pct: float) -> np.ndarray:
    """HxWxC (C = 1 or 3) -> size x size x C, same dtype class (uint8 stays uint8, anything else float32)."""
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr
    try:
        from PIL import Image
    except ImportError:
        from edgetl.errors import EdgetlError

        raise EdgetlError("this bundle's shorter_crop resize needs Pillow: pip install pillow") from None
    nh, nw, top, left = shorter_crop_geometry(h, w, size, crop_pct)
    box = (left, top, left + size, top + size)
    if arr.dtype == np.uint8:
        im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        out = np.asarray(im.resize((nw, nh), Image.Resampling.BILINEAR).crop(box))
        return out[..., None] if out.ndim == 2 else out
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c], dtype=np.float32)).resize(
            (nw, nh), Image.Resampling.BILINEAR
        ).crop(box))
        for c in range(arr.shape[2])
    ]  # fmt: skip
    return np.stack(chans, axis=-1)
