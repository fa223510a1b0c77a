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


def draw_boxes(image, pred: TaskPrediction, path: Path) -> Path:
    """The input image with each detected box outlined in its class's colour and labelled (JPEG, atomic)."""
    import io

    from PIL import Image, ImageDraw

    from edgetl.runtime.preprocess import load_image

    im = (load_image(image) if isinstance(image, (str, Path)) else Image.fromarray(np.asarray(image))).convert("RGB")
    draw = ImageDraw.Draw(im)
    width = max(1, round(min(im.size) / 200))
    for box, label, cls, score in zip(pred.boxes, pred.labels or [], pred.classes or [], pred.scores or []):
        colour = tuple(int(v) for v in _PALETTE[(int(cls) + 1) % 256])
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        draw.text((x1 + 2, max(0.0, y1 - 11)), f"{label} {score:.2f}", fill=colour)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def prediction_rows(
    inputs: list[str], results: list[dict[str, TaskPrediction]], mask_dir: Path | None = None
) -> list[dict]:
    """JSON-ready rows; masks are written as PNGs under `mask_dir` (named `<input stem>.<task>.png`) and
    replaced by their file name, or left out when no folder is given (a mask is too large to print); detections
    are drawn on their image there (`<input stem>.<task>.jpg`)."""
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
            if pred.boxes is not None and mask_dir is not None and item:
                stem = Path(item).stem
                d["image_file"] = str(draw_boxes(item, pred, Path(mask_dir) / f"{stem}.{task}.jpg"))
            row[task] = d
        rows.append(row)
    return rows


def predict_inputs(
    bundle,
    items: list[str],
    *,
    artifact=None,
    public_key=None,
    verify: bool = True,
    mask_dir: Path | None = None,
    settings: dict | None = None,
) -> tuple[list[dict], dict[str, str]]:
    """What `edgetl predict` does: the bundle verified (every file, the signature with `public_key`), the
    artifact loaded, image inputs checked to be regular files, then (JSON-ready rows, {task: kind}).
    `settings`: per-call overrides of the bundle's detection settings (score_threshold, top_k)."""
    from edgetl.runtime import Predictor
    from edgetl.runtime.limits import regular_file
    from edgetl.runtime.manifest import resolve_bundle_dir
    from edgetl.runtime.verify import verify_bundle

    bundle = resolve_bundle_dir(bundle)  # a run dir means its export/, as in `edgetl bench`
    if verify:
        verify_bundle(bundle, public_key=public_key)  # every file the manifest lists, not only the artifact
    pred = Predictor.load(bundle, artifact=artifact, verify=verify, public_key=public_key)
    if pred.input_kind == "image":
        for p in items:  # a FIFO among the inputs would block: refused before anything runs
            regular_file(p, "input image")
    results = pred.predict(items, **(settings or {}))  # a list in, a list out
    assert isinstance(results, list)
    rows = prediction_rows(items, results, mask_dir)
    return rows, {t.name: t.kind for t in pred.tasks}


def text_line(row: dict, kinds: dict[str, str]) -> str:
    """`input: task=prediction ...` for people."""
    return f"{row['input']}: " + "  ".join(f"{t}={get_kind(k).describe_prediction(row[t])}" for t, k in kinds.items())
