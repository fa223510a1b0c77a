"""segmentation: a class per pixel (semantic segmentation); headline mIoU.

Targets are uint8 class maps at the model's input size, with 255 for pixels that count nowhere (the recipe's
`ignore_index` is mapped to 255 when masks are read). The model outputs per-pixel logits `[N, C, H, W]` in
PyTorch; the exported graph ends in an argmax to a uint8 class map `[N, H, W]` (`output_format: classmap`,
smaller and faster to read on a device) or keeps the logits (`logits`). Metrics, the gate and the runtime accept
either. One confusion matrix (`confusion`) serves PyTorch, ONNX and bench evaluation alike.
"""

from __future__ import annotations

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.base import TaskKind, TaskPrediction

IGNORE = 255  # the stored value of pixels excluded from loss and metrics
OUTPUT_FORMATS = ("classmap", "logits")


def class_map(out: np.ndarray) -> np.ndarray:
    """[N, C, H, W] logits or [N, H, W] class indices -> [N, H, W] int64 class indices."""
    out = np.asarray(out)
    if out.ndim == 4:
        return out.argmax(axis=1)
    if out.ndim == 3:
        return out.astype(np.int64)
    raise EdgetlError(f"segmentation output has shape {out.shape}; expected [N, C, H, W] or [N, H, W]")


def confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """k x k pixel confusion matrix (rows: truth, columns: prediction), ignored pixels left out."""
    t = np.asarray(target).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = t != IGNORE
    t, p = t[keep], p[keep]
    if len(t) and (t.max() >= k or p.max() >= k):
        raise EdgetlError(f"segmentation: class index {max(t.max(), p.max())} beyond the {k} labels")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def scores_from_confusion(cm: np.ndarray, labels: list[str], full: bool) -> dict:
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0  # classes seen in the truth or the prediction
    iou = np.divide(tp, union, out=np.zeros(len(tp)), where=present)
    n = int(cm.sum())
    m: dict = {
        "n_pixels": n,
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / n) if n else float("nan"),
    }
    if full:
        m["per_class_iou"] = {lab: (float(iou[i]) if present[i] else None) for i, lab in enumerate(labels)}
        m["confusion_matrix"] = cm.tolist()
    return m


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class map to (h, w), nearest neighbour (class indices must never be blended)."""
    h, w = size
    ih, iw = mask.shape
    if (ih, iw) == (h, w):
        return mask
    rows = np.minimum(((np.arange(h) + 0.5) * ih / h).astype(np.int64), ih - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * iw / w).astype(np.int64), iw - 1)
    return mask[rows[:, None], cols[None, :]]


class Segmentation(TaskKind):
    name = "segmentation"
    headline = "miou"
    metrics_selectable = ("miou", "pixel_accuracy")
    dense = True
    target_geometry = "mask"
    table_label = "mIoU"
    output_formats = OUTPUT_FORMATS
    deepstream_network_type = 2  # nvinfer segmentation (logits output; a class-map output is read as tensors)
    describe = "a class per pixel (semantic segmentation)"
    recipe_fields = frozenset({"labels", "ignore_index", "dice_weight", "class_weights", "output_format", "decoder"})

    def encode(self, values, labels, task, column):
        raise EdgetlError(
            f"task {task!r}: segmentation masks come from image files or a built-in scene set, not column {column!r}"
        )

    def present(self, target):
        return np.ones(len(target), dtype=bool)  # every row has a mask (a missing one is refused when listed)

    def metrics(self, output, target, labels, full=False):
        pred = class_map(output)
        truth = np.asarray(target)
        if pred.shape != truth.shape:
            raise EdgetlError(f"segmentation: prediction {pred.shape} and masks {truth.shape} differ in shape")
        m = scores_from_confusion(confusion(pred, truth, len(labels)), labels, full)
        m["n"] = int(len(truth))
        return m

    def eval_line(self, m):
        return f"mIoU {100 * m['miou']:.2f}  pixel accuracy {100 * m['pixel_accuracy']:.2f}"

    def damage(self, ref, got):
        """Logits: mean per-pixel KL of the softmaxes; class maps: the share of pixels whose class changed."""
        if ref.ndim == 4 and got.ndim == 4:
            la = ref - ref.max(axis=1, keepdims=True)
            la = la - np.log(np.exp(la).sum(axis=1, keepdims=True))
            lb = got - got.max(axis=1, keepdims=True)
            lb = lb - np.log(np.exp(lb).sum(axis=1, keepdims=True))
            return float((np.exp(la) * (la - lb)).sum(axis=1).mean())
        return float((class_map(ref) != class_map(got)).mean())

    def agreement(self, ref, got):
        return float((class_map(ref) == class_map(got)).mean())

    def outputs_match(self, torch_out: np.ndarray, onnx_out: np.ndarray, atol: float) -> tuple[float, bool]:
        """Export verification: logits within atol, or class maps that agree on >= 99.9% of pixels (an argmax
        may flip where two logits tie within float noise)."""
        if np.asarray(onnx_out).ndim == 4:
            diff = float(np.abs(onnx_out - torch_out).max())
            return diff, diff <= atol
        a, b = class_map(torch_out), class_map(onnx_out)
        if a.shape != b.shape:
            raise EdgetlError(f"segmentation: exported class map {b.shape} and PyTorch's {a.shape} differ in shape")
        agree = float((a == b).mean())
        return 1.0 - agree, agree >= 0.999

    def decode(self, task, out, labels, sizes=None, options=None):
        maps = class_map(out).astype(np.uint8)
        preds = []
        for i, m in enumerate(maps):
            if sizes is not None and sizes[i] is not None:
                m = resize_nearest(m, sizes[i])
            counts = np.bincount(m.reshape(-1), minlength=len(labels))[: len(labels)]
            areas = {lab: float(c / m.size) for lab, c in zip(labels, counts.tolist()) if c}
            preds.append(TaskPrediction(task, self.name, mask=m, areas=areas))
        return preds

    def check_output_width(self, task, width, labels, manifest):
        return None  # a class map has no width; logits' class axis is checked by `class_map`

    def describe_prediction(self, d: dict) -> str:
        areas = sorted(d.get("areas", {}).items(), key=lambda kv: -kv[1])
        where = f" -> {d['mask_file']}" if "mask_file" in d else ""
        return "[" + ", ".join(f"{k} {100 * v:.1f}%" for k, v in areas[:5]) + "]" + where

    def train_description(self, target, labels):
        n = min(len(target), 200)  # masks may be decoded from files: a sample says enough
        sample = np.asarray(target[np.arange(n)]) if n else np.zeros((0, 1, 1), np.uint8)
        counts = np.bincount(sample[sample != IGNORE].reshape(-1).astype(np.int64), minlength=len(labels))
        total = max(int(counts.sum()), 1)
        return {
            "classes": list(labels),
            "pixel_share": {lab: round(float(c) / total, 4) for lab, c in zip(labels, counts.tolist())},
            "masks_sampled": int(n),
        }

    def summary_text(self, entry):
        share = ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(entry["pixel_share"].items())[:12])
        return f"{len(entry['classes'])} classes (pixels in {entry['masks_sampled']} train masks: {share})"

    def manifest_fields(self, spec):
        return {
            "output_format": spec.output_format or "classmap",
            "ignore_index": spec.ignore_index if spec.ignore_index is not None else IGNORE,
        }

    def deepstream_network(self, task: dict) -> int | None:
        return 2 if task.get("output_format") == "logits" else 100  # a class map has no nvinfer parser

    def deepstream_properties(self, task: dict) -> dict[str, str]:
        if task.get("output_format") != "logits":
            return {}
        return {"num-detected-classes": str(len(task["labels"])), "segmentation-threshold": "0.0"}
