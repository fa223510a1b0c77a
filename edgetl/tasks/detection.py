"""detection, torch half: an FCOS head on the backbone's feature pyramid, torchvision.ops losses, NMS in the graph.

Why FCOS (anchor-free, per-pixel): no anchor shapes to tune per dataset, one prediction per feature-map point
(a plain conv head that quantizes like the backbone: no deformable or attention ops), and torchvision ships
the same design (`torchvision.models.detection.FCOS`), the peer edgetl is measured against. YOLOX needs
SimOTA's dynamic assignment and strong mosaic augmentation to pay off; CenterNet's heatmap peaks need a
max-pool "NMS" that TensorRT's EfficientNMS cannot replace.

The head: `torchvision.ops.FeaturePyramidNetwork` on the stages at strides 8, 16 and 32 (P3-P5), a shared tower
of four 3x3 conv + BatchNorm + ReLU per branch, the convolutions shared by the levels and a BatchNorm per level
(BatchNorm, not FCOS's GroupNorm: it folds into the conv at export, so the deployed head is plain convolutions
that INT8 and TensorRT fuse; per level, because levels differ in statistics) (classification; box + centerness), a learned scale per level.
Boxes are l, t, r, b distances from each point, `exp(scale * x) * stride` pixels (positive by construction).

The assigner (FCOS with centre sampling): a point is a positive of an object when it lies inside the object's
box and within 1.5 strides of its centre, and the object's largest distance to the point falls in the level's
range (P3 0-64 px, P4 64-128, P5 128+, as in FCOS); a point claimed by several objects takes the smallest.
Losses from `torchvision.ops`: `sigmoid_focal_loss` (alpha 0.25, gamma 2) on the class logits of every point,
`generalized_box_iou_loss` on positives weighted by their centerness target, and binary cross-entropy on
centerness, each divided by the number of positives. Score = sqrt(sigmoid(class) * sigmoid(centerness)).

Decoding and suppression (`detect`) are one function for PyTorch evaluation and the exported graph: in PyTorch
`NonMaxSuppressionOp` runs `torchvision.ops.batched_nms`; in the ONNX export it is the standard
`NonMaxSuppression` operator (batched, per class), followed by a fixed top-K in EfficientNMS_TRT's layout.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgetl.runtime.tasks.detection import DEFAULTS
from edgetl.tasks.base import TorchTaskKind
from edgetl.tasks.segmentation import pick_stages

STRIDES = (8, 16, 32)
CENTER_RADIUS = 1.5
EXTRA = 8  # raw columns before the class logits: x1, y1, x2, y2, centerness, point x, point y, stride


class LevelTower(nn.Module):
    """Convolutions shared by every pyramid level, a BatchNorm per level (NanoDet's choice): one BatchNorm shared
    across levels would evaluate every level with running statistics averaged over all of them."""

    def __init__(self, channels: int, convs: int, levels: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(convs))
        self.norms = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(convs)) for _ in range(levels))

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms[level]):
            x = F.relu(norm(conv(x)))
        return x


class FCOSDetHead(nn.Module):
    def __init__(self, stage_info, num_classes: int, channels: int = 64, convs: int = 4):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.levels = pick_stages(stage_info, STRIDES)
        self.strides = [int(stage_info[i].stride or 1) for i in self.levels]
        self.fpn = FeaturePyramidNetwork([stage_info[i].channels for i in self.levels], channels)

        levels = len(self.levels)
        self.cls_tower = LevelTower(channels, convs, levels)
        self.box_tower = LevelTower(channels, convs, levels)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.levels)))
        for m in (self.cls_logits, self.box, self.centerness):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))  # prior 0.01: focal loss starts calm

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """-> [N, points, 8 + C]: x1, y1, x2, y2 (input pixels), centerness logit, point x, point y, stride, logits."""
        feats = self.fpn(OrderedDict((str(i), maps[i]) for i in self.levels))
        outs = []
        for level, (f, stride) in enumerate(zip(feats.values(), self.strides)):
            n, _, h, w = f.shape
            c, b = self.cls_tower(f, level), self.box_tower(f, level)
            logits = self.cls_logits(c).flatten(2).transpose(1, 2)
            ltrb = torch.exp((self.scales[level] * self.box(b)).clamp(max=10.0)) * stride
            ltrb = ltrb.flatten(2).transpose(1, 2)
            ctr = self.centerness(b).flatten(2).transpose(1, 2)
            ys = (torch.arange(h, device=f.device, dtype=f.dtype) + 0.5) * stride
            xs = (torch.arange(w, device=f.device, dtype=f.dtype) + 0.5) * stride
            py, px = torch.meshgrid(ys, xs, indexing="ij")
            pts = torch.stack([px.reshape(-1), py.reshape(-1)], -1)[None].expand(n, -1, -1)
            boxes = torch.cat([pts - ltrb[..., :2], pts + ltrb[..., 2:]], -1)
            st = torch.full_like(pts[..., :1], float(stride))
            outs.append(torch.cat([boxes, ctr, pts, st, logits], -1))
        return torch.cat(outs, 1)


# ------------------------------------------------------------------------------------------------ assigner
def assign(raw: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point, the index of the object it learns (-1: background) and that object's row; see module doc.

    raw [N, A, 8 + C], target [N, M, 5] (class, x1, y1, x2, y2; class -1 rows are padding)."""
    pts, stride = raw[..., 5:7].detach(), raw[..., 7].detach()  # [N, A, 2], [N, A]
    boxes, valid = target[..., 1:5], target[..., 0] >= 0  # [N, M, 4], [N, M]
    px, py = pts[..., 0:1], pts[..., 1:2]  # [N, A, 1]
    x1, y1, x2, y2 = (boxes[..., k][:, None, :] for k in range(4))  # [N, 1, M]
    ltrb = torch.stack([px - x1, py - y1, x2 - px, y2 - py], -1)  # [N, A, M, 4]
    inside = ltrb.min(-1).values > 0
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = (CENTER_RADIUS * stride)[..., None]
    near = ((px - cx).abs() < r) & ((py - cy).abs() < r)
    reach = ltrb.max(-1).values
    lo = torch.where(stride == STRIDES[0], torch.zeros_like(stride), stride * 4)[..., None]
    hi = torch.where(stride == stride.max(), torch.full_like(stride, float("inf")), stride * 8)[..., None]
    ok = inside & near & (reach >= lo) & (reach <= hi) & valid[:, None, :]
    area = ((x2 - x1) * (y2 - y1)).expand_as(reach)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(-1)  # [N, A]
    matched = torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))
    rows = torch.gather(target, 1, matched.clamp(min=0)[..., None].expand(-1, -1, 5))  # [N, A, 5]
    return matched, rows


def detection_loss(raw: torch.Tensor, target: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

    raw = raw.float()
    target = target.float()
    matched, rows = assign(raw, target)
    pos = matched >= 0
    n_pos = max(float(pos.sum()), 1.0)
    logits = raw[..., EXTRA:]
    onehot = torch.zeros_like(logits)
    cls = rows[..., 0].long().clamp(min=0)
    onehot[pos, cls[pos]] = 1.0
    loss = sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=2.0, reduction="sum") / n_pos
    if not pos.any():
        return loss + raw[..., :5].sum() * 0.0
    pts = raw[..., 5:7][pos]
    gt = rows[..., 1:5][pos]
    ltrb = torch.cat([pts - gt[:, :2], gt[:, 2:] - pts], -1).clamp(min=1e-6)
    ctr_target = torch.sqrt(
        (ltrb[:, [0, 2]].min(-1).values / ltrb[:, [0, 2]].max(-1).values)
        * (ltrb[:, [1, 3]].min(-1).values / ltrb[:, [1, 3]].max(-1).values)
    )
    giou = generalized_box_iou_loss(raw[..., :4][pos], gt, reduction="none")
    loss = loss + (giou * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
    loss = loss + F.binary_cross_entropy_with_logits(raw[..., 4][pos], ctr_target, reduction="sum") / n_pos
    return loss


# ------------------------------------------------------------------------------------- decoding + NMS
class NonMaxSuppressionOp(torch.autograd.Function):
    """ONNX NonMaxSuppression's semantics (per image and class: boxes above the score threshold, IoU above the
    threshold suppressed, at most `max_per_class` kept) -> selected [S, 3] (image, class, box). Eager:
    torchvision's batched_nms; exported: the ONNX operator itself."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        from torchvision.ops import batched_nms

        out = []
        for b in range(boxes.shape[0]):
            cls, idx = torch.nonzero(scores[b] > score_threshold, as_tuple=True)
            if not len(idx):
                continue
            keep = batched_nms(boxes[b][idx].float(), scores[b][cls, idx].float(), cls, iou_threshold)
            cls, idx = cls[keep], idx[keep]  # sorted by score
            rank = torch.zeros_like(cls)  # at most max_per_class per class, the highest scores
            for c in cls.unique():
                at = cls == c
                rank[at] = torch.arange(int(at.sum()), device=cls.device)
            keep = rank < max_per_class
            out.append(torch.stack([torch.full_like(idx[keep], b), cls[keep], idx[keep]], 1))
        return torch.cat(out) if out else torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
        const = lambda v, dt: g.op("Constant", value_t=torch.tensor([v], dtype=dt))  # noqa: E731
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(int(max_per_class), torch.int64),
            const(float(iou_threshold), torch.float32),
            const(float(score_threshold), torch.float32),
            center_point_box_i=0,
        )


def detect(raw: torch.Tensor, spec=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw head output -> EfficientNMS_TRT's layout: num_detections int32 [N, 1], boxes [N, K, 4], scores
    [N, K], classes int32 [N, K] (zeros past num_detections); K = the task's max_detections."""
    thr = getattr(spec, "score_threshold", None) or DEFAULTS["score_threshold"]
    iou = getattr(spec, "iou_threshold", None) or DEFAULTS["iou_threshold"]
    top_k = getattr(spec, "max_detections", None) or DEFAULTS["max_detections"]
    raw = raw.float()
    boxes = raw[..., :4]
    scores = torch.sqrt(torch.sigmoid(raw[..., EXTRA:]) * torch.sigmoid(raw[..., 4:5]))  # [N, A, C]
    n, a, c = scores.shape
    per_class = scores.transpose(1, 2).contiguous()  # [N, C, A], ONNX NMS's layout
    sel = NonMaxSuppressionOp.apply(boxes, per_class, top_k, float(iou), float(thr))
    b, k, i = sel[:, 0], sel[:, 1], sel[:, 2]
    kept = torch.zeros((n, c * a), dtype=scores.dtype, device=scores.device)
    kept = kept.index_put((b, k * a + i), per_class[b, k, i])
    k_out = min(top_k, c * a)
    top, at = kept.topk(k_out, dim=1)
    valid = top > 0
    box_at = (at % a)[..., None].expand(-1, -1, 4)
    out_boxes = torch.gather(boxes, 1, box_at) * valid[..., None]
    out_classes = torch.where(valid, at // a, torch.zeros_like(at)).to(torch.int32)
    num = valid.sum(1, keepdim=True).to(torch.int32)
    out_scores = top * valid
    if k_out < top_k:  # fewer candidates than K (a tiny input): pad to the fixed K
        pad = top_k - k_out
        out_boxes = F.pad(out_boxes, (0, 0, 0, pad))
        out_scores, out_classes = F.pad(out_scores, (0, pad)), F.pad(out_classes, (0, pad))
    return num, out_boxes, out_scores, out_classes


def packed(parts) -> torch.Tensor:
    """detect()'s four outputs -> [N, K, 6] (x1, y1, x2, y2, score, class; class -1 past num_detections)."""
    num, boxes, scores, classes = parts
    valid = torch.arange(boxes.shape[1], device=boxes.device)[None, :] < num
    cls = torch.where(valid, classes.float(), torch.full_like(scores, -1.0))
    return torch.cat([boxes, scores[..., None], cls[..., None]], -1)


class Detection(TorchTaskKind):
    name = "detection"
    takes_maps = True
    distill_refusal = "detector distillation is not implemented; train the detection head on its boxes"

    def build_head(self, backbone, n_labels, dropout, spec=None):
        return FCOSDetHead(self.image_stages(backbone), n_labels)

    def loss(self, out, target, label_smoothing=0.0, spec=None):
        alpha = getattr(spec, "focal_alpha", None) or 0.25
        return detection_loss(out, target, alpha)

    def kd_loss(self, student, teacher, temperature):
        raise NotImplementedError(self.distill_refusal)

    def eval_output(self, y, spec=None):
        if spec is not None and spec.output_format == "raw":  # scored like its export: decoded by the runtime
            return y
        return packed(detect(y, spec))

    def export_output(self, y, spec=None):
        if spec is not None and spec.output_format == "raw":
            return y
        return detect(y, spec)
