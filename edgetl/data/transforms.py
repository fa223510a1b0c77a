"""Training-side pre-processing (torch). The runtime's numpy version must equal it (tested).

Order, shared with `edgetl.runtime.preprocess`: grey -> repeat to the model's channels, resize on raw 0..255
values, then x * scale, then (x - mean) / std. Resize `bilinear`: to a square, align_corners=False, no antialias
(torch, on the device); `shorter_crop`: `edgetl.runtime.crop.shorter_crop` (Pillow, antialiased, the very
function the runtime calls) on each numpy image; uint8 tensors must then already be at image_size (the loader
hands them so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class ImagePreprocess:
    image_size: tuple[int, int]
    channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    scale: float = 1.0 / 255.0
    resize: str = "bilinear"  # or "shorter_crop" (see edgetl.data.eval_resize)
    crop_pct: float = 0.875

    def __post_init__(self):
        if len(self.mean) == 1:
            self.mean = self.mean * self.channels
        if len(self.std) == 1:
            self.std = self.std * self.channels
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)

    def manifest(self, input_name: str = "input") -> dict:
        return {
            "kind": "image",
            "name": input_name,
            "layout": "NCHW",
            "dtype": "float32",
            "image_size": list(self.image_size),
            "channels": self.channels,
            "resize": self.resize,
            **({"crop_pct": self.crop_pct} if self.resize == "shorter_crop" else {}),
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def _one_size(self, x: torch.Tensor) -> torch.Tensor:
        """uint8/float NHWC of one size -> normalised NCHW float32."""
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        c = x.shape[1]
        if c == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 3 and self.channels == 1:
            raise ValueError("an RGB image for a 1-channel model")
        if tuple(x.shape[-2:]) != tuple(self.image_size):
            if self.resize != "bilinear":
                raise ValueError(f"{self.resize}: images must be cropped to {self.image_size} before (got {x.shape})")
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=False)
        return (x * self.scale - self._mean.to(x.device)) / self._std.to(x.device)

    def takes_on_device(self, shape) -> bool:
        """Whether uint8 images of height x width `shape[:2]` go through as one tensor batch on the device: the
        square bilinear resize runs there; shorter_crop runs per image on the host unless already cropped."""
        return self.resize == "bilinear" or tuple(shape[:2]) == tuple(self.image_size)

    def from_device_images(self, ims: list[torch.Tensor], device) -> torch.Tensor:
        """uint8 HxWxC images on the device (a loader's batch, augmented) -> the model's input on `device`."""
        if len({tuple(a.shape) for a in ims}) == 1 and self.takes_on_device(ims[0].shape):
            return self(torch.stack(ims))
        return self([a.cpu().numpy() for a in ims]).to(device)  # sizes vary, or shorter_crop to do: the host path

    def __call__(self, images: np.ndarray | list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor):  # a uint8 batch already on the training device: processed there
            return self._one_size(images)
        if self.resize == "shorter_crop":  # per image, on the CPU: exactly what the runtime does
            from edgetl.runtime.crop import shorter_crop

            images = [shorter_crop(np.asarray(im), self.image_size[0], self.crop_pct) for im in images]
            if len({im.shape for im in images}) == 1:
                images = np.stack(images)
        if isinstance(images, np.ndarray):
            return self._one_size(torch.from_numpy(np.ascontiguousarray(images)))
        # Images of several sizes (image folders, mixed datasets): one batched call per distinct shape,
        # results put back in input order. Identical to processing them one by one.
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(tuple(im.shape), []).append(i)
        if len(by_shape) == 1:
            return self._one_size(torch.from_numpy(np.ascontiguousarray(np.stack(images))))
        out = torch.empty((len(images), self.channels, *self.image_size), dtype=torch.float32)
        for rows in by_shape.values():
            batch = np.ascontiguousarray(np.stack([images[i] for i in rows]))
            out[torch.tensor(rows)] = self._one_size(torch.from_numpy(batch))
        return out


def hflip(x: torch.Tensor, generator: torch.Generator | None = None, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Random horizontal flip per example (the only augmentation: cheap, label-preserving for most tasks).

    `flip` (bool per example) applies a given draw, so a distillation teacher sees the same flipped images.
    """
    if flip is None:
        flip = flip_mask(x.shape[0], generator)
    if flip.any():
        x = x.clone()
        x[flip] = x[flip].flip(-1)
    return x


def flip_mask(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < 0.5


class TextPreprocess:
    """Tokenizer + max length; pads to the longest text in the batch, as the runtime does."""

    def __init__(self, tokenizer, max_length: int, input_names: list[str]):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.input_names = input_names

    def manifest(self, tokenizer_file: str = "tokenizer/tokenizer.json") -> dict:
        return {
            "kind": "text",
            "names": list(self.input_names),
            "dtype": "int64",
            "tokenizer": tokenizer_file,
            "max_length": self.max_length,
            "padding": "longest",
        }

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding="longest", return_tensors="pt"
        )
        return {k: enc[k] for k in self.input_names}
