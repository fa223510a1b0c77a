"""Running a PyTorch multi-task model over examples in batches (validation, export checks, bench)."""

from __future__ import annotations

import numpy as np
import torch

from edgetl.data.examples import Examples
from edgetl.runtime.batching import predict_in_batches


def model_inputs(prep, examples: Examples, idx, device="cpu"):
    """The model's input for rows `idx`: an image tensor, or a dict of token tensors."""
    raw = examples.inputs(idx)
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and prep.takes_on_device(raw.shape[1:3]):
        # uint8 travels, processed on the device
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
        out = model.eval_outputs(call_model(model, model_inputs(prep, examples, idx, device)))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    return predict_in_batches(predict, len(examples), batch_size)
