"""detection: boxes with a class and a score per object; headline COCO mAP@[.5:.95].

Targets are float32 `[N, M, 5]` (class, x1, y1, x2, y2) in the model input's pixels, padded with class -1 rows
(`edgetl.data.boxes`). The exported graph decodes the head and runs ONNX `NonMaxSuppression` itself and ends in
the fixed-shape layout TensorRT's `EfficientNMS_TRT` plugin has (`output_format: nms`, the default): four outputs
`<task>/num_detections` int32 [N, 1], `<task>/boxes` float32 [N, K, 4] (x1, y1, x2, y2, input pixels),
`<task>/scores` float32 [N, K], `<task>/classes` int32 [N, K]; rows past num_detections are zero. Everything in
edgetl that scores or compares detections reads them joined into one array `[N, K, 6]` (x1, y1, x2, y2, score,
class; class -1 past the last detection): `join_outputs` / `pack`. `output_format: raw` exports the head's
output instead (`[N, points, 4 + 1 + C]`: l, t, r, b distances in pixels, centerness logit, class logits; the
points' strides are in the manifest): for applications that decode and suppress themselves.

Metrics are COCO's own evaluator (pycocotools, the reference implementation): one function, `coco_metrics`,
scores PyTorch, ONNX, engine and bench outputs alike.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.base import TaskKind, TaskPrediction

PARTS = ("num_detections", "boxes", "scores", "classes")
OUTPUT_FORMATS = ("nms", "raw")
DEFAULTS = {"score_threshold": 0.05, "iou_threshold": 0.6, "max_detections": 100}
DISPLAY_SCORE = 0.3  # `edgetl predict`, summaries and the gate's agreement count detections above this score


def part_names(output: str) -> list[str]:
    return [f"{output}/{p}" for p in PARTS]


def pack(num, boxes, scores, classes) -> np.ndarray:
    """The four EfficientNMS-layout arrays -> [N, K, 6] (x1, y1, x2, y2, score, class), class -1 past num."""
    boxes = np.asarray(boxes, dtype=np.float32)
    n, k = boxes.shape[:2]
    out = np.zeros((n, k, 6), dtype=np.float32)
    out[..., :4] = boxes
    out[..., 4] = np.asarray(scores, dtype=np.float32)
    out[..., 5] = np.asarray(classes, dtype=np.float32)
    valid = np.arange(k)[None, :] < np.asarray(num).reshape(n, 1)
    out[~valid] = 0.0
    out[..., 5][~valid] = -1.0
    return out


RAW_EXTRA = 8  # raw columns before the class logits: x1, y1, x2, y2, centerness logit, point x, point y, stride


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS of one class (ONNX NonMaxSuppression's rule: drop a box whose IoU with a kept, higher-scoring
    box exceeds the threshold); indices of the kept boxes, highest score first, at most `limit`."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order) and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(boxes[i : i + 1], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_raw(raw: np.ndarray, options: dict | None = None) -> np.ndarray:
    """A raw-head export's output [N, points, 8 + C] -> packed detections [N, K, 6], with the same decoding and
    per-class suppression the exported graph does (for scoring and running `output_format: raw` bundles)."""
    opts = {**DEFAULTS, **(options or {})}
    thr, iou, k = float(opts["score_threshold"]), float(opts["iou_threshold"]), int(opts["max_detections"])
    raw = np.asarray(raw, dtype=np.float32)
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    out = np.zeros((len(raw), k, 6), np.float32)
    out[..., 5] = -1
    for n, r in enumerate(raw):
        boxes, scores = r[:, :4], np.sqrt(sig(r[:, RAW_EXTRA:]) * sig(r[:, 4:5]))
        found: list[tuple[float, int, int]] = []
        for c in range(scores.shape[1]):
            cand = np.flatnonzero(scores[:, c] > thr)
            kept = cand[nms_numpy(boxes[cand], scores[cand, c], iou, k)]
            found.extend((float(scores[i, c]), int(i), c) for i in kept)
        found.sort(key=lambda t: -t[0])
        for j, (score, i, c) in enumerate(found[:k]):
            out[n, j] = (*boxes[i], score, c)
    return out


def as_detections(output: np.ndarray, options: dict | None = None) -> np.ndarray:
    """Packed detections [N, K, 6] as they are, or a raw head's output decoded (`decode_raw`)."""
    output = np.asarray(output)
    if output.ndim != 3:
        raise EdgetlError(
            f"detection: expected detections [N, K, 6] or a raw head [N, points, 8 + C], got {output.shape}"
        )
    return output if output.shape[-1] == 6 else decode_raw(output, options)


def detections_of(packed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[N, K, 6] -> per image (boxes [n, 4], scores [n], classes int64 [n])."""
    out = []
    for d in np.asarray(packed, dtype=np.float32):
        keep = d[:, 5] >= 0
        out.append((d[keep, :4], d[keep, 4], d[keep, 5].astype(np.int64)))
    return out


def truth_of(target: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A padded target [N, M, 5] -> per image (boxes [n, 4], classes int64 [n])."""
    out = []
    for t in np.asarray(target, dtype=np.float32):
        keep = t[:, 0] >= 0
        out.append((t[keep, 1:5], t[keep, 0].astype(np.int64)))
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [n, 4] with every box in b [m, 4] (x1, y1, x2, y2)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), dtype=np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def coco_metrics(packed: np.ndarray, target: np.ndarray, labels: list[str], full: bool = False) -> dict:
    """COCO mAP@[.5:.95], mAP@.5, AR@100 (and per-class AP and recall with `full`) by pycocotools' COCOeval."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise EdgetlError("detection metrics need pycocotools: pip install pycocotools") from None
    truth, dets = truth_of(target), detections_of(packed)
    if len(truth) != len(dets):
        raise EdgetlError(f"detection: {len(dets)} predictions for {len(truth)} images")
    images = [{"id": i + 1, "width": 1, "height": 1} for i in range(len(truth))]
    anns: list[dict] = []
    results: list[dict] = []
    for i, (b, c) in enumerate(truth):
        for box, cls in zip(b.tolist(), c.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1, "iscrowd": 0,
                         "bbox": [box[0], box[1], w, h], "area": w * h})  # fmt: skip
    for i, (b, s, c) in enumerate(dets):
        for box, score, cls in zip(b.tolist(), s.tolist(), c.tolist()):
            results.append({"image_id": i + 1, "category_id": cls + 1, "score": score,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})  # fmt: skip
    m: dict = {"n": len(truth), "n_boxes": len(anns), "n_detections": len(results)}
    if not anns or not results:
        m.update({"map": 0.0, "map50": 0.0, "recall": 0.0})
        if full:
            m["per_class"] = {lab: {"ap": 0.0, "recall": 0.0} for lab in labels}
        return m
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": k + 1, "name": lab} for k, lab in enumerate(labels)]}  # fmt: skip
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(v), 0.0) for v in ev.stats]  # -1: no truth in that area range
    m.update({"map": stats[0], "map50": stats[1], "map75": stats[2], "recall": stats[8]})
    if full:
        prec, rec = ev.eval["precision"], ev.eval["recall"]  # [T, R, K, A, M], [T, K, A, M]
        per = {}
        for k, lab in enumerate(labels):
            p, r = prec[:, :, k, 0, -1], rec[:, k, 0, -1]
            per[lab] = {
                "ap": float(p[p > -1].mean()) if (p > -1).any() else None,
                "recall": float(r[r > -1].mean()) if (r > -1).any() else None,
            }
        m["per_class"] = per
    return m


def matched_share(ref: np.ndarray, got: np.ndarray, min_iou: float = 0.5) -> tuple[float, float]:
    """Over the confident reference detections: (share found in `got` with the same class at IoU >= min_iou,
    mean best same-class IoU). (1, 1) when the reference has none."""
    found: list[bool] = []
    ious: list[float] = []
    for (rb, rs, rc), (gb, gs, gc) in zip(detections_of(ref), detections_of(got)):
        keep = rs >= DISPLAY_SCORE
        rb, rc = rb[keep], rc[keep]
        if not len(rb):
            continue
        iou = box_iou(rb, gb[gs >= DISPLAY_SCORE / 2])
        same = rc[:, None] == gc[gs >= DISPLAY_SCORE / 2][None, :]
        best = np.where(same, iou, 0.0).max(axis=1) if iou.size else np.zeros(len(rb))
        found.extend((best >= min_iou).tolist())
        ious.extend(best.tolist())
    if not found:
        return 1.0, 1.0
    return float(np.mean(found)), float(np.mean(ious))


def to_image(boxes: np.ndarray, size: tuple[int, int], image_size: int, resize: str) -> np.ndarray:
    """Boxes in model-input pixels -> the original h x w image's pixels (the inverse of the pre-processing)."""
    from edgetl.runtime.crop import box_geometry

    h, w = size
    sx, sy, ox, oy = box_geometry(h, w, image_size, resize)
    out = (np.asarray(boxes, dtype=np.float32) - np.array([ox, oy, ox, oy], np.float32)) / np.array(
        [sx, sy, sx, sy], np.float32
    )
    return np.clip(out, 0, np.array([w, h, w, h], np.float32))


class Detection(TaskKind):
    name = "detection"
    headline = "map"
    metrics_selectable = ("map", "map50", "recall")
    dense = True
    target_geometry = "boxes"
    float_postprocess = True  # geometric augmentation moves its boxes; no centre crop
    table_label = "mAP"
    output_formats = OUTPUT_FORMATS
    deepstream_network_type = 0  # nvinfer detector
    describe = "boxes with a class and a score per object (anchor-free FCOS head, NMS in the graph)"
    recipe_fields = frozenset(
        {"labels", "output_format", "score_threshold", "iou_threshold", "max_detections", "focal_alpha"}
    )

    def encode(self, values, labels, task, column):
        raise EdgetlError(
            f"task {task!r}: detection boxes come from COCO JSON, YOLO txt, a manifest's boxes column or a built-in "
            f"scene set, not label column {column!r}"
        )

    def present(self, target):
        return np.ones(len(target), dtype=bool)  # an image without boxes is a negative, still a target

    def output_names(self, output: str, output_format: str | None) -> list[str]:
        return [output] if output_format == "raw" else part_names(output)

    def join_outputs(self, output: str, named: dict, output_format: str | None) -> np.ndarray:
        if output_format == "raw":
            return np.asarray(named[output])
        return pack(*(named[n] for n in part_names(output)))

    def metrics(self, output, target, labels, full=False):
        return coco_metrics(as_detections(output), target, labels, full)

    def eval_line(self, m):
        return f"mAP {100 * m['map']:.2f}  mAP@.5 {100 * m['map50']:.2f}  recall {100 * m['recall']:.2f}"

    def damage(self, ref, got):
        """1 - the mean best same-class IoU of the reference's confident detections in the quantized ones."""
        return 1.0 - matched_share(as_detections(ref), as_detections(got))[1]

    def agreement(self, ref, got):
        return matched_share(as_detections(ref), as_detections(got))[0]

    def outputs_match(self, torch_out, onnx_out, atol):
        """Same detections: per image the same count and classes above the lowest kept score (order by class
        and box, NMS may order near-equal scores either way), boxes within 1e-3 relative, scores within atol."""
        if np.asarray(onnx_out).shape[-1] != 6:  # a raw head: the tensors themselves, within atol
            diff = float(np.abs(np.asarray(onnx_out) - torch_out).max()) if np.size(torch_out) else 0.0
            return diff, diff <= atol
        worst, ok = 0.0, True
        for (ab, as_, ac), (bb, bs, bc) in zip(detections_of(torch_out), detections_of(onnx_out)):
            ka, kb = as_ > 0.1, bs > 0.1  # away from the score threshold, where float noise decides
            ab, as_, ac, bb, bs, bc = ab[ka], as_[ka], ac[ka], bb[kb], bs[kb], bc[kb]
            if len(ab) != len(bb):
                return float("inf"), False
            oa = np.lexsort((ab[:, 1], ab[:, 0], ac))
            ob = np.lexsort((bb[:, 1], bb[:, 0], bc))
            if not np.array_equal(ac[oa], bc[ob]):
                return float("inf"), False
            rel = np.abs(ab[oa] - bb[ob]) / np.maximum(np.abs(ab[oa]), 1.0)
            worst = max(worst, float(rel.max()) if rel.size else 0.0)
            ok = ok and worst <= 1e-3 and bool(np.all(np.abs(as_[oa] - bs[ob]) <= max(atol, 1e-3)))
        return worst, ok

    def decode(self, task, out, labels, sizes=None, options=None):
        """Packed detections -> per image boxes in the original image's pixels, scores and class names, above
        the score threshold, at most top_k (the bundle's settings, `options` overriding them)."""
        opts = dict(options or {})
        out = as_detections(out, {k: opts[k] for k in ("iou_threshold", "max_detections") if k in opts})
        thr = float(opts.get("score_threshold", DISPLAY_SCORE))
        top_k = int(opts.get("top_k", out.shape[1]))
        preds = []
        for i, (b, s, c) in enumerate(detections_of(out)):
            keep = np.flatnonzero(s >= thr)[:top_k]  # NMS output is sorted by score
            b, s, c = b[keep], s[keep], c[keep]
            if sizes is not None and sizes[i] is not None and "image_size" in opts:
                b = to_image(b, sizes[i], int(opts["image_size"]), str(opts.get("resize", "bilinear")))
            names = [labels[k] if 0 <= k < len(labels) else str(k) for k in c.tolist()]
            preds.append(
                TaskPrediction(
                    task, self.name, boxes=b.round(2), scores=s.tolist(), labels=names, classes=c.tolist()
                )  # fmt: skip
            )
        return preds

    def check_output_width(self, task, width, labels, manifest):
        return None

    def describe_prediction(self, d: dict) -> str:
        parts = [f"{lab} {s:.2f} [{', '.join(f'{v:.0f}' for v in b)}]"
                 for lab, s, b in zip(d.get("labels", []), d.get("scores", []), d.get("boxes", []))]  # fmt: skip
        where = f" -> {d['image_file']}" if "image_file" in d else ""
        return (f"{len(parts)} object(s): " + "; ".join(parts[:8]) + (" ..." if len(parts) > 8 else "")) + where

    def train_description(self, target, labels):
        truth = truth_of(target)
        counts = np.bincount(np.concatenate([c for _, c in truth] + [np.zeros(0, np.int64)]), minlength=len(labels))
        sides = np.concatenate([np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)) for b, _ in truth] + [np.zeros(0)])
        return {
            "classes": list(labels),
            "boxes": {lab: int(c) for lab, c in zip(labels, counts.tolist())},
            "images_without_boxes": int(sum(1 for b, _ in truth if not len(b))),
            "box_side_px": [round(float(np.percentile(sides, q)), 1) for q in (5, 50, 95)] if len(sides) else [],
        }

    def summary_text(self, entry):
        boxes = ", ".join(f"{k} {v}" for k, v in list(entry["boxes"].items())[:12])
        side = entry.get("box_side_px") or []
        sides = f"; box side p5/p50/p95 {side[0]}/{side[1]}/{side[2]} px" if side else ""
        extra = f"; {entry['clipped']} clipped to their image" if entry.get("clipped") else ""
        return (
            f"{len(entry['classes'])} classes (boxes: {boxes}; {entry['images_without_boxes']} images without boxes"
            f"{sides}{extra})"
        )

    def manifest_fields(self, spec):
        return {
            "output_format": spec.output_format or "nms",
            "score_threshold": spec.score_threshold
            if spec.score_threshold is not None
            else DEFAULTS["score_threshold"],
            "iou_threshold": spec.iou_threshold if spec.iou_threshold is not None else DEFAULTS["iou_threshold"],
            "max_detections": spec.max_detections or DEFAULTS["max_detections"],
            "display_threshold": DISPLAY_SCORE,
            **(
                {
                    "raw_layout": "x1, y1, x2, y2 (input pixels), centerness logit, point x, point y, stride, class logits; "
                    "score = sqrt(sigmoid(class logit) * sigmoid(centerness logit))"
                }  # fmt: skip
                if spec.output_format == "raw"
                else {}
            ),
        }

    def deepstream_network(self, task: dict) -> int | None:
        return 0 if task.get("output_format", "nms") == "nms" else 100

    def deepstream_properties(self, task: dict) -> dict[str, str]:
        if task.get("output_format", "nms") != "nms":
            return {}
        return {
            "num-detected-classes": str(len(task["labels"])),
            # The EfficientNMS output parser of NVIDIA's deepstream_tao_apps (post_processor/
            # nvdsinfer_custombboxparser_tao.cpp); clustering is off: NMS already ran in the model.
            "parse-bbox-func-name": "NvDsInferParseCustomEfficientNMS",
            "custom-lib-path": "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser_tao.so",
            "cluster-mode": "4",
        }
