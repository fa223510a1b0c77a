"""One shared backbone, one head per task; heads attach to features, never to logits.

Global kinds (classification, multilabel, regression) take the pooled vector; kinds whose torch entry says
`takes_maps` take the backbone's stage maps (`forward_maps`). The backbone runs once either way.
"""

from __future__ import annotations

import torch
from torch import nn

from edgetl.recipe import Recipe, TaskSpec
from edgetl.tasks import get_task_kind


class MultiTaskModel(nn.Module):
    def __init__(self, backbone: nn.Module, tasks: list[TaskSpec], labels: dict[str, list[str]], dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.task_names = [t.name for t in tasks]
        self.task_kinds = {t.name: t.kind for t in tasks}
        self.task_specs = {t.name: t for t in tasks}
        kinds = {t.name: get_task_kind(t.kind) for t in tasks}
        self.heads = nn.ModuleDict(
            {t.name: kinds[t.name].build_head(backbone, len(labels[t.name]), dropout, t) for t in tasks}
        )
        self.map_tasks = frozenset(n for n, k in kinds.items() if k.takes_maps)

    def output_tasks(self) -> list[tuple[str, str, str, str | None]]:
        """(name, kind, output name, output_format) per task: what `edgetl.runtime.tasks.task_outputs` reads."""
        return [(n, self.task_kinds[n], n, getattr(self.task_specs[n], "output_format", None)) for n in self.task_names]

    def eval_outputs(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs -> what metrics read (each kind's `eval_output`: a detector's decoded detections)."""
        return {n: get_task_kind(self.task_kinds[n]).eval_output(y, self.task_specs[n]) for n, y in out.items()}

    @property
    def takes_maps(self) -> bool:
        """Some head reads the stage maps (so a cache of one frozen stage's output cannot feed it)."""
        return bool(self.map_tasks)

    def forward_heads(self, features: torch.Tensor, maps: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for name, head in self.heads.items():
            y = head(maps) if name in self.map_tasks else head(features)
            out[name] = get_task_kind(self.task_kinds[name]).shape_output(y)
        return out

    def forward(self, x=None, **text_inputs) -> dict[str, torch.Tensor]:
        """Images: model(x). Text: model(input_ids=..., attention_mask=...)."""
        if not self.map_tasks:  # global heads only: the pooled vector, the graph every bundle so far has
            feats = self.backbone(**text_inputs) if text_inputs else self.backbone(x)
            return self.forward_heads(feats)
        if text_inputs:
            maps = self.backbone.forward_maps(**text_inputs)
            feats = self.backbone.pool_maps(maps, text_inputs["attention_mask"])
        else:
            maps = self.backbone.forward_maps(x)
            feats = self.backbone.pool_maps(maps)
        return self.forward_heads(feats, maps)


class ExportWrapper(nn.Module):
    """Dict outputs -> a tuple in task order, so each task gets its own named ONNX output."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        if self.model.backbone.kind == "text":
            kw = dict(zip(self.model.backbone.input_names, inputs))
            out = self.model(**kw) if self.model.takes_maps else self.model.forward_heads(self.model.backbone(**kw))
        else:
            out = self.model(inputs[0])
        m = self.model
        flat: list[torch.Tensor] = []
        for n in m.task_names:  # a task may export several tensors (a detector's four): flattened in order
            y = get_task_kind(m.task_kinds[n]).export_output(out[n], m.task_specs[n])
            flat.extend(y if isinstance(y, tuple) else (y,))
        return tuple(flat)

    def output_names(self) -> list[str]:
        """The ONNX output names, in the order `forward` returns them (the manifest's tasks read them)."""
        from edgetl.runtime.tasks import output_names

        return output_names(self.model.output_tasks())


def build_model(recipe: Recipe, labels: dict[str, list[str]]) -> MultiTaskModel:
    from edgetl.models.registry import create_backbone

    return MultiTaskModel(create_backbone(recipe.backbone), recipe.tasks, labels)
