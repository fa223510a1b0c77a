"""regression, torch half: one output squeezed to [N], MSE loss, MSE to the teacher's value."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgetl.tasks.base import TorchTaskKind


class Regression(TorchTaskKind):
    name = "regression"

    def shape_output(self, y):
        return y.squeeze(-1)

    def loss(self, out, target, label_smoothing=0.0, spec=None):
        keep = ~torch.isnan(target)
        if not keep.any():
            return None
        return F.mse_loss(out[keep].float(), target[keep])

    def kd_loss(self, student, teacher, temperature):
        return F.mse_loss(student.float(), teacher.float())
