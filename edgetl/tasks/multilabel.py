"""multilabel, torch half: binary cross-entropy per label; KD against the teacher's tempered sigmoids."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgetl.tasks.base import TorchTaskKind


class Multilabel(TorchTaskKind):
    name = "multilabel"

    def loss(self, out, target, label_smoothing=0.0, spec=None):
        keep = ~torch.isnan(target).any(dim=1)
        if not keep.any():
            return None
        return F.binary_cross_entropy_with_logits(out[keep].float(), target[keep])

    def kd_loss(self, student, teacher, temperature):
        t = temperature
        return F.binary_cross_entropy_with_logits(student.float() / t, torch.sigmoid(teacher.float() / t)) * (t * t)
