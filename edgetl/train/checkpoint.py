"""Checkpoints as safetensors, written atomically, with everything needed to resume exactly.

<name>.safetensors        model weights (what export and eval read)
<name>.state.safetensors  optimizer tensors + RNG state; JSON metadata: epoch, step, param groups, best score
Nothing is pickled: optimizer state is flattened to named tensors and rebuilt on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from edgetl.errors import EdgetlError
from edgetl.runtime.atomic import atomic_write_bytes


def save_model(model: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "edgetl-model", **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    atomic_write_bytes(path, st_save(state, metadata=meta))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise EdgetlError(f"checkpoint not found: {path}") from None
    try:
        from safetensors import safe_open  # noqa: F401  (metadata via the header below)

        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError) as e:
        raise EdgetlError(f"{path}: corrupt or not a safetensors checkpoint ({e})") from None
    return tensors, meta


def load_model(model: torch.nn.Module, path: Path) -> dict:
    tensors, meta = _read(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if missing or unexpected or wrong:
        what = (f"shape of {wrong[0]} is {tuple(tensors[wrong[0]].shape)}, the recipe's model has {tuple(own[wrong[0]].shape)}"
                if wrong else f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}")
        raise EdgetlError(f"{path} does not match the recipe's model: {what}")
    model.load_state_dict(tensors)
    return {k: json.loads(v) for k, v in meta.items() if k != "format"}


def save_training_state(path: Path, optimizer: torch.optim.Optimizer, scaler, meta: dict) -> None:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    tensors["rng.torch"] = torch.get_rng_state()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    full_meta = {"param_groups": groups, "opt_scalars": scalars, "meta": meta,
                 "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None}
    atomic_write_bytes(path, st_save(tensors, metadata={"format": "edgetl-train-state", "json": json.dumps(full_meta)}))


def load_training_state(path: Path, optimizer: torch.optim.Optimizer, scaler=None) -> dict:
    tensors, meta = _read(path)
    if meta.get("format") != "edgetl-train-state":
        raise EdgetlError(f"{path}: not an edgetl training-state file")
    info = json.loads(meta["json"])
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, sc in info["opt_scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    except (ValueError, KeyError) as e:
        raise EdgetlError(f"{path}: optimizer state does not match the model ({e})") from None
    if scaler is not None and info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return info["meta"]
