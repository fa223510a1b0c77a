"""edgetl.runtime: run a deploy bundle with numpy + onnxruntime only (no torch).

    from edgetl.runtime import Predictor
    predictor = Predictor.load("runs/quickstart/deploy")
    predictor.predict("shirt.png")  # {"category": TaskPrediction(label="Shirt", score=0.93, ...)}

Everything here imports only numpy, onnxruntime (and, when the input needs them, pillow or tokenizers);
the export side uses `write_manifest` and `edgetl.runtime.atomic` to write what this package reads.
"""

from edgetl.runtime.manifest import SCHEMA_VERSION, Manifest, read_manifest, verify_files, write_manifest
from edgetl.runtime.predictor import Predictor, TaskPrediction

__all__ = [
    "SCHEMA_VERSION",
    "Manifest",
    "Predictor",
    "TaskPrediction",
    "read_manifest",
    "verify_files",
    "write_manifest",
]
