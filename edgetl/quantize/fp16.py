"""FP16 ONNX for GPUs / TensorRT (on ORT CPU it is slower: casts). Inputs/outputs stay FP32 by default."""

from __future__ import annotations

from pathlib import Path


def convert_fp16(fp32_path: Path, out_path: Path, keep_io_types: bool = True) -> dict:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(fp32_path))
    half = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False)
    tmp = Path(out_path).with_suffix(".tmp.onnx")
    onnx.save(half, str(tmp))
    tmp.replace(out_path)
    return {"backend": "onnxconverter-common", "keep_io_types": keep_io_types, "target": "gpu"}
