"""FP16 ONNX for GPUs / TensorRT (on ONNX Runtime CPU it runs, but slower: casts and no FP16 kernels).

Inputs and outputs stay FP32 by default (`keep_io_types`), so the runtime feeds it exactly like the FP32
model; `keep_io_types=False` gives FP16 inputs/outputs (the runtime casts its feeds to the declared dtype).
Constants beyond +-1e4 are clamped to +-1e4 and tiny ones flushed to +-1e-7 (onnxconverter-common's
defaults); the number of tensors touched either way is recorded, so the manifest says how lossy it was.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from edgetl.errors import EdgetlError


def convert_fp16(
    fp32_path: Path, out_path: Path, keep_io_types: bool = True, op_block_list: list[str] | None = None
) -> dict:
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError:
        raise EdgetlError("FP16 export needs onnxconverter-common: pip install onnxconverter-common") from None

    model = onnx.load(str(fp32_path))
    kw = {} if op_block_list is None else {"op_block_list": list(op_block_list)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False, **kw)
    clamped = flushed = 0
    for w in caught:
        m = re.search(r"float32 number (\S+) will be truncated to (\S+)", str(w.message))
        if m:
            if abs(float(m.group(2))) > 1.0:
                clamped += 1
            else:
                flushed += 1
    tmp = Path(out_path).with_suffix(".tmp.onnx")
    onnx.save(half, str(tmp))
    tmp.replace(out_path)
    return {
        "backend": "onnxconverter-common",
        "precision": "fp16",
        "keep_io_types": keep_io_types,
        "io_dtype": "float32" if keep_io_types else "float16",
        "target": "gpu",
        "tensors_clamped_to_1e4": clamped,
        "tensors_with_tiny_values_flushed": flushed,
        "op_block_list": list(op_block_list) if op_block_list is not None else "onnxconverter-common default",
    }
