"""The one batched-inference loop: run a predictor over rows in consecutive batches and join its outputs.

PyTorch checkpoints, ONNX Runtime sessions, TensorRT engines and bench scoring all go through it, so every
artifact is scored on the same rows in the same order. numpy only (the runtime layer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def predict_in_batches(
    predict: Callable[[np.ndarray], Mapping[str, object]], n: int, batch_size: int, dtype=None
) -> dict[str, np.ndarray]:
    """`predict(row_indices) -> {output name: array}` over rows 0..n-1, `batch_size` at a time, concatenated."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outs: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        for name, value in predict(idx).items():
            outs.setdefault(name, []).append(np.asarray(value, dtype=dtype))
    return {name: np.concatenate(parts) for name, parts in outs.items()}
