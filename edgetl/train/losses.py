"""Per-task losses with missing labels masked out, and logit/feature distillation terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgetl.tasks import get_task_kind


def task_loss(
    kind: str, out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0, spec=None
) -> torch.Tensor | None:
    """Mean loss over the examples that carry this task's label; None when none in the batch do (the kind's own;
    `spec`: the recipe's task entry, for kind options such as class weights)."""
    return get_task_kind(kind).loss(out, target, label_smoothing, spec)


def kd_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """The kind's distillation term (Hinton KD for classification, tempered sigmoids, MSE for values)."""
    return get_task_kind(kind).kd_loss(student, teacher, temperature)


def feature_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()
    return F.mse_loss(student.float(), teacher.float())
