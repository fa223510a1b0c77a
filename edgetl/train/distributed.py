"""Running under PyTorch's own launcher (`torchrun --nproc_per_node=N -m edgetl train RECIPE`).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; we join its process group (NCCL on GPUs, Gloo on
CPUs) and everything else follows from `rank` and `world`: each rank takes its share of every global batch
(so the global batch and the update are those of a single process), metrics are gathered to every rank,
and only rank 0 writes the run dir, checkpoints and logs. No home-made launcher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's part of a global batch (strided, so every rank gets a near-equal share)."""
        return idx[self.rank :: self.world] if self.enabled else idx

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj):
        """rank 0's value of a picklable object, on every rank (used for small control data only)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, arrays: dict[str, np.ndarray], rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Concatenate every rank's outputs (and their row ids) so all ranks compute the same metrics."""
        if not self.enabled:
            return arrays, rows
        parts: list = [None] * self.world
        dist.all_gather_object(parts, (arrays, rows))
        all_rows = np.concatenate([p[1] for p in parts])
        merged = {k: np.concatenate([p[0][k] for p in parts]) for k in arrays}
        order = np.argsort(all_rows, kind="stable")
        return {k: v[order] for k, v in merged.items()}, all_rows[order]

    def average_gradients(self, params) -> None:
        """What DDP does for the parameters it wraps, for the few training-only ones it does not."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def all_reduce_mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world


_CURRENT = Dist()


def init_from_env(device_type: str = "cpu") -> Dist:
    """Join torchrun's process group if we were launched by it; a no-op otherwise."""
    global _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _CURRENT = Dist()
        return _CURRENT
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    _CURRENT = Dist(
        rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )
    return _CURRENT


def current() -> Dist:
    return _CURRENT


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
