"""The backbone table that model families register into (torchvision, timm, Hugging Face).

Separate from `registry` (which looks names up and loads the families on first use) so that a family module
imports only this table and the two never import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

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
