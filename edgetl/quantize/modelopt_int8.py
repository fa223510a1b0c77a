"""modelopt INT8 Q/DQ (placed the way TensorRT wants), run in its own process.

modelopt patches ONNX Runtime's quantization modules for the rest of the process it runs in, after which ORT's
own quantize_static fails; so edgetl always calls it in a child process (`python -m edgetl.quantize.modelopt_int8`).
The result is for TensorRT: on ORT CPU it runs as slow fake-quantization, and its ORT accuracy is only a proxy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError, UnverifiedError

# edgetl's name of each calibration method the catalogue gives int8-modelopt -> modelopt's own name. Export refuses
# any other method before this runs (ExportOptions.resolved), so none is ever swapped for another here.
MODELOPT_METHOD = {"minmax": "max", "entropy": "entropy"}


def modelopt_available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("modelopt") is None:
        return False, "nvidia-modelopt is not installed (pip install 'edgetl[modelopt]')"
    if importlib.util.find_spec("onnx_graphsurgeon") is None:  # the `qat` extra installs modelopt without [onnx]
        return False, "nvidia-modelopt's ONNX part is not installed (pip install 'edgetl[modelopt]')"
    return True, ""


def quantize_modelopt(
    fp32_path: Path,
    out_path: Path,
    calib: dict[str, np.ndarray],
    method: str = "entropy",
    nodes_to_exclude: list[str] | None = None,
    timeout_s: int = 1800,
) -> dict:
    ok, why = modelopt_available()
    if not ok:
        raise UnverifiedError(why)
    with tempfile.TemporaryDirectory(prefix="edgetl-mo-") as d:
        npz = Path(d) / "calib.npz"
        np.savez(npz, **calib)
        job = {
            "onnx": str(fp32_path),
            "out": str(out_path),
            "calib": str(npz),
            "method": MODELOPT_METHOD[method],
            "exclude": list(nodes_to_exclude or []),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "edgetl.quantize.modelopt_int8", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    if proc.returncode != 0 or not Path(out_path).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EdgetlError(f"modelopt INT8 quantization failed: {tail[0][:300]}")
    return {
        "backend": "modelopt",
        "format": "QDQ",
        "activations": "int8 symmetric",
        "weights": "int8 symmetric",
        "calibration_method": method,
        "high_precision_dtype": "fp32",
        "calibration_samples": int(next(iter(calib.values())).shape[0]),
        "target": "tensorrt",
    }


class ModeloptQuantizer:
    """The accuracy gate's quantizer interface over modelopt (each quantize() is one child process).

    modelopt places Q/DQ for TensorRT itself; the gate only chooses `nodes_to_exclude`. Candidates are the
    compute nodes it quantizes (Conv/Gemm/MatMul); each is its own sensitivity unit (modelopt decides the
    activation Q/DQ placement around them).
    """

    OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

    def __init__(self, fp32_path: Path, calib: dict[str, np.ndarray], method: str = "entropy"):
        self.fp32_path = Path(fp32_path)
        self.calib = calib
        self.method = method
        self._settings: dict | None = None
        self.keep_float: list[str] = []  # always in float (a detector's decoding: edgetl.quantize.float_tail)

    def settings(self) -> dict:
        return dict(self._settings or {})

    def candidates(self) -> list[tuple[str, str]]:
        import onnx

        g = onnx.load(str(self.fp32_path), load_external_data=False).graph
        fixed = set(self.keep_float)
        return [(n.name, n.op_type) for n in g.node if n.op_type in self.OPS and n.name and n.name not in fixed]

    def units(self, anchors: list[str] | None = None) -> list[dict]:
        keep = set(anchors) if anchors is not None else None
        return [{"anchor": n, "nodes": [n]} for n, _ in self.candidates() if keep is None or n in keep]

    def quantize(self, out_path: Path, nodes_to_exclude: list[str] | None = None) -> Path:
        self._settings = quantize_modelopt(
            self.fp32_path,
            Path(out_path),
            self.calib,
            self.method,
            list(dict.fromkeys([*self.keep_float, *(nodes_to_exclude or [])])),
        )
        return Path(out_path)


def _worker(job: dict) -> None:
    import logging
    import re

    logging.disable(logging.WARNING)
    from modelopt.onnx.quantization import quantize

    data = dict(np.load(job["calib"]))
    calib = data if len(data) > 1 else next(iter(data.values()))
    tmp = job["out"] + ".tmp.onnx"
    quantize(
        job["onnx"],
        quantize_mode="int8",
        calibration_data=calib,
        calibration_method=job["method"],
        nodes_to_exclude=[re.escape(n) + "$" for n in job["exclude"]] or None,
        high_precision_dtype="fp32",
        output_path=tmp,
        log_level="ERROR",
    )
    Path(tmp).replace(job["out"])


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
