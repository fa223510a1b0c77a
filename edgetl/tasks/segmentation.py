"""segmentation, torch half: a light FPN decoder on the backbone's stage maps, cross-entropy (+ optional dice).

Why this head: `torchvision.ops.FeaturePyramidNetwork` (the library's own, used by its detectors) merges the
stages at strides 4..32 top-down; each level is upsampled to the finest one and summed (Panoptic FPN's semantic
branch, one conv per level instead of a tower), then a 3x3 conv, a 1x1 classifier and a bilinear upsampling to the
input size. It reads every scale, where LR-ASPP (torchvision's mobile segmentation head) reads two; both stay
small enough for a Jetson. The export ends in an argmax to a uint8 class map unless the task asks for logits.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgetl.runtime.tasks.segmentation import IGNORE
from edgetl.tasks.base import TorchTaskKind

FPN_STRIDES = (4, 8, 16, 32)


def pick_stages(stage_info, strides=FPN_STRIDES) -> list[int]:
    """The last stage at each wanted stride (the deepest map of that resolution), finest first."""
    picked = {}
    for i, s in enumerate(stage_info):
        if s.stride in strides:
            picked[s.stride] = i
    if not picked:  # a backbone with other strides: its last stage alone
        return [len(stage_info) - 1]
    return [picked[s] for s in sorted(picked)]


class FPNSegHead(nn.Module):
    def __init__(self, stage_info, num_classes: int, channels: int = 64, dropout: float = 0.0):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.levels = pick_stages(stage_info)
        self.in_stride = int(stage_info[self.levels[0]].stride or 1)
        self.fpn = FeaturePyramidNetwork([stage_info[i].channels for i in self.levels], channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        feats = self.fpn(OrderedDict((str(i), maps[i]) for i in self.levels))
        levels = list(feats.values())
        top = levels[0]
        fused = top
        for f in levels[1:]:
            fused = fused + F.interpolate(f, size=top.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.dropout(self.fuse(fused)))
        return F.interpolate(logits, scale_factor=float(self.in_stride), mode="bilinear", align_corners=False)


class LRASPPSegHead(nn.Module):
    """torchvision's own LR-ASPP head (`torchvision.models.segmentation.lraspp.LRASPPHead`) on the stride-8 stage
    (low) and the last stage (high): the peer edgetl's FPN decoder is measured against, and a choice for users."""

    def __init__(self, stage_info, num_classes: int, inter_channels: int = 128):
        super().__init__()
        from torchvision.models.segmentation.lraspp import LRASPPHead

        eights = [i for i, s in enumerate(stage_info) if s.stride == 8]
        self.low = eights[-1] if eights else 0
        self.high = len(stage_info) - 1
        self.in_stride = int(stage_info[self.low].stride or 1)
        self.head = LRASPPHead(
            stage_info[self.low].channels, stage_info[self.high].channels, num_classes, inter_channels
        )

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        logits = self.head({"low": maps[self.low], "high": maps[self.high]})
        return F.interpolate(logits, scale_factor=float(self.in_stride), mode="bilinear", align_corners=False)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch, ignored pixels left out."""
    keep = (target != IGNORE).unsqueeze(1)
    probs = logits.float().softmax(1) * keep
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1).long(), logits.shape[1]).permute(0, 3, 1, 2) * keep
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + 1) / (denom + 1)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0.0


class Segmentation(TorchTaskKind):
    name = "segmentation"
    takes_maps = True
    distill_refusal = "pixel-wise distillation is not implemented; train the segmentation head on its masks"

    def build_head(self, backbone, n_labels, dropout, spec=None):
        stages = self.image_stages(backbone)
        if spec is not None and spec.decoder == "lraspp":
            return LRASPPSegHead(stages, n_labels)
        return FPNSegHead(stages, n_labels, dropout=dropout)

    def loss(self, out, target, label_smoothing=0.0, spec=None):
        target = target.long()
        if not (target != IGNORE).any():
            return None
        weight = None
        if spec is not None and spec.class_weights is not None:
            weight = torch.tensor(spec.class_weights, dtype=torch.float32, device=out.device)
        loss = F.cross_entropy(out.float(), target, weight=weight, ignore_index=IGNORE, label_smoothing=label_smoothing)
        if spec is not None and spec.dice_weight:
            loss = loss + spec.dice_weight * dice_loss(out, target)
        return loss

    def kd_loss(self, student, teacher, temperature):
        raise NotImplementedError(self.distill_refusal)

    def export_output(self, y, spec=None):
        if spec is not None and spec.output_format == "logits":
            return y
        return y.argmax(1).to(torch.uint8)
