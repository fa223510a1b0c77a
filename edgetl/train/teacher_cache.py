"""The teacher's outputs for the training split: computed once per row and augmentation view, then looked up.

Views: `data.augment: none` -> the plain view; `hflip` -> the plain and the mirrored view, each computed once
(text inputs are never flipped: plain only). At each step the student's flip draw picks, per row, the view the
teacher saw, so the teacher always scores exactly the student's image at no per-step cost.

Kept in memory and in `<run>/cache/teacher-<key>.safetensors`, the key hashing the teacher's identity (its
checkpoint's bytes, or its backbone spec), its pre-processing, the training rows' contents (labelled and
unlabeled) and the views. Resume stays exact: the cache is a pure function of that key (re-read, or rebuilt
identically after a kill), and the flip draws come from the checkpointed augmentation RNG.

Augmentations whose draws cannot be enumerated (random crops, colour jitter: issue 12) get `None` from
`cached_views`: the teacher then runs online on the same augmented batch (`Trainer.teacher_batch`, the hook).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from edgetl.train.cache import _prep_spec, examples_digest
from edgetl.train.distill import FEATURES

CACHE_FORMAT = 1


def cached_views(augment: str, input_kind: str) -> tuple[str, ...] | None:
    """The views to precompute for `data.augment`, or None: the teacher must run online (random augmentation)."""
    if augment == "none" or input_kind == "text":
        return ("plain",)
    if augment == "hflip":
        return ("plain", "hflip")
    return None


def teacher_key(teacher, examples, views, features: bool) -> str:
    parts = {
        "format": CACHE_FORMAT,
        "teacher": teacher.identity,
        "prep": _prep_spec(teacher.prep),
        "inputs": examples_digest(examples),
        "views": list(views),
        "features": features,
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def teacher_outputs(
    teacher, examples, views, features: bool, cache_dir: Path | None, progress=None
) -> dict[str, dict[str, torch.Tensor]]:
    """{view: {task or FEATURES: tensor [rows, ...]}} for every training row; from disk when already there."""
    from safetensors.torch import load_file, save

    from edgetl.runtime.atomic import atomic_write_bytes

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"teacher-{teacher_key(teacher, examples, views, features)}.safetensors"
        if path.is_file():
            try:
                flat = load_file(path)
                out: dict[str, dict[str, torch.Tensor]] = {}
                for k, v in flat.items():
                    view, name = k.split("/", 1)
                    out.setdefault(view, {})[name] = v
                if set(out) == set(views):
                    return out
            except Exception:  # a damaged cache file is rebuilt, never trusted
                pass
    out = {}
    for view in views:
        got = teacher.outputs_for(examples, progress, flip=view == "hflip")
        if not features:
            got.pop(FEATURES, None)
        out[view] = got
    if path is not None:
        flat = {f"{view}/{k}": v.contiguous() for view, d in out.items() for k, v in d.items()}
        try:
            atomic_write_bytes(path, save(flat))
        except OSError:  # the cache is an optimisation: a full disk costs a recomputation on resume
            pass
    return out


def pick(views: dict[str, dict[str, torch.Tensor]], idx, flip: torch.Tensor | None, device) -> dict:
    """Outputs for rows `idx`: per row the mirrored view where `flip` is set, the plain one elsewhere."""
    rows = torch.as_tensor(idx, dtype=torch.long)
    out = {k: v[rows] for k, v in views["plain"].items()}
    if flip is not None and "hflip" in views and bool(flip.any()):
        for k, v in views["hflip"].items():
            f = flip.view(-1, *([1] * (v.dim() - 1)))
            out[k] = torch.where(f, v[rows], out[k])
    return {k: v.to(device) for k, v in out.items()}
