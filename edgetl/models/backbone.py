"""The backbone contract every adapter honours (CNN or transformer).

`stages` are the network's natural layer groups, in order; freezing, layer-wise LR and the feature cache all
work on them. `forward_prefix(x, k)` runs stages [0, k) and `forward_suffix(h, k)` the rest plus pooling, so a
frozen prefix can be computed once and cached.

Each stage also declares what it hands over (`stage_info`: stride and channels, as timm's `feature_info` does), and
`forward_maps(x)` returns every stage's output: global task heads take the pooled vector, dense heads (segmentation,
detection) take the pyramid of maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class StageInfo:
    """What one stage hands over: its output channels and its stride (input pixels per output cell; None for
    token states, which keep the sequence length)."""

    name: str
    channels: int
    stride: int | None


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

    def __init__(
        self,
        stages: list[nn.Module],
        stage_names: list[str],
        feature_dim: int,
        cfg: PretrainedConfig,
        stage_info: list[StageInfo] | None = None,
    ):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.stage_names = list(stage_names)
        self.feature_dim = feature_dim
        self.cfg = cfg
        self.pool = nn.AdaptiveAvgPool2d(1)
        # what each stage hands over; adapters pass what their probe measured, others are probed here
        self.stage_info = stage_info if stage_info is not None else probe_stage_info(self.stages, self.stage_names)

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

    def forward_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output map, in order (`stage_info` says their strides and channels)."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def pool_maps(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """The pooled vector global heads take, from `forward_maps`' output (equal to `forward(x)`)."""
        return torch.flatten(self.pool(maps[-1]), 1)


PROBE = 64  # side of the probe image that discovers stages and strides (a multiple of every stride up to 64)


def probe_stage_info(stages, names: list[str], probe: torch.Tensor | None = None) -> list[StageInfo]:
    """Channels and stride of each stage, measured by running a probe image (eval mode: BatchNorm statistics of
    pretrained weights must not move)."""
    x = torch.zeros(1, 3, PROBE, PROBE) if probe is None else probe
    side = x.shape[-1]
    was_training = [s.training for s in stages]
    info = []
    try:
        for s in stages:
            s.eval()
        with torch.no_grad():
            for s, name in zip(stages, names):
                x = s(x)
                stride = side // x.shape[-1] if x.dim() == 4 else None
                info.append(StageInfo(name=name, channels=int(x.shape[1]), stride=stride))
    finally:
        for s, t in zip(stages, was_training):
            s.train(t)
    return info


def group_by_resolution(modules: list[nn.Module], names: list[str], probe: torch.Tensor):
    """Split a flat list of modules into stages wherever the spatial resolution drops (discovered, not hard-coded).

    Returns (stages, stage names, pooled feature dim, stage_info): each stage's channels and stride measured on
    the probe, what dense heads build on."""
    groups: list[list[int]] = []
    shapes: list[tuple[int, ...]] = []
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
                shapes[-1] = tuple(x.shape)
            else:
                groups.append([i])
                shapes.append(tuple(x.shape))
            last_hw = hw
    for m, t in zip(modules, was_training):
        m.train(t)
    stages = [nn.Sequential(*[modules[i] for i in g]) for g in groups]
    stage_names = [names[g[0]] if len(g) == 1 else f"{names[g[0]]}..{names[g[-1]]}" for g in groups]
    side = probe.shape[-1]
    info = [
        StageInfo(name=n, channels=int(s[1]), stride=side // s[-1] if len(s) == 4 else None)
        for n, s in zip(stage_names, shapes)
    ]
    return stages, stage_names, int(x.shape[1]), info
