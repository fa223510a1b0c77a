"""Versions of the libraries edgetl drives: recorded in run.json and manifests, printed with internal errors.

Import-light (importlib.metadata only): the runtime and the CLI's error path use it without torch.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

# distribution name -> import name (to tell which ones a failing process had loaded)
LIBRARIES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "transformers": "transformers",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxruntime-gpu": "onnxruntime",
    "nvidia-modelopt": "modelopt",
    "onnxslim": "onnxslim",
    "numpy": "numpy",
}


def library_versions(loaded_only: bool = False) -> dict[str, str]:
    """{distribution: version} of the installed libraries; `loaded_only` keeps those this process imported."""
    out = {}
    for dist, module in LIBRARIES.items():
        if loaded_only and module not in sys.modules:
            continue
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
