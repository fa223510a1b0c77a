"""Reading weight files without executing them.

safetensors is the format; a pickle (.pt/.pth/.bin) is opened only with torch.load(weights_only=True),
which refuses arbitrary objects, and must hold a plain mapping of tensors. Anything else is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgetl.errors import EdgetlError

PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise EdgetlError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise EdgetlError(f"{path}: not a valid safetensors file ({e})") from None
    if path.suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError, RuntimeError, EOFError... all mean "refused"
            raise EdgetlError(
                f"{path}: refused to load (only plain tensor state dicts are accepted: "
                f"{type(e).__name__}: {(str(e).splitlines() or ['empty file?'])[0][:160]})"
            ) from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise EdgetlError(f"{path}: expected a mapping of tensor names to tensors")
        return dict(obj)
    raise EdgetlError(f"{path}: unsupported weights format {path.suffix!r} (use .safetensors, or .pt/.pth/.bin)")


def save_state_dict_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None):
    """Contiguous, de-aliased copy -> safetensors, written atomically."""
    from safetensors.torch import save

    from edgetl.runtime.atomic import atomic_write_bytes

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    atomic_write_bytes(path, save(clean, metadata={k: str(v) for k, v in (metadata or {}).items()}))
