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


# ------------------------------------------------------------------------------------------ letterbox
LETTERBOX_FILL = 114  # the grey detectors pad with (YOLO's): close to the ImageNet mean, so padding reads as "nothing"


def letterbox_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left): the whole image scaled to fit size x size, centred."""
    s = min(size / h, size / w)
    nh, nw = max(1, min(size, int(round(h * s)))), max(1, min(size, int(round(w * s))))
    return nh, nw, (size - nh) // 2, (size - nw) // 2


def letterbox(arr: np.ndarray, size: int) -> np.ndarray:
    """HxWxC -> size x size x C: aspect kept (Pillow's antialiased bilinear, as `shorter_crop`), the rest filled
    with LETTERBOX_FILL; uint8 stays uint8, anything else float32."""
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr
    from PIL import Image

    nh, nw, top, left = letterbox_geometry(h, w, size)
    if arr.dtype == np.uint8:
        im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        inner = np.asarray(im.resize((nw, nh), Image.Resampling.BILINEAR))
        inner = inner[..., None] if inner.ndim == 2 else inner
        out = np.full((size, size, arr.shape[2]), LETTERBOX_FILL, dtype=np.uint8)
    else:
        chans = [
            np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c], dtype=np.float32)).resize(
                (nw, nh), Image.Resampling.BILINEAR
            ))
            for c in range(arr.shape[2])
        ]  # fmt: skip
        inner = np.stack(chans, axis=-1)
        out = np.full((size, size, arr.shape[2]), LETTERBOX_FILL, dtype=np.float32)
    out[top : top + nh, left : left + nw] = inner
    return out


def box_geometry(h: int, w: int, size: int, resize: str) -> tuple[float, float, float, float]:
    """(scale x, scale y, offset x, offset y) taking an h x w image's pixel coordinates to the size x size model
    input under `resize` (bilinear = stretch, letterbox, shorter_crop); the runtime inverts it for boxes."""
    if resize == "letterbox":
        nh, nw, top, left = letterbox_geometry(h, w, size)
        return nw / w, nh / h, float(left), float(top)
    if resize == "shorter_crop":
        nh, nw, top, left = shorter_crop_geometry(h, w, size, 1.0)
        return nw / w, nh / h, float(-left), float(-top)
    return size / w, size / h, 0.0, 0.0
