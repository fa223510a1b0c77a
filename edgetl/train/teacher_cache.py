"""The teacher's outputs for the training split: computed once per row and augmentation view, then looked up.

Views: `data.augment: none` -> the plain view; `hflip` -> the plain and the mirrored view, each computed once
(text inputs are never flipped: plain only). At each step the student's flip draw picks, per row, the view the
teacher saw, so the teacher always scores exactly the student's image at no per-step cost.

Kept in memory and in `<run>/cache/teacher-<key>.safetensors`, the key hashing the teacher's identity (its
checkpoint's bytes, or its backbone spec), its pre-processing, the training rows' contents (labelled and
unlabeled) and the views. A run teacher also keeps a copy in its own `cache/` (when writable), so the students
of one teacher on the same rows (seeds, variants) compute its outputs once between them. Resume stays exact: the cache is a pure function of that key (re-read, or rebuilt
identically after a kill), and the flip draws come from the checkpointed augmentation RNG.

Augmentations whose draws cannot be enumerated (random_resized_crop, color_jitter, trivial_augment,
randaugment, mixup/cutmix) get `None` from `cached_views`: the teacher then runs online on each step's batch
(`Trainer.teacher_batch`), repeating the student's seeded draws at its own input size: same crop, colour, policy,
flip and mixing, each at the teacher's resolution.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from edgetl.train.cache import _prep_spec, examples_digest
from edgetl.train.distill import FEATURES

CACHE_FORMAT = 1


def cached_views(augment, input_kind: str) -> tuple[str, ...] | None:
    """The views to precompute for `data.augment`, or None: the teacher must run online (random augmentation)."""
    from edgetl.data.augment import steps_of

    steps = steps_of(augment) if input_kind != "text" else []
    if not steps:
        return ("plain",)
    if all(s.name == "hflip" for s in steps):
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


def _read(path: Path, views) -> dict | None:
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        out: dict[str, dict[str, torch.Tensor]] = {}
        for k, v in load_file(path).items():
            view, name = k.split("/", 1)
            out.setdefault(view, {})[name] = v
        return out if set(out) == set(views) else None
    except Exception:  # a damaged cache file is rebuilt, never trusted
        return None


def _write(path: Path, out: dict) -> None:
    from safetensors.torch import save

    from edgetl.runtime.atomic import atomic_write_bytes

    flat = {f"{view}/{k}": v.contiguous() for view, d in out.items() for k, v in d.items()}
    try:
        atomic_write_bytes(path, save(flat))
    except OSError:  # the cache is an optimisation: a full or read-only disk costs a recomputation
        pass


def teacher_outputs(
    teacher, examples, views, features: bool, cache_dir: Path | None, progress=None, shared_dir: Path | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """{view: {task or FEATURES: tensor [rows, ...]}} for every training row; from disk when already there
    (`cache_dir`: the run's own cache; `shared_dir`: the teacher run's, shared by its students)."""
    name = f"teacher-{teacher_key(teacher, examples, views, features)}.safetensors"
    dirs = [Path(d) for d in (cache_dir, shared_dir) if d is not None]
    for i, d in enumerate(dirs):
        out = _read(d / name, views)
        if out is not None:
            for other in dirs[:i]:
                _write(other / name, out)
            return out
    out = {}
    for view in views:
        got = teacher.outputs_for(examples, progress, flip=view == "hflip")
        if not features:
            got.pop(FEATURES, None)
        out[view] = got
    for d in dirs:
        _write(d / name, out)
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
