"""ONNX Runtime static INT8 (Q/DQ, per-channel S8 weights, U8 activations): the fast path on CPUs.

Calibrate once, re-quantize many: `OrtStaticQuantizer.calibrate()` collects activation ranges one time;
`quantize(out, nodes_to_exclude)` then rebuilds the Q/DQ model in about a second, which is what the accuracy
gate's search needs. Text models default to dynamic quantization (static Q/DQ collapses BERT-style encoders).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.quantize.cpu_features import needs_reduce_range

log = logging.getLogger("edgetl")

METHODS = ("minmax", "entropy", "percentile")


class _Reader:
    """CalibrationDataReader over a list of feed dicts (one batch each)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self.i = 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def preprocess_model(fp32_path: Path, out_path: Path, text: bool = False) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=text)
    return out_path


class OrtStaticQuantizer:
    def __init__(self, fp32_path: Path, calib_feeds: list[dict[str, np.ndarray]], method: str = "minmax",
                 per_channel: bool = True, reduce_range: bool | None = None, text: bool = False,
                 extra_options: dict | None = None):
        if method not in METHODS:
            raise EdgetlError(f"calibration method {method!r}: allowed {', '.join(METHODS)}")
        self.fp32_path = Path(fp32_path)
        self.feeds = calib_feeds
        self.method = method
        self.per_channel = per_channel
        self.reduce_range = needs_reduce_range() if reduce_range is None else reduce_range
        self.text = text
        self.extra_options = dict(extra_options or {})
        self._tmp = tempfile.TemporaryDirectory(prefix="edgetl-ortq-")
        self.pre_path = preprocess_model(self.fp32_path, Path(self._tmp.name) / "pre.onnx", text)
        self.ranges = None

    def settings(self) -> dict:
        return {"backend": "onnxruntime", "format": "QDQ", "activations": "uint8 asymmetric", "weights": "int8 symmetric",
                "per_channel": self.per_channel, "reduce_range": self.reduce_range, "calibration_method": self.method,
                "calibration_batches": len(self.feeds),
                "calibration_samples": int(sum(next(iter(f.values())).shape[0] for f in self.feeds))}

    def calibrate(self) -> None:
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[self.method]
        op_types = list(set(QLinearOpsRegistry) | set(QDQRegistry))
        calibrator = create_calibrator(self.pre_path, op_types,
                                       augmented_model_path=str(Path(self._tmp.name) / "augmented.onnx"),
                                       calibrate_method=cm, providers=["CPUExecutionProvider"],
                                       extra_options={"percentile": 99.999} if self.method == "percentile" else {})
        calibrator.collect_data(_Reader(self.feeds))
        self.ranges = calibrator.compute_data()
        del calibrator

    def quantize(self, out_path: Path, nodes_to_exclude: list[str] | None = None,
                 op_types: list[str] | None = None) -> Path:
        import onnx
        from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
        from onnxruntime.quantization.quant_utils import QuantType
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        if self.ranges is None:
            self.calibrate()
        model = onnx.load(str(self.pre_path))
        ops = op_types or list(set(QLinearOpsRegistry) | set(QDQRegistry))
        q = QDQQuantizer(model, self.per_channel, self.reduce_range, QuantType.QInt8, QuantType.QUInt8,
                         self.ranges, [], list(nodes_to_exclude or []), ops, dict(self.extra_options))
        q.quantize_model()
        tmp = Path(out_path).with_suffix(".tmp.onnx")
        q.model.save_model_to_file(str(tmp))
        tmp.replace(out_path)
        return Path(out_path)


def quantize_dynamic_int8(fp32_path: Path, out_path: Path, nodes_to_exclude: list[str] | None = None,
                          op_types: tuple[str, ...] = ("MatMul", "Gemm")) -> Path:
    """Weights INT8 ahead of time, activations quantized per call: the usual CPU path for transformers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="edgetl-ortd-") as d:
        pre = preprocess_model(Path(fp32_path), Path(d) / "pre.onnx", text=True)
        tmp = Path(out_path).with_suffix(".tmp.onnx")
        quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8, per_channel=False,
                         nodes_to_exclude=list(nodes_to_exclude or []), op_types_to_quantize=list(op_types))
    tmp.replace(out_path)
    return Path(out_path)


def quantizable_nodes(path: Path, op_types=("Conv", "Gemm", "MatMul")) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in op_types]
