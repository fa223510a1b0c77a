"""What a task kind is to PyTorch: its head on the backbone's features, its loss, its distillation term.

The torch half of a kind's registry entry (the numpy half, shared with devices, is `edgetl.runtime.tasks`).
A kind that cannot be distilled says so in one line (`distill_refusal`) instead of falling into another
kind's loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edgetl.runtime.tasks import TaskKind, get_kind


class TorchTaskKind:
    """Base of every kind's torch entry; `runtime` is the kind's numpy half."""

    name: ClassVar[str]
    distill_refusal: ClassVar[str | None] = None  # None: logit distillation is supported
    takes_maps: ClassVar[bool] = False  # the head reads the backbone's stage maps, not the pooled vector

    @property
    def runtime(self) -> TaskKind:
        return get_kind(self.name)

    def build_head(self, backbone: nn.Module, n_labels: int, dropout: float, spec=None) -> nn.Module:
        """The head: on the pooled vector (`backbone.feature_dim`) for global kinds; a kind with `takes_maps`
        builds on `backbone.stage_info` (channels and stride of each stage) and is called with the maps.
        `spec`: the recipe's task entry (head options of the kind)."""
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.feature_dim, self.runtime.output_size(n_labels)))

    def image_stages(self, backbone: nn.Module):
        """The stage list a dense head builds on; a text backbone is refused in one line."""
        if getattr(backbone, "kind", "image") != "image":
            raise ValueError(f"{self.name} needs an image backbone")
        return backbone.stage_info

    def shape_output(self, y: torch.Tensor) -> torch.Tensor:
        """The head's raw output -> what losses, metrics and the ONNX output see."""
        return y

    def loss(
        self, out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0, spec=None
    ) -> torch.Tensor | None:
        """Mean loss over the examples that carry this task's label; None when none in the batch do. `spec`: the
        recipe's task entry, for kinds with options of their own."""
        raise NotImplementedError

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """Distillation term against the teacher's raw outputs."""
        raise NotImplementedError

    def eval_output(self, y: torch.Tensor, spec=None) -> torch.Tensor:
        """The raw output -> what metrics read in PyTorch evaluation, as the exported graph would give it
        (a detector's decoded and suppressed detections); most kinds: the raw output."""
        return y

    def export_output(self, y: torch.Tensor, spec=None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """What the exported graph outputs for this task (its raw output, unless the kind post-processes in the
        graph: a segmentation class map; a detector's four EfficientNMS-layout tensors)."""
        return y
