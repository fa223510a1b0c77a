"""Feature cache for a frozen backbone prefix.

When the first k stages are frozen and inputs are not augmented, their outputs never change: compute them
once (eval mode, no grad) and train the rest on the stored tensors. Stored in memory, or as a memory-mapped
.npy in the run dir when large. The key hashes everything the features depend on (backbone, weights
source, input spec, the exact rows, k), so a change in any of them builds a new cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from edgetl.data.examples import Examples
from edgetl.evaluate.torch_eval import model_inputs

DISK_THRESHOLD_BYTES = 2 * 1024**3


def cache_key(recipe, k: int, examples: Examples, split: str) -> str:
    rows = examples.index if examples.index is not None else np.arange(len(examples))
    parts = {
        "backbone": recipe.backbone.model_dump(mode="json"),
        "input": recipe.input.model_dump(mode="json"),
        "data": recipe.data.model_dump(mode="json"),
        "split": split,
        "k": k,
        "rows": hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest(),
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _prefix(model, x, k: int) -> torch.Tensor:
    bb = model.backbone
    if k >= bb.num_stages:
        return bb(**x) if isinstance(x, dict) else bb(x)
    return bb.forward_prefix(x, k)


@torch.no_grad()
def build_cache(model, prep, examples: Examples, k: int, *, batch_size: int, device, mode: str,
                cache_dir: Path, key: str, progress=None) -> torch.Tensor:
    """Prefix outputs for every row, as one tensor (memory) or a torch view of a memory-mapped file (disk)."""
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path, mmap_mode="r+"))
    model.eval()
    n = len(examples)
    out_np = None
    out = None
    task = progress.add_task(f"caching frozen features (k={k})", total=n) if progress else None
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        h = _prefix(model, model_inputs(prep, examples, idx, device), k).float().cpu()
        if out is None:
            shape = (n, *h.shape[1:])
            nbytes = int(np.prod(shape)) * 4
            if mode == "disk" or (mode == "auto" and nbytes > DISK_THRESHOLD_BYTES):
                cache_dir.mkdir(parents=True, exist_ok=True)
                out_np = np.lib.format.open_memmap(str(path) + ".tmp.npy", mode="w+", dtype=np.float32, shape=shape)
                out = torch.from_numpy(out_np)
            else:
                out = torch.empty(shape, dtype=torch.float32)
        out[start:start + len(idx)] = h
        if task is not None:
            progress.advance(task, len(idx))
    if task is not None:
        progress.remove_task(task)
    if out_np is not None:
        out_np.flush()
        del out, out_np
        Path(str(path) + ".tmp.npy").replace(path)
        return torch.from_numpy(np.load(path, mmap_mode="r+"))
    return out


def cache_usable(recipe, model, k: int) -> bool:
    if recipe.train.feature_cache == "off" or k <= 0 or recipe.data.augment != "none" or not recipe.train.freeze.freeze_bn:
        return False
    if model.backbone.kind == "text" and k < model.backbone.num_stages:
        return False  # the encoder's attention mask makes partial text prefixes awkward; cache only full freezes
    return True
