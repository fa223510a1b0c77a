"""The backbone contract every adapter honours (CNN or transformer).

`stages` are the network's natural layer groups, in order; freezing, layer-wise LR and the feature cache all
work on them. `forward_prefix(x, k)` runs stages [0, k) and `forward_suffix(h, k)` the rest plus pooling, so a
frozen prefix can be computed once and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class PretrainedConfig:
    """What the weights expect: travels with the backbone so every step reads pre-processing from one place."""

    kind: str = "image"
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    image_size: int = 224
    weights: str = "none"
    source: str = ""  # where the weights came from (file, package, URL), for the manifest
    tokenizer_path: str | None = None


class ImageBackbone(nn.Module):
    """A CNN trunk as a list of stages followed by global average pooling -> [B, feature_dim]."""

    kind = "image"

    def __init__(self, stages: list[nn.Module], stage_names: list[str], feature_dim: int, cfg: PretrainedConfig):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.stage_names = list(stage_names)
        self.feature_dim = feature_dim
        self.cfg = cfg
        self.pool = nn.AdaptiveAvgPool2d(1)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward_prefix(self, x: torch.Tensor, k: int) -> torch.Tensor:
        for stage in self.stages[:k]:
            x = stage(x)
        return x

    def forward_suffix(self, h: torch.Tensor, k: int) -> torch.Tensor:
        for stage in self.stages[k:]:
            h = stage(h)
        return torch.flatten(self.pool(h), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_suffix(x, 0)


def group_by_resolution(modules: list[nn.Module], names: list[str], probe: torch.Tensor):
    """Split a flat list of modules into stages wherever the spatial resolution drops (discovered, not hard-coded)."""
    groups: list[list[int]] = []
    last_hw = None
    x = probe
    was_training = [m.training for m in modules]
    for m in modules:  # eval: the probe must not move BatchNorm running statistics of pretrained weights
        m.eval()
    with torch.no_grad():
        for i, m in enumerate(modules):
            x = m(x)
            hw = tuple(x.shape[-2:]) if x.dim() == 4 else None
            if groups and hw == last_hw:
                groups[-1].append(i)
            else:
                groups.append([i])
            last_hw = hw
    for m, t in zip(modules, was_training):
        m.train(t)
    stages = [nn.Sequential(*[modules[i] for i in g]) for g in groups]
    stage_names = [names[g[0]] if len(g) == 1 else f"{names[g[0]]}..{names[g[-1]]}" for g in groups]
    return stages, stage_names, int(x.shape[1])
