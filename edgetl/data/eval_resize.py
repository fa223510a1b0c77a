"""Which resize brings an image to the model: `input.resize` and `input.crop_pct`, resolved in one place.

auto: photos (image folders, CSV/JSONL manifests, WebDataset shards) get the pretrained backbones' evaluation transform,
shorter side + centre crop with antialiasing (`edgetl.runtime.crop`); the built-in datasets (tiny, square
arrays) keep the square bilinear resize they always had ("bilinear" in a bundle manifest, as before).
crop_pct: the recipe's, else the backbone's pretrained config (timm `crop_pct`; torchvision 0.875, i.e.
256 -> 224). Read from timm's model registry: no weights are loaded.
"""

from __future__ import annotations

from edgetl.recipe import DATA_SOURCES
from edgetl.runtime.tasks import get_kind

DEFAULT_CROP_PCT = 0.875
_TIMM_ARCH = {"efficientnet_lite0": "tf_efficientnet_lite0"}


def default_crop_pct(backbone_name: str) -> float:
    arch = backbone_name.split(":", 1)[1] if backbone_name.startswith("timm:") else _TIMM_ARCH.get(backbone_name)
    if arch is None:
        return DEFAULT_CROP_PCT
    try:
        import timm

        pct = timm.models.get_pretrained_cfg(arch).crop_pct
    except Exception:  # noqa: BLE001 - an unknown or tag-less name: the usual fraction
        return DEFAULT_CROP_PCT
    return float(pct) if pct else DEFAULT_CROP_PCT


def resize_of(recipe) -> tuple[str, float]:
    """("bilinear" | "shorter_crop" | "letterbox", crop_pct) for an image recipe."""
    inp = recipe.input
    mode = inp.resize
    dense = any(get_kind(t.kind).dense for t in recipe.tasks)
    if mode == "auto":  # dense predictions map back to the whole image: no crop
        mode = "shorter_crop" if DATA_SOURCES[recipe.data.source].files and not dense else "squash"
    pct = inp.crop_pct if inp.crop_pct is not None else default_crop_pct(recipe.backbone.name)
    return {"squash": "bilinear", "letterbox": "letterbox"}.get(mode, "shorter_crop"), float(pct)
