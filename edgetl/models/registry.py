"""One entry point over a registry of backbones: `create_backbone(spec)`, `list_backbones()`.

Names: torchvision models by their torchvision name (mobilenet_v2, resnet18, ...), `efficientnet_lite0`,
`timm:<any timm name>` and `hf:<any Hugging Face encoder>` (plus the offline `minilm`).
Weights sources: offline | imagenet | hub | none | <local file or directory>.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgetl.errors import EdgetlError
from edgetl.models.entries import _PREFIX_BUILDERS, _REGISTRY, BackboneEntry, register_backbone
from edgetl.recipe import BackboneSpec

__all__ = ["BackboneEntry", "create_backbone", "get_backbone_entry", "list_backbones", "register_backbone"]


def _ensure_loaded():
    if not _REGISTRY:
        from edgetl.models import hf_text, timm_models, torchvision_models  # noqa: F401  (they register)


def list_backbones() -> list[BackboneEntry]:
    _ensure_loaded()
    return sorted(_REGISTRY.values(), key=lambda e: e.name)


def get_backbone_entry(name: str) -> BackboneEntry:
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, _ = name.partition(":")
    if sep and prefix in _PREFIX_BUILDERS:
        return _PREFIX_BUILDERS[prefix]
    known = ", ".join(sorted(_REGISTRY)) + ", " + ", ".join(f"{p}:<name>" for p in sorted(_PREFIX_BUILDERS))
    raise EdgetlError(f"backbone.name: unknown backbone {name!r}; known: {known}")


def create_backbone(spec: BackboneSpec) -> nn.Module:
    entry = get_backbone_entry(spec.name)
    w = spec.weights
    if w not in ("offline", "imagenet", "hub", "none"):
        if not Path(w).exists():
            raise EdgetlError(f"backbone.weights: {w!r} is neither offline|imagenet|hub|none nor an existing path")
    elif w == "offline" and not entry.offline:
        raise EdgetlError(
            f"backbone.weights: no offline weights ship for {spec.name!r}; "
            "use imagenet/hub (online), a local file, or none"
        )
    return entry.build(spec)
