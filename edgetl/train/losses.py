"""Per-task losses with missing labels masked out, and logit/feature distillation terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(kind: str, out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor | None:
    """Mean loss over the examples that carry this task's label; None when none in the batch do."""
    if kind == "classification":
        keep = target >= 0
        if not keep.any():
            return None
        return F.cross_entropy(out[keep].float(), target[keep], label_smoothing=label_smoothing)
    if kind == "multilabel":
        keep = ~torch.isnan(target).any(dim=1)
        if not keep.any():
            return None
        return F.binary_cross_entropy_with_logits(out[keep].float(), target[keep])
    keep = ~torch.isnan(target)
    if not keep.any():
        return None
    return F.mse_loss(out[keep].float(), target[keep])


def kd_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) || softmax(s/T)) * T^2 (sigmoid BCE for multilabel, MSE for regression)."""
    t = temperature
    if kind == "classification":
        return F.kl_div(
            F.log_softmax(student.float() / t, dim=1),
            F.log_softmax(teacher.float() / t, dim=1),
            reduction="batchmean",
            log_target=True,
        ) * (t * t)
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(student.float() / t, torch.sigmoid(teacher.float() / t)) * (t * t)
    return F.mse_loss(student.float(), teacher.float())


def feature_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()
    return F.mse_loss(student.float(), teacher.float())
