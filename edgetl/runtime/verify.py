"""Check a bundle before trusting it: every listed file's sha256, and optionally that each ONNX artifact loads.

Above `manifest` and `predictor` (it uses both), so the manifest module never has to import the Predictor.
"""

from __future__ import annotations

import os

from edgetl.runtime.manifest import Manifest, read_manifest, verify_files
from edgetl.runtime.predictor import Predictor


def verify_bundle(bundle_dir: str | os.PathLike[str], load: bool = False) -> Manifest:
    """Read the manifest and check the sha256 of every file it lists; with `load`, also load every ONNX
    artifact (which checks its external data is listed and its inputs/outputs match the manifest)."""
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest)
    if load:
        for name, art in manifest.artifacts.items():
            if art.format == "onnx":
                Predictor.load(bundle_dir, artifact=name)
    return manifest
