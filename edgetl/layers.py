"""The layers of edgetl, bottom first: a module may import its own layer and the ones below, never above.

tests/test_import_graph.py enforces it on every import (lazy ones included); docs/architecture.md explains it.
A new package goes into the lowest layer whose imports it needs.
"""

from __future__ import annotations

# (layer name, module prefixes). Prefixes are matched longest first.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # torch-free: what a device needs (runtime), errors and versions, the layer table itself
    ("runtime", ("edgetl.runtime", "edgetl.errors", "edgetl.versions", "edgetl.crash", "edgetl.layers", "edgetl")),
    ("recipe", ("edgetl.recipe",)),
    ("data", ("edgetl.data",)),
    ("models", ("edgetl.models", "edgetl.tasks")),  # tasks: the torch half of each task kind
    ("evaluate", ("edgetl.evaluate",)),  # metrics and batched inference (torch and ONNX Runtime)
    ("runs", ("edgetl.runs",)),  # run dir layout, checkpoints, a finished run loaded back
    ("train", ("edgetl.train",)),
    ("export", ("edgetl.export",)),  # torch -> ONNX, verification against PyTorch
    ("quantize", ("edgetl.quantize",)),
    ("compile", ("edgetl.compile",)),  # TensorRT engines
    ("bundle", ("edgetl.bundle",)),  # export_run: the deploy bundle, one transaction
    ("bench", ("edgetl.bench",)),
    ("reports", ("edgetl.reports",)),
    ("cli", ("edgetl.cli", "edgetl.__main__")),
]


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the layer that owns `module` (None when no prefix matches)."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i)
    return None if best is None else best[1]
