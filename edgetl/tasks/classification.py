"""classification, torch half: cross-entropy (label smoothing) and Hinton KD."""

from __future__ import annotations

import torch.nn.functional as F

from edgetl.tasks.base import TorchTaskKind


class Classification(TorchTaskKind):
    name = "classification"

    def loss(self, out, target, label_smoothing=0.0, spec=None):
        keep = target >= 0
        if not keep.any():
            return None
        return F.cross_entropy(out[keep].float(), target[keep], label_smoothing=label_smoothing)

    def kd_loss(self, student, teacher, temperature):
        """KL(softmax(t/T) || softmax(s/T)) * T^2."""
        t = temperature
        return F.kl_div(
            F.log_softmax(student.float() / t, dim=1),
            F.log_softmax(teacher.float() / t, dim=1),
            reduction="batchmean",
            log_target=True,
        ) * (t * t)
