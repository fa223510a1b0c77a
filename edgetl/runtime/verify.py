"""Check a bundle before trusting it: every listed file's sha256 (and the rest of `edgetl.runtime.trust`: labels,
unlisted files, the manifest's signature when a key is given), and optionally that each ONNX artifact loads.

Above `manifest` and `predictor` (it uses both), so the manifest module never has to import the Predictor.
"""

from __future__ import annotations

import os
from typing import Any

from edgetl.runtime.manifest import Manifest
from edgetl.runtime.predictor import Predictor
from edgetl.runtime.trust import check_bundle, read_trusted_manifest


def verify_bundle(bundle_dir: str | os.PathLike[str], load: bool = False, public_key: Any = None) -> Manifest:
    """Read the manifest (its signature checked with `public_key`) and check every file it lists; with `load`,
    also load every ONNX artifact (which checks its external data is listed and its inputs/outputs match)."""
    manifest = read_trusted_manifest(bundle_dir, public_key)
    check_bundle(bundle_dir, manifest)
    if load:
        for name, art in manifest.artifacts.items():
            if art.format == "onnx":
                Predictor.load(bundle_dir, artifact=name, public_key=public_key)
    return manifest
