"""One shared backbone, one head per task; heads attach to pooled features, never to logits."""

from __future__ import annotations

import torch
from torch import nn

from edgetl.recipe import Recipe, TaskSpec


def head_outputs(task: TaskSpec, labels: list[str]) -> int:
    return 1 if task.kind == "regression" else len(labels)


class MultiTaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, tasks: list[TaskSpec], labels: dict[str, list[str]], dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.task_names = [t.name for t in tasks]
        self.task_kinds = {t.name: t.kind for t in tasks}
        self.heads = nn.ModuleDict(
            {
                t.name: nn.Sequential(
                    nn.Dropout(dropout), nn.Linear(backbone.feature_dim, head_outputs(t, labels[t.name]))
                )
                for t in tasks
            }
        )

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, head in self.heads.items():
            y = head(features)
            out[name] = y.squeeze(-1) if self.task_kinds[name] == "regression" else y
        return out

    def forward(self, x=None, **text_inputs) -> dict[str, torch.Tensor]:
        """Images: model(x). Text: model(input_ids=..., attention_mask=...)."""
        feats = self.backbone(**text_inputs) if text_inputs else self.backbone(x)
        return self.forward_heads(feats)


class ExportWrapper(nn.Module):
    """Dict outputs -> a tuple in task order, so each task gets its own named ONNX output."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        if self.model.backbone.kind == "text":
            names = self.model.backbone.input_names
            out = self.model.forward_heads(self.model.backbone(**dict(zip(names, inputs))))
        else:
            out = self.model(inputs[0])
        return tuple(out[n] for n in self.model.task_names)


def build_model(recipe: Recipe, labels: dict[str, list[str]]) -> MultiTaskModel:
    from edgetl.models.registry import create_backbone

    return MultiTaskModel(create_backbone(recipe.backbone), recipe.tasks, labels)
