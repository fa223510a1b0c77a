"""Inputs to model arrays, numpy only, identical to what the model saw in training.

A deployed model is only as accurate as its pre-processing is faithful: the bilinear resize here reproduces
`torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)` (same float32
arithmetic, same order), followed by `x * scale` and `(x - mean) / std`, so no torch is needed on a device.
Text goes through the bundle's own `tokenizer.json` with the `tokenizers` library, as the training side's
Hugging Face tokenizer does. Pillow and tokenizers are imported only when needed.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.limits import regular_file
from edgetl.runtime.manifest import TEXT_INPUT_NAMES, ImageInput, TextInput

__all__ = ["ImagePreprocessor", "TextEncoder", "bilinear_resize", "load_image"]


# ---------------------------------------------------------------------------------------- resize


@functools.lru_cache(maxsize=128)
def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights along one axis, as torch's CPU kernel computes them.

    torch evaluates `scale * (i + 0.5) - 0.5` in float32 and its compiled kernel fuses it into one FMA
    (a single rounding); the float64 evaluation below, rounded once to float32, reproduces that.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.intp), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    w0 = (np.float32(1.0) - lam).astype(np.float32)
    return _frozen(i0, i1, w0, lam)


class _ResizePlan:
    """Everything one (in size, out size, channels) resize needs, computed once.

    The W pass gathers flat (row-major W*C) columns: one 2-D gather per tap is much faster than a fancy
    index on the middle axis of an HxWxC array. The H pass reads only `rows`, so the W pass skips the
    others when downscaling.
    """

    __slots__ = ("key", "rows", "skip_rows", "r0", "r1", "wh0", "wh1", "k0", "k1", "ww0", "ww1")

    def __init__(self, in_h: int, in_w: int, out_h: int, out_w: int, c: int):
        self.key = (in_h, in_w, out_h, out_w, c)
        h0, h1, self.wh0, self.wh1 = _linear_taps(in_h, out_h)
        self.rows, inverse = np.unique(np.concatenate([h0, h1]), return_inverse=True)
        inverse = inverse.ravel()
        self.skip_rows = len(self.rows) < in_h
        self.r0, self.r1 = inverse[:out_h], inverse[out_h:]
        self.wh0, self.wh1 = self.wh0[:, None], self.wh1[:, None]
        w0i, w1i, w0, w1 = _linear_taps(in_w, out_w)
        ch = np.arange(c)
        self.k0 = (w0i[:, None] * c + ch).ravel()
        self.k1 = (w1i[:, None] * c + ch).ravel()
        self.ww0, self.ww1 = np.repeat(w0, c), np.repeat(w1, c)
        _frozen(self.rows, self.r0, self.r1, self.k0, self.k1, self.ww0, self.ww1)


@functools.lru_cache(maxsize=64)
def _resize_plan(in_h: int, in_w: int, out_h: int, out_w: int, c: int) -> _ResizePlan:
    return _ResizePlan(in_h, in_w, out_h, out_w, c)


def _frozen(*arrays: np.ndarray) -> Any:
    """The arrays, read-only (they are cached: nobody may modify them), as a tuple."""
    for a in arrays:
        a.flags.writeable = False
    return arrays


class _Scratch(threading.local):
    """Per-thread scratch buffers per resize shape, reused across calls (a few shapes kept).

    Fresh multi-megabyte temporaries on every call cost more in page faults than the arithmetic itself
    (glibc hands large blocks back to the OS on free): reusing them makes a 640x480 -> 224x224 resize
    about 3x faster.
    """

    max_entries = 8

    def __init__(self) -> None:
        self.entries: dict[tuple, tuple[np.ndarray, ...]] = {}

    def get(self, key: tuple, make: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        bufs = self.entries.get(key)
        if bufs is None:
            if len(self.entries) >= self.max_entries:
                self.entries.pop(next(iter(self.entries)))  # the oldest
            bufs = self.entries[key] = make()
        return bufs


_SCRATCH = _Scratch()


def bilinear_resize(x: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) array to `size` = (height, width); float32 out, same layout.

    Equals `torch.nn.functional.interpolate(t, size, mode="bilinear", align_corners=False,
    antialias=False)` on the same values in NCHW: same source indices and weights, interpolation along W
    then along H in float32 (differences are float32 rounding: <= ~2e-7 relative). uint8 input is
    gathered before widening to float32 (exact, and cheaper). `out`, if given, receives the result.
    """
    out_h, out_w = int(size[0]), int(size[1])
    if x.ndim not in (2, 3):
        raise ValueError(f"bilinear_resize expects (H, W) or (H, W, C), got shape {x.shape}")
    in_h, in_w = x.shape[0], x.shape[1]
    c = x.shape[2] if x.ndim == 3 else 1
    shape = (out_h, out_w, c) if x.ndim == 3 else (out_h, out_w)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {shape}, got {out.dtype} {out.shape}")
    if x.dtype != np.uint8 and x.dtype != np.float32:
        x = x.astype(np.float32)
    if in_h == out_h and in_w == out_w:
        out[...] = x
        return out
    plan = _resize_plan(in_h, in_w, out_h, out_w, c)
    n_rows = len(plan.rows)
    rows_buf, g, t, t1, tmp = _SCRATCH.get(
        (plan.key, x.dtype.char),
        lambda: (
            np.empty((n_rows, in_w * c), x.dtype),
            np.empty((n_rows, out_w * c), x.dtype),
            np.empty((n_rows, out_w * c), np.float32),
            np.empty((n_rows, out_w * c), np.float32),
            np.empty((out_h, out_w * c), np.float32),
        ),
    )
    if plan.skip_rows or not x.flags.c_contiguous:
        x2 = np.take(x.reshape(in_h, in_w * c), plan.rows, axis=0, out=rows_buf, mode="clip")
    else:
        x2 = x.reshape(in_h, in_w * c)
    # W pass: t = x[:, i0] * w0 + x[:, i1] * w1, on the rows the H pass needs
    np.multiply(np.take(x2, plan.k0, axis=1, out=g, mode="clip"), plan.ww0, out=t)
    np.multiply(np.take(x2, plan.k1, axis=1, out=g, mode="clip"), plan.ww1, out=t1)
    t += t1
    # H pass: out = t[r0] * w0 + t[r1] * w1
    o2 = out.reshape(out_h, out_w * c)
    np.take(t, plan.r0, axis=0, out=o2, mode="clip")
    o2 *= plan.wh0
    np.take(t, plan.r1, axis=0, out=tmp, mode="clip")
    tmp *= plan.wh1
    o2 += tmp
    return out


# ----------------------------------------------------------------------------------------- images


def _is_pil_image(x: object) -> bool:
    image_mod = sys.modules.get("PIL.Image")  # if PIL was never imported, x cannot be a PIL image
    return image_mod is not None and isinstance(x, image_mod.Image)


def load_image(path: str | os.PathLike[str]) -> Any:
    """Open an image file with Pillow (optional dependency), fully decoded."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgetlError(f"reading image file {path} needs Pillow: pip install pillow") from None
    regular_file(path, "input image")  # a FIFO or device would block the open; a directory is named as one
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError:
        raise EdgetlError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:  # a bomb is no OSError
        raise EdgetlError(f"{path}: cannot read image: {exc}") from None


def _pil_to_array(im: Any) -> np.ndarray:
    """PIL image -> HxW or HxWxC array: L and RGB as they are, alpha dropped, other modes via RGB."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return np.asarray(im)
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(im)[..., :3]
    if mode in ("LA", "La", "1"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))


class ImagePreprocessor:
    """Images (paths, PIL images, HxW[xC] arrays, or lists of them) -> NCHW float32 model input."""

    def __init__(
        self,
        image_size: tuple[int, int],
        channels: int,
        scale: float,
        mean: Sequence[float],
        std: Sequence[float],
        resize: str = "bilinear",
        crop_pct: float = 0.875,
    ):
        if channels not in (1, 3):
            raise EdgetlError(f"model channels must be 1 or 3, got {channels}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.channels = channels
        self.scale = np.float32(scale)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(channels, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(channels, 1, 1)
        if resize not in ("bilinear", "shorter_crop", "letterbox"):
            raise EdgetlError(f"image resize {resize!r} must be 'bilinear', 'shorter_crop' or 'letterbox'")
        if resize in ("shorter_crop", "letterbox") and self.image_size[0] != self.image_size[1]:
            raise EdgetlError(f"{resize} needs a square image_size, got {list(self.image_size)}")
        self.resize, self.crop_pct = resize, float(crop_pct)

    @classmethod
    def from_spec(cls, spec: ImageInput) -> ImagePreprocessor:
        return cls(spec.image_size, spec.channels, spec.scale, spec.mean, spec.std, spec.resize, spec.crop_pct)

    @staticmethod
    def is_batch(x: object) -> bool:
        """A list/tuple of images, or a 4-D NHWC array, is a batch; anything else is one image."""
        return isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.ndim == 4)

    def __call__(self, x: object) -> np.ndarray:
        """Always returns a batch (N, C, H, W) float32; a single image gives N = 1."""
        return self.with_sizes(x)[0]

    def with_sizes(self, x: object) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """The batch, and each input image's original (height, width) (dense predictions are mapped back)."""
        items = list(x) if self.is_batch(x) else [x]  # type: ignore[call-overload]
        if not items:
            raise EdgetlError("got an empty list of images")
        h, w = self.image_size
        out = np.empty((len(items), self.channels, h, w), dtype=np.float32)
        single = len(items) == 1 and not self.is_batch(x)
        sizes = [self._one(item, out[i], "image" if single else f"image {i}") for i, item in enumerate(items)]
        return out, sizes

    def _one(self, item: object, dst: np.ndarray, what: str) -> tuple[int, int]:
        arr = self._as_hwc(item, what)  # (H, W, C), C in (1, 3)
        size = (int(arr.shape[0]), int(arr.shape[1]))
        c = arr.shape[2]
        if c != self.channels and c != 1:
            raise EdgetlError(
                f"{what}: has 3 colour channels but the model expects 1 (greyscale); "
                "convert it first, e.g. PIL .convert('L')"
            )
        h, w = self.image_size
        if self.resize == "shorter_crop":  # antialiased, aspect kept (edgetl.runtime.crop)
            from edgetl.runtime.crop import shorter_crop

            arr = shorter_crop(arr, h, self.crop_pct)
        elif self.resize == "letterbox":  # aspect kept, padded (detection; edgetl.runtime.crop)
            from edgetl.runtime.crop import letterbox

            arr = letterbox(arr, h)
        if arr.shape[0] != h or arr.shape[1] != w:
            (buf,) = _SCRATCH.get(("resized", h, w, c), lambda: (np.empty((h, w, c), np.float32),))
            arr = bilinear_resize(arr, (h, w), out=buf)
        elif arr.dtype != np.uint8 and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        # (1, H, W) grey broadcasts to the model's channels here: repeated, as in training
        np.multiply(arr.transpose(2, 0, 1), self.scale, out=dst)
        dst -= self.mean
        dst /= self.std
        return size

    def _as_hwc(self, item: object, what: str) -> np.ndarray:
        if isinstance(item, (str, os.PathLike)):
            arr = _pil_to_array(load_image(item))
            what = f"{what} ({Path(item).name})"
        elif _is_pil_image(item):
            arr = _pil_to_array(item)
        elif isinstance(item, np.ndarray):
            arr = item
        else:
            raise EdgetlError(
                f"{what}: expected an image path, a PIL image or a numpy array, got {type(item).__name__}"
            )
        if arr.dtype.kind not in "uif":
            raise EdgetlError(f"{what}: array dtype {arr.dtype} is not a number type (use uint8 or float)")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        elif arr.ndim != 3:
            raise EdgetlError(f"{what}: array shape {arr.shape} is not an image (expected HxW, HxWx1, HxWx3 or HxWx4)")
        c = arr.shape[2]
        if c == 4:
            arr = arr[:, :, :3]
        elif c not in (1, 3):
            raise EdgetlError(
                f"{what}: {c} channels in array of shape {arr.shape}; expected 1, 3 or 4 "
                "(HxW, HxWx1, HxWx3, HxWx4; channels last)"
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise EdgetlError(f"{what}: empty image of shape {arr.shape}")
        return arr


# ------------------------------------------------------------------------------------------- text


class TextEncoder:
    """Strings -> int64 token arrays (`input_ids`, `attention_mask`, `token_type_ids` as listed).

    Matches `AutoTokenizer(texts, truncation=True, max_length=max_length, padding="longest")`: special
    tokens added, truncation on the right, padding on the right to the longest text of the batch with
    the tokenizer's own pad token (or to `max_length` with padding="max_length").
    """

    def __init__(
        self,
        tokenizer_json_path: str | os.PathLike[str],
        max_length: int,
        names: Sequence[str] = ("input_ids", "attention_mask"),
        padding: str = "longest",
    ):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise EdgetlError("text bundles need the tokenizers package: pip install tokenizers") from None
        bad = [n for n in names if n not in TEXT_INPUT_NAMES]
        if bad or not names:
            raise EdgetlError(f"text input names {list(names)} must be among {', '.join(TEXT_INPUT_NAMES)}")
        if padding not in ("longest", "max_length"):
            raise EdgetlError(f"text padding {padding!r} must be 'longest' or 'max_length'")
        if int(max_length) < 2:
            raise EdgetlError(f"text max_length must be >= 2, got {max_length}")
        path = Path(tokenizer_json_path)
        if not path.is_file():
            raise EdgetlError(f"{path}: tokenizer file not found")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgetlError(f"{path}: cannot load tokenizer: {first}") from None
        pad = tok.padding or {}
        pad_token = pad.get("pad_token")
        pad_id = pad.get("pad_id")
        if pad_token is None or pad_id is None:
            pad_token = next((t for t in ("[PAD]", "<pad>", "<|pad|>") if tok.token_to_id(t) is not None), None)
            if pad_token is None:
                raise EdgetlError(f"{path}: tokenizer has no padding token ([PAD] or <pad>)")
            pad_id = tok.token_to_id(pad_token)
        tok.enable_truncation(int(max_length), stride=0, strategy="longest_first", direction="right")
        tok.enable_padding(
            direction="right",
            pad_id=int(pad_id),
            pad_type_id=int(pad.get("pad_type_id", 0) or 0),
            pad_token=pad_token,
            length=int(max_length) if padding == "max_length" else None,
        )
        self._tok = tok
        self.path = path
        self.max_length = int(max_length)
        self.names = tuple(names)
        self.pad_id = int(pad_id)

    @classmethod
    def from_spec(cls, spec: TextInput, bundle_dir: str | os.PathLike[str]) -> TextEncoder:
        from edgetl.runtime.manifest import resolve_in_bundle

        path = resolve_in_bundle(bundle_dir, spec.tokenizer, "input.tokenizer")
        return cls(path, spec.max_length, spec.names, spec.padding)

    @staticmethod
    def is_batch(x: object) -> bool:
        return isinstance(x, (list, tuple))

    def __call__(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise EdgetlError("got an empty list of texts")
        for i, t in enumerate(batch):
            what = "text" if isinstance(texts, str) else f"text {i}"
            if not isinstance(t, str):
                raise EdgetlError(f"{what}: expected a string, got {type(t).__name__}")
            if not t.strip():
                raise EdgetlError(f"{what}: is empty or whitespace-only")
        encodings = self._tok.encode_batch(batch, add_special_tokens=True)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        return {name: np.array([getattr(e, fields[name]) for e in encodings], dtype=np.int64) for name in self.names}
