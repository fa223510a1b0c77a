"""Batches of lazily decoded images, read ahead by `torch.utils.data.DataLoader` worker processes.

The training loop decides which rows form each batch (a pure function of seed and epoch, sharded per rank);
`BatchPlan` hands that list to the DataLoader as its sampler, so the workers decode exactly those batches, in
order, from any step (mid-epoch resume). A batch travels as uint8 NHWC at the working size (pinned on
CUDA); resize-to-model, normalisation and augmentation happen on the training device. An image that cannot
be read is left out of its batch and reported in `bad`, never raised in a worker: a worker that dies takes
the run with it.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgetl.data.lazy import ImageFiles, stack_images


def auto_workers() -> int:
    """`data.workers: auto`: one CPU stays with the training process, at most 8 decode."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


def resolve_workers(setting: int | str) -> int:
    return auto_workers() if setting == "auto" else int(setting)


class BatchReader(Dataset):
    """Indexed by an array of rows: returns that batch decoded ({"x", "keep", "bad"})."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows) -> dict:
        images, keep, bad, bad_at = [], [], [], []
        for j, r in enumerate(np.asarray(rows, dtype=np.int64)):
            try:
                images.append(self.files.load(int(r)))
            except Exception as e:  # noqa: BLE001 - any failure of one file skips that file, never the run
                bad.append((self.files.name(int(r)), " ".join(str(e).split()) or type(e).__name__))
                bad_at.append(j)
            else:
                keep.append(j)
        return {
            "x": torch.from_numpy(stack_images(images, self.files.size)),
            "keep": torch.tensor(keep, dtype=torch.int64),
            "bad": bad,  # (path, why) per unreadable image
            "bad_at": torch.tensor(bad_at, dtype=torch.int64),  # their positions in `rows`
        }


class BatchPlan(Sampler):
    """The batches (row arrays) the next pass over the loader reads; set before each `iter(loader)`."""

    def __init__(self):
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(files: ImageFiles, plan: BatchPlan, workers: int, pin_memory: bool) -> DataLoader:
    """One loader per split for the whole run: persistent workers, two batches read ahead per worker."""
    return DataLoader(
        BatchReader(files),
        sampler=plan,
        batch_size=None,  # the dataset returns whole batches
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
