"""One image, from its bytes to uint8 at the working size: a file, or a member of a WebDataset tar shard.

The bottom of `edgetl.data`: lazy rows (`lazy.ImageFiles`), folders and manifests (`files`) and shards
(`shards`) all decode through `decode_image`, so an image looks the same whichever way it was listed.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.limits import regular_file


def decode_image(path: Path, size: int | None = None, resize: str = "bilinear", crop_pct: float = 0.875) -> np.ndarray:
    """File -> uint8 HxWx1 (grey) or HxWx3; anything else is converted or refused with the file's name.

    `size`: bring it to size x size (see `edgetl.data.lazy`), decoding a JPEG at a reduced scale first.
    `path` may also be (shard, offset, size, name): a member of a WebDataset tar shard (`edgetl.data.shards`).
    """
    from PIL import Image

    source = path
    if isinstance(path, tuple):
        path = f"{path[0]}:{path[3]}"  # what error messages name
    elif not Path(path).is_dir():  # a FIFO or device would block or never end (a directory fails below)
        regular_file(path, "image")
    try:
        if isinstance(source, tuple):
            source = open_member(source)
        with Image.open(source) as im:
            if size is not None and im.format == "JPEG":  # the smallest DCT scale that keeps both sides >= the
                im.draft(im.mode, (size, size) if resize == "bilinear" else (math.ceil(size / crop_pct),) * 2)
            im.load()
            if im.mode in ("L", "I;16", "I", "F", "1"):
                arr = np.asarray(im.convert("L"))[..., None]
            elif im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA"):
                arr = np.asarray(im.convert("RGB"))
            else:
                raise EdgetlError(f"{path}: unsupported image mode {im.mode!r}")
    except EdgetlError:
        raise
    except decode_errors() as e:
        raise EdgetlError(f"{path}: unreadable or truncated image ({type(e).__name__}: {e})") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise EdgetlError(f"{path}: image has shape {arr.shape}")
    return fit_to_size(np.ascontiguousarray(arr, dtype=np.uint8), size, resize, crop_pct)


def decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file that is not a usable image. DecompressionBombError (an image whose header
    claims more pixels than Pillow's limit) is not an OSError, so it is named here rather than left to escape."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only, for inspecting a folder; the same checks as `decode_image`: a FIFO
    or device is refused before it is opened, an unusable image is an EdgetlError naming the file."""
    from PIL import Image

    regular_file(path, "image")
    try:
        with Image.open(path) as im:
            return im.size
    except decode_errors() as e:
        raise EdgetlError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def fit_to_size(arr: np.ndarray, size: int | None, resize: str = "bilinear", crop_pct: float = 0.875) -> np.ndarray:
    """uint8 HxWxC -> uint8 size x size x C with the runtime's resize: `shorter_crop` (edgetl.runtime.crop) or
    the square bilinear one (rounded to uint8); size None: unchanged."""
    if size is None or arr.shape[:2] == (size, size):
        return arr
    if resize == "shorter_crop":
        from edgetl.runtime.crop import shorter_crop

        return shorter_crop(arr, size, crop_pct)
    if resize == "letterbox":
        from edgetl.runtime.crop import letterbox

        return letterbox(arr, size)
    from edgetl.runtime.preprocess import bilinear_resize

    out = bilinear_resize(arr, (size, size))
    if out.ndim == 2:
        out = out[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def read_member(ref: tuple) -> bytes:
    shard, offset, size, _name = ref
    with open(shard, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{shard}: member {_name} is cut short ({len(data)} of {size} bytes)")
    return data


def open_member(ref: tuple):
    """A file-like object over one tar member (for Pillow)."""
    return io.BytesIO(read_member(ref))
