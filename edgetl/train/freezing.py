"""Freeze policies over named backbone stages, layer-wise LR decay, and BatchNorm handling.

A frozen stage has requires_grad=False on every parameter, is kept out of the optimizer (no state held),
and when `freeze_bn` is set its BatchNorm layers stay in eval mode so running statistics do not move.
"""

from __future__ import annotations

import torch
from torch import nn

from edgetl.errors import EdgetlError
from edgetl.recipe import FreezeSpec, TrainSpec


def frozen_prefix(spec: FreezeSpec, num_stages: int, epoch: int) -> int:
    """How many leading stages are frozen at `epoch` (0-based)."""
    if spec.policy == "none":
        return 0
    if spec.policy == "linear_probe":
        return num_stages
    if spec.policy == "first_k":
        if spec.stages > num_stages:
            raise EdgetlError(f"train.freeze.stages={spec.stages} but the backbone has only {num_stages} stages")
        return spec.stages
    # gradual: all frozen, then one more stage from the top every `every` epochs
    start = spec.stages if spec.stages else num_stages
    if start > num_stages:
        raise EdgetlError(f"train.freeze.stages={spec.stages} but the backbone has only {num_stages} stages")
    return max(0, start - epoch // spec.every)


def apply_freeze(backbone: nn.Module, k: int) -> None:
    """Stages [0, k) frozen, the rest trainable. Parameters outside every stage (e.g. a pooler) train only
    while the last stage does, whatever the earlier k was (gradual unfreezing calls this every epoch)."""
    in_stage = set()
    for i, stage in enumerate(backbone.stages):
        for p in stage.parameters():
            p.requires_grad_(i >= k)
            in_stage.add(id(p))
    for p in backbone.parameters():
        if id(p) not in in_stage:
            p.requires_grad_(k < backbone.num_stages)


def set_train_mode(model: nn.Module, k: int, freeze_bn: bool) -> None:
    """model.train(), but frozen stages' BatchNorm (and dropout) stay in eval mode."""
    model.train()
    if freeze_bn:
        if k >= model.backbone.num_stages:
            model.backbone.eval()
        for stage in list(model.backbone.stages)[:k]:
            stage.eval()


def param_groups(model: nn.Module, train: TrainSpec, k: int) -> list[dict]:
    """Trainable parameters only, one group per stage (LR scaled by layer_decay ** distance from the top)."""
    stages = list(model.backbone.stages)
    n = len(stages)
    decay = train.layer_decay
    groups = []
    seen = set()
    for i, stage in enumerate(stages):
        params = [p for p in stage.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in stage.parameters())
        if params:
            scale = decay ** (n - i) if decay else 1.0
            groups.append(
                {
                    "params": params,
                    "lr": train.lr * scale,
                    "name": f"stage{i}:{model.backbone.stage_names[i]}",
                    "lr_scale": scale,
                }
            )
    rest = [p for p in model.backbone.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": train.lr, "name": "backbone.other", "lr_scale": 1.0})
    head_lr = train.head_lr or train.lr
    groups.append(
        {
            "params": [p for p in model.heads.parameters()],
            "lr": head_lr,
            "name": "heads",
            "lr_scale": head_lr / train.lr,
        }
    )
    return groups


def make_optimizer(groups: list[dict], train: TrainSpec) -> torch.optim.Optimizer:
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


def lr_factor(train: TrainSpec, epoch_float: float) -> float:
    """Schedule multiplier at a (fractional) epoch: linear warm-up, then constant / cosine / step."""
    import math

    if train.warmup_epochs and epoch_float < train.warmup_epochs:
        return max(epoch_float / train.warmup_epochs, 1e-3)
    if train.schedule == "cosine":
        span = max(train.epochs - train.warmup_epochs, 1e-9)
        t = min(max(epoch_float - train.warmup_epochs, 0.0) / span, 1.0)
        return 0.5 * (1 + math.cos(math.pi * t))
    if train.schedule == "step":
        return 0.1 ** int(epoch_float // max(train.epochs // 3, 1))
    return 1.0
