"""Running a PyTorch multi-task model over examples in batches (validation, export checks, bench)."""

from __future__ import annotations

import numpy as np
import torch

from edgetl.data.examples import Examples
from edgetl.runtime.batching import predict_in_batches


def model_inputs(prep, examples: Examples, idx, device="cpu"):
    """The model's input for rows `idx`: an image tensor, or a dict of token tensors."""
    raw = examples.inputs(idx)
    on_device = getattr(prep, "resize", None) == "bilinear" or tuple(getattr(raw, "shape", ())[1:3]) == tuple(
        getattr(prep, "image_size", ())
    )  # shorter_crop (Pillow) runs on the host unless the images are already cropped
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and on_device:  # uint8 travels, processed on device
        return prep(torch.from_numpy(np.ascontiguousarray(raw)).to(device, non_blocking=True))
    x = prep(raw)
    if isinstance(x, dict):
        return {k: v.to(device) for k, v in x.items()}
    return x.to(device)


def call_model(model, x):
    return model(None, **x) if isinstance(x, dict) else model(x)


@torch.no_grad()
def predict_torch(model, prep, examples: Examples, batch_size: int = 128, device="cpu") -> dict[str, np.ndarray]:
    model.eval()

    def predict(idx):
        return {
            k: v.float().cpu().numpy() for k, v in call_model(model, model_inputs(prep, examples, idx, device)).items()
        }

    return predict_in_batches(predict, len(examples), batch_size)
