"""Feature cache for a frozen backbone prefix.

When the first k stages are frozen (BatchNorm statistics included) and inputs are not augmented, their
outputs never change: compute them once (eval mode, no grad) and train the rest on the stored tensors. Stored
in memory, or as a memory-mapped .npy under `<run>/cache/` when large (or `train.feature_cache: disk`).
A fully frozen backbone caches its pooled features [N, D]; a frozen CNN prefix its feature maps; a frozen text
prefix (embeddings + first layers) its hidden states with the attention mask as a last channel, right-padded
to max_length [N, L, H+1] (the suffix drops the padding beyond each batch's longest row).

The key hashes everything the features depend on: the backbone spec, the frozen prefix's actual tensors
(weights and BatchNorm buffers: a different weights file, or a different backbone, changes them), the
pre-processing (input size, mean/std, tokenizer length), the exact input bytes of every row (a changed data
file changes them), k and the split. A change in any of them builds a new cache; nothing stale is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from edgetl.data.examples import Examples
from edgetl.evaluate.torch_eval import model_inputs

DISK_THRESHOLD_BYTES = 2 * 1024**3
CACHE_FORMAT = 2


def examples_digest(examples: Examples) -> str:
    """sha1 of the inputs of every row, in order (images with their shapes, or UTF-8 texts)."""
    h = hashlib.sha1()
    if examples.images is not None:
        h.update(repr(examples.images.shape).encode())
        h.update(np.ascontiguousarray(examples.images).tobytes())
    elif examples.image_list is not None:
        for im in examples.image_list:
            h.update(repr(im.shape).encode())
            h.update(np.ascontiguousarray(im).tobytes())
    elif examples.files is not None:  # the files' bytes + the size and resize they decode to
        from edgetl.data.image_cache import files_key

        h.update(f"files@{files_key(examples.files)}".encode())
    else:
        for t in examples.texts or []:
            b = t.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.hexdigest()


def prefix_digest(backbone, k: int) -> str:
    """sha1 of the tensors (parameters and buffers) of the first k stages; k >= all: the whole backbone."""
    h = hashlib.sha1()
    modules = [backbone] if k >= backbone.num_stages else list(backbone.stages)[:k]
    for i, m in enumerate(modules):
        for name, t in m.state_dict().items():
            h.update(f"{i}.{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    if k >= backbone.num_stages:
        h.update(f"pooling={getattr(backbone, 'pooling', 'avg')}".encode())
    return h.hexdigest()


def _prep_spec(prep) -> dict:
    if prep is None:
        return {}
    if hasattr(prep, "image_size"):
        return {
            "image_size": list(prep.image_size),
            "channels": prep.channels,
            "mean": list(prep.mean),
            "std": list(prep.std),
            "scale": prep.scale,
            # shorter_crop gives other pixels (keys of the square bilinear resize stay what they were)
            **({"resize": prep.resize, "crop_pct": prep.crop_pct} if prep.resize != "bilinear" else {}),
        }
    tok = getattr(prep, "tokenizer", None)
    return {
        "max_length": prep.max_length,
        "names": list(prep.input_names),
        "tokenizer": getattr(tok, "name_or_path", type(tok).__name__),
    }


def cache_key(recipe, k: int, examples: Examples, split: str, model=None, prep=None) -> str:
    """What the cached features depend on, hashed (see the module doc)."""
    rows = examples.index if examples.index is not None else np.arange(len(examples))
    parts = {
        "format": CACHE_FORMAT,
        "backbone": recipe.backbone.model_dump(mode="json"),
        "input": recipe.input.model_dump(mode="json"),
        "prep": _prep_spec(prep),
        "source": recipe.data.source,
        "path": recipe.data.path,
        "split": split,
        "k": k,
        "rows": hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest(),
        "inputs": examples_digest(examples),
        "prefix": prefix_digest(model.backbone, k) if model is not None else None,
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _prefix(model, x, k: int) -> torch.Tensor:
    bb = model.backbone
    if k >= bb.num_stages:
        return bb(**x) if isinstance(x, dict) else bb(x)
    return bb.forward_prefix(x, k)


def _reserve(path: Path, nbytes: int) -> None:
    """Allocate the memory-mapped file's blocks now: a full disk is then one error line here, not a SIGBUS
    when a page is first written."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as e:
        from edgetl.runtime.atomic import storage_error

        path.unlink(missing_ok=True)
        raise storage_error(e, path, nbytes) from None


def _open(path: Path) -> torch.Tensor:
    arr = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():  # read-only memory map: rows are copied out when indexed, never written
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


@torch.no_grad()
def build_cache(
    model,
    prep,
    examples: Examples,
    k: int,
    *,
    batch_size: int,
    device,
    mode: str,
    cache_dir: Path,
    key: str,
    progress=None,
) -> torch.Tensor:
    """Prefix outputs for every row, as one tensor (memory) or a torch view of a memory-mapped file (disk)."""
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        return _open(path)
    was_training = model.training
    model.eval()
    n = len(examples)
    out_np = None
    out = None
    tmp = Path(str(path) + ".tmp.npy")
    task = progress.add_task(f"caching frozen features (k={k})", total=n) if progress else None
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        h = _prefix(model, model_inputs(prep, examples, idx, device), k).float().cpu()
        if h.dim() == 3 and getattr(prep, "max_length", None):  # text [B, L, H+1]: right-pad every row to max_length
            h = torch.nn.functional.pad(h, (0, 0, 0, prep.max_length - h.shape[1]))
        if out is None:
            shape = (n, *h.shape[1:])
            nbytes = int(np.prod(shape)) * 4
            if mode == "disk" or (mode == "auto" and nbytes > DISK_THRESHOLD_BYTES):
                cache_dir.mkdir(parents=True, exist_ok=True)
                out_np = np.lib.format.open_memmap(str(tmp), mode="w+", dtype=np.float32, shape=shape)
                _reserve(tmp, nbytes)
                out = torch.from_numpy(out_np)
            else:
                out = torch.empty(shape, dtype=torch.float32)
        out[start : start + len(idx)] = h
        if task is not None:
            progress.advance(task, len(idx))
    if task is not None:
        progress.remove_task(task)
    model.train(was_training)
    if out_np is not None:
        out_np.flush()
        del out, out_np
        tmp.replace(path)  # atomic: a killed build never leaves a half-written cache under the real key
        return _open(path)
    return out


def cache_usable(recipe, model, k: int) -> bool:
    """Whether the first k stages' outputs are fixed: frozen, BatchNorm frozen, no augmentation."""
    if (
        recipe.train.feature_cache == "off"
        or k <= 0
        or recipe.data.augment != "none"
        or not recipe.train.freeze.freeze_bn
        or getattr(model, "takes_maps", False)  # the cache holds one stage's output; dense heads read every stage
    ):
        return False
    return True
