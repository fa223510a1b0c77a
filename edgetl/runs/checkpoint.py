"""Checkpoints as safetensors, written atomically, with everything needed to resume exactly.

<name>.safetensors        model weights (what export and eval read)
<name>.state.safetensors  everything a resume needs, in ONE file (one atomic rename = one consistent commit):
                          model weights, optimizer tensors, RNG states (torch, CUDA, named generators such as
                          the augmentation one); JSON metadata: epoch, step, param groups, best score, history
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
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError) as e:
        raise EdgetlError(f"{path}: corrupt or not a safetensors checkpoint ({e})") from None
    return tensors, meta


def load_model(model: torch.nn.Module, path: Path) -> dict:
    tensors, meta = _read(path)
    _load_weights(model, tensors, path)
    return {k: json.loads(v) for k, v in meta.items() if k != "format"}


def _load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if missing or unexpected or wrong:
        what = (
            f"shape of {wrong[0]} is {tuple(tensors[wrong[0]].shape)}, the recipe's model has {tuple(own[wrong[0]].shape)}"
            if wrong
            else f"missing {missing[:2]}"
            if missing
            else f"unexpected {unexpected[:2]}"
        )
        raise EdgetlError(f"{path} does not match the recipe's model: {what}")
    model.load_state_dict(tensors)


def save_training_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    scaler,
    meta: dict,
    *,
    model: torch.nn.Module | None = None,
    modules: dict[str, torch.nn.Module | None] | None = None,
    generators: dict[str, torch.Generator | None] | None = None,
) -> None:
    """Optimizer + scaler + RNG (+ model weights, named training-only modules and named generators) + `meta`,
    atomically, in one file."""
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
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    for name, gen in (generators or {}).items():
        if gen is not None:
            tensors[f"rng.gen.{name}"] = gen.get_state()
    if model is not None:
        for k, v in model.state_dict().items():
            tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for name, mod in (modules or {}).items():
        if mod is not None:
            for k, v in mod.state_dict().items():
                tensors[f"mod.{name}.{k}"] = v.detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    full_meta = {
        "param_groups": groups,
        "opt_scalars": scalars,
        "meta": meta,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    atomic_write_bytes(path, st_save(tensors, metadata={"format": "edgetl-train-state", "json": json.dumps(full_meta)}))


def read_training_meta(path: Path) -> dict:
    """The JSON `meta` of a training-state file (epoch, step, frozen stages...), without applying anything."""
    return _read_state(path)[1]["meta"]


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = _read(path)
    if meta.get("format") != "edgetl-train-state":
        raise EdgetlError(f"{path}: not an edgetl training-state file")
    try:
        info = json.loads(meta["json"])
        if not isinstance(info, dict) or not isinstance(info.get("meta"), dict):
            raise ValueError("no meta")
    except (KeyError, ValueError) as e:
        raise EdgetlError(f"{path}: corrupt training-state metadata ({e})") from None
    return tensors, info


def load_training_state(
    path: Path,
    optimizer: torch.optim.Optimizer | None,
    scaler=None,
    *,
    model: torch.nn.Module | None = None,
    modules: dict[str, torch.nn.Module | None] | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> dict:
    """Restore what `save_training_state` wrote; returns its `meta`.

    `model` and each of `modules` are loaded from the file's own weights (error if it has none). With
    `optimizer=None` only weights are loaded (the optimizer's groups may depend on them); otherwise optimizer,
    scaler and RNG states are restored too, and each generator in `generators` gets its saved state, if one
    was saved."""
    tensors, info = _read_state(path)
    if model is not None:
        weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        if not weights:
            raise EdgetlError(f"{path}: holds no model weights (written by an older edgetl)")
        _load_weights(model, weights, path)
    for name, mod in (modules or {}).items():
        if mod is None:
            continue
        prefix = f"mod.{name}."
        weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not weights:
            raise EdgetlError(f"{path}: holds no weights for {name!r} (written by an older edgetl)")
        _load_weights(mod, weights, path)
    if optimizer is None:
        return info["meta"]
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    try:
        for pid, sc in info["opt_scalars"].items():
            state.setdefault(int(pid), {}).update(sc)
        optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise EdgetlError(f"{path}: optimizer state does not match the model ({e})") from None
    if scaler is not None and info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    for name, gen in (generators or {}).items():
        if f"rng.gen.{name}" in tensors:
            gen.set_state(tensors[f"rng.gen.{name}"])
    return info["meta"]
