"""Predictions for people and for files: one text line per input, JSON rows, coloured mask PNGs.

What `edgetl predict` prints and writes, kept in the runtime (numpy + Pillow) so a device application can do
the same without the CLI. Each task kind says how its prediction reads in one line (`TaskKind.describe_prediction`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.runtime.atomic import atomic_write_bytes
from edgetl.runtime.tasks import TaskPrediction, get_kind

# A fixed palette (Pascal VOC's bit-interleaved colours): class i is the same colour in every picture.
_PALETTE = np.zeros((256, 3), dtype=np.uint8)
for _i in range(256):
    _c, _r, _g, _b = _i, 0, 0, 0
    for _j in range(8):
        _r |= ((_c >> 0) & 1) << (7 - _j)
        _g |= ((_c >> 1) & 1) << (7 - _j)
        _b |= ((_c >> 2) & 1) << (7 - _j)
        _c >>= 3
    _PALETTE[_i] = (_r, _g, _b)


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """uint8 HxW class map -> HxWx3 RGB, one fixed colour per class (background black)."""
    return _PALETTE[np.asarray(mask, dtype=np.uint8)]


def write_mask_png(mask: np.ndarray, path: Path) -> Path:
    """A class map as a palette PNG: it shows in colour and still holds the class indices (atomic write)."""
    import io

    from PIL import Image

    im = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    im.putpalette(_PALETTE.reshape(-1).tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def prediction_rows(
    inputs: list[str], results: list[dict[str, TaskPrediction]], mask_dir: Path | None = None
) -> list[dict]:
    """JSON-ready rows; masks are written as PNGs under `mask_dir` (named `<input stem>.<task>.png`) and
    replaced by their file name, or left out when no folder is given (a mask is too large to print)."""
    rows = []
    for i, (item, res) in enumerate(zip(inputs, results)):
        row: dict = {"input": item}
        for task, pred in res.items():
            d = pred.to_dict()
            if pred.mask is not None:
                d.pop("mask")
                d["mask_shape"] = list(np.shape(pred.mask))
                if mask_dir is not None:
                    stem = Path(item).stem if item else f"input{i}"
                    d["mask_file"] = str(write_mask_png(pred.mask, Path(mask_dir) / f"{stem}.{task}.png"))
            row[task] = d
        rows.append(row)
    return rows


def text_line(row: dict, kinds: dict[str, str]) -> str:
    """`input: task=prediction ...` for people."""
    return f"{row['input']}: " + "  ".join(f"{t}={get_kind(k).describe_prediction(row[t])}" for t, k in kinds.items())
