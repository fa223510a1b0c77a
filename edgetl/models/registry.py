"""One entry point over a registry of backbones: `create_backbone(spec)`, `list_backbones()`.

Names: torchvision models by their torchvision name (mobilenet_v2, resnet18, ...), `efficientnet_lite0`,
`timm:<any timm name>` and `hf:<any Hugging Face encoder>` (plus the offline `minilm`).
Weights sources: offline | imagenet | hub | none | <local file or directory>.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgetl.errors import EdgetlError
from edgetl.recipe import BackboneSpec


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    family: str  # torchvision | timm | hf
    kind: str  # image | text
    build: Callable[[BackboneSpec], nn.Module]
    offline: bool  # weights ship in an installable package (weights: offline)
    description: str = ""


_REGISTRY: dict[str, BackboneEntry] = {}
_PREFIX_BUILDERS: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry, prefix: bool = False) -> BackboneEntry:
    table = _PREFIX_BUILDERS if prefix else _REGISTRY
    if entry.name in table:
        raise ValueError(f"backbone {entry.name!r} registered twice")
    table[entry.name] = entry
    return entry


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
