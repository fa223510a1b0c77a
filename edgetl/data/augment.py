"""`data.augment: [..]`: training augmentation built on torchvision.transforms.v2, run on the training device.

Pixel operations (random_resized_crop, color_jitter, trivial_augment, randaugment) act on each uint8 image
before normalisation, each example with its own draw; mixup / cutmix then mix the normalised batch and its
labels (single-label classification only: the recipe refuses them otherwise). Segmentation masks travel with
their image through the same draw as `tv_tensors.Mask` (geometry with nearest neighbour, filled with the ignore
value; colour steps leave them alone); detection boxes travel as `tv_tensors.BoundingBoxes`, then are clipped to the
image and degenerate ones dropped (`ClampBoundingBoxes`, `SanitizeBoundingBoxes`). `hflip` keeps its own draw
(`edgetl.data.transforms.flip_mask`, shared with a distillation teacher), so `augment: hflip` and
`augment: [hflip]` train identically. Every draw comes from a seed derived from (seed, epoch, step, rank): a
resumed run repeats them exactly, whatever the global RNG state.
"""

from __future__ import annotations

import numpy as np
import torch

PIXEL_OPS = ("random_resized_crop", "color_jitter", "trivial_augment", "randaugment")
MIX_OPS = ("mixup", "cutmix")


def steps_of(augment) -> list:
    """The recipe's `data.augment` as a list of steps (`none` -> [], `hflip` -> [hflip])."""
    if augment == "none":
        return []
    if augment == "hflip":
        from edgetl.recipe import AugmentStep

        return [AugmentStep(name="hflip")]
    return list(augment)


def uses_hflip(augment) -> bool:
    return any(s.name == "hflip" for s in steps_of(augment))


def _fit_mask(m: torch.Tensor, size) -> torch.Tensor:
    """A class map to `size` with nearest neighbour (masks are kept at the model's size, images may differ)."""
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return torch.nn.functional.interpolate(m[None, None].float(), size=tuple(size), mode="nearest")[0, 0].to(m.dtype)


def flip_targets(t: torch.Tensor, geometry: str, width: int) -> torch.Tensor:
    """A dense target under a horizontal flip of its image: a mask mirrored, boxes' x mirrored (padding kept)."""
    if geometry != "boxes":
        return t.flip(-1)
    out = t.clone()
    real = t[..., 0] >= 0
    out[..., 1] = torch.where(real, width - t[..., 3], t[..., 1])
    out[..., 3] = torch.where(real, width - t[..., 1], t[..., 3])
    return out


def _tv_target(t: torch.Tensor, geometry: str, size):
    from torchvision import tv_tensors

    if geometry == "boxes":
        keep = t[:, 0] >= 0
        boxes = tv_tensors.BoundingBoxes(t[keep, 1:5], format="XYXY", canvas_size=tuple(size))
        return {"boxes": boxes, "labels": t[keep, 0]}
    return tv_tensors.Mask(_fit_mask(t, size))


def _padded_boxes(moved: dict, rows: int) -> torch.Tensor:
    """Boxes after the pixel steps: clipped to the image, degenerate ones dropped, padded back to `rows`."""
    from torchvision.transforms import v2

    kept = v2.SanitizeBoundingBoxes(min_size=1.0)(
        {"boxes": v2.ClampBoundingBoxes()(moved["boxes"]), "labels": moved["labels"]}
    )
    b, lab = kept["boxes"].as_subclass(torch.Tensor), kept["labels"]
    out = torch.zeros((rows, 5), dtype=torch.float32, device=b.device)
    out[:, 0] = -1
    n = min(len(b), rows)
    out[:n, 0], out[:n, 1:] = lab[:n].float(), b[:n].float()
    return out


def batch_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    return int(np.random.SeedSequence([seed, epoch, step, rank, 4051]).generate_state(1)[0])


class BatchAugment:
    """The recipe's pixel and mixing steps; `None` from `make` when there are none (only hflip, or none)."""

    def __init__(self, steps: list, image_size: int, num_classes: int | None):
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        from edgetl.runtime.tasks.segmentation import IGNORE

        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}  # pixels moved in from outside count nowhere
        ops = []
        for s in steps:
            if s.name == "random_resized_crop":
                ops.append(v2.RandomResizedCrop(image_size, scale=tuple(s.scale), ratio=tuple(s.ratio), antialias=True))
            elif s.name == "color_jitter":
                ops.append(v2.ColorJitter(s.brightness, s.contrast, s.saturation, s.hue))
            elif s.name == "trivial_augment":
                ops.append(v2.TrivialAugmentWide(fill=fill))
            elif s.name == "randaugment":
                ops.append(v2.RandAugment(num_ops=s.num_ops, magnitude=s.magnitude, fill=fill))
        self.pixel = v2.Compose(ops) if ops else None
        mix = [
            v2.MixUp(alpha=s.alpha, num_classes=num_classes)
            if s.name == "mixup"
            else v2.CutMix(alpha=s.alpha, num_classes=num_classes)
            for s in steps
            if s.name in MIX_OPS
        ]
        self.mix = None if not mix else mix[0] if len(mix) == 1 else v2.RandomChoice(mix)

    @classmethod
    def make(cls, recipe, num_classes: int | None, image_size: int | None = None) -> BatchAugment | None:
        """`image_size`: the crop's output size when not the recipe's (a distillation teacher's own input size:
        the same seeded draws then give the same crop at the teacher's resolution)."""
        steps = [s for s in steps_of(recipe.data.augment) if s.name in PIXEL_OPS + MIX_OPS]
        if not steps or recipe.input.kind != "image":
            return None
        return cls(steps, image_size or recipe.input.image_size, num_classes)

    def images(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 HxWxC images (on the device) -> augmented uint8 HxWxC, one draw per example."""
        if self.pixel is None:
            return batch
        out = []
        for im in batch:
            chw = im.permute(2, 0, 1)
            if chw.shape[0] == 1:  # colour operations need RGB; the model takes RGB anyway
                chw = chw.expand(3, -1, -1)
            out.append(self.pixel(chw).permute(1, 2, 0))
        return out

    def images_and_masks(
        self, batch: list[torch.Tensor], masks: dict[str, torch.Tensor], geometry: dict[str, str] | None = None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Like `images`, with each example's dense targets moved by the same draw: masks [N, H, W], or boxes
        [N, M, 5] (class, x1, y1, x2, y2) where `geometry[task]` is "boxes"."""
        if self.pixel is None:
            return batch, masks
        from torchvision import tv_tensors

        geometry = geometry or {}
        out_ims: list[torch.Tensor] = []
        out_masks: dict[str, list[torch.Tensor]] = {k: [] for k in masks}
        for i, im in enumerate(batch):
            chw = im.permute(2, 0, 1)
            if chw.shape[0] == 1:
                chw = chw.expand(3, -1, -1)
            ms = {k: _tv_target(v[i], geometry.get(k, "mask"), chw.shape[-2:]) for k, v in masks.items()}
            img, ms = self.pixel(tv_tensors.Image(chw), ms)
            out_ims.append(img.as_subclass(torch.Tensor).permute(1, 2, 0))
            for k, m in ms.items():
                if geometry.get(k) == "boxes":
                    out_masks[k].append(_padded_boxes(m, masks[k].shape[1]))
                else:
                    out_masks[k].append(_fit_mask(m.as_subclass(torch.Tensor), masks[k].shape[-2:]))
        return out_ims, {k: torch.stack(v) for k, v in out_masks.items()}

    def mixed(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A normalised NCHW batch and its int labels -> mixed batch and soft labels [N, classes]."""
        return self.mix(x, labels)
