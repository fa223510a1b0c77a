"""torch -> ONNX (one input, one named output per task, dynamic batch), onnxslim, then verification.

Verification follows Optimum's order: output names, then shapes, then values within a tolerance, on real
validation inputs, reporting the max abs difference and top-1 agreement per task. A failure is an error.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edgetl.errors import EdgetlError
from edgetl.evaluate.onnx_eval import onnx_outputs, ort_session
from edgetl.evaluate.torch_eval import predict_torch
from edgetl.models import ExportWrapper
from edgetl.runtime.tasks import get_kind

log = logging.getLogger("edgetl")


def export_onnx(
    loaded, out_path: Path, opset: int = 17, simplify: bool = True, model: torch.nn.Module | None = None
) -> Path:
    """`model` (default: the run's) -> ONNX; QAT passes its fake-quant model, which exports as Q/DQ."""
    model = (model if model is not None else loaded.model).eval()
    wrapper = ExportWrapper(model).eval()
    ex = loaded.splits.val
    if model.backbone.kind == "text":
        enc = loaded.prep(ex.inputs(np.arange(min(2, len(ex)))))
        names = list(loaded.prep.input_names)
        args = tuple(enc[n] for n in names)
        dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    else:
        args = (loaded.prep(ex.inputs(np.arange(min(2, len(ex))))),)
        names = ["input"]
        dynamic = {"input": {0: "batch"}}
    out_names = wrapper.output_names()
    for t in out_names:
        dynamic[t] = {0: "batch"}
    tmp = out_path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=out_names,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    if simplify:
        import onnx
        import onnxslim

        slim = onnxslim.slim(str(tmp))
        onnx.save(slim, str(tmp))
    tmp.replace(out_path)
    return out_path


def verify_onnx(loaded, onnx_path: Path, atol: float, samples: int) -> dict:
    """Compare ONNX Runtime FP32 with PyTorch on `samples` validation examples; raise above `atol`."""
    ex = loaded.splits.val
    sub = ex.take(np.arange(min(samples, len(ex))))
    ref = predict_torch(loaded.model, loaded.prep, sub, batch_size=64)
    sess = ort_session(onnx_path)
    got_names = [o.name for o in sess.get_outputs()]
    want = ExportWrapper(loaded.model).output_names()
    if got_names != want:
        raise EdgetlError(f"{onnx_path}: outputs {got_names} != the tasks' outputs {want}")
    outs = onnx_outputs(sess, loaded.prep, sub, batch_size=64, tasks=loaded.model.output_tasks())
    report = {"samples": len(sub), "atol": atol, "max_abs_diff": {}, "top1_agreement": {}, "passed": True}
    for t in loaded.model.task_names:
        got, kind = outs[t], get_kind(loaded.kinds[t])
        if not kind.dense and got.shape != ref[t].shape:  # a dense kind may export its class map, not logits
            raise EdgetlError(f"{onnx_path}: output {t!r} has shape {got.shape}, PyTorch {ref[t].shape}")
        diff, ok = kind.outputs_match(ref[t], got, atol)
        report["max_abs_diff"][t] = diff
        agree = kind.agreement(ref[t], got)
        if agree is not None:
            report["top1_agreement"][t] = agree
        if not ok:
            report["passed"] = False
    return report


# Above this many bytes of initializers an artifact is saved with its weights in `<file>.data` (ONNX external
# data, listed with its sha256 in the manifest); protobuf cannot hold a model over 2 GB in one file.
EXTERNAL_DATA_BYTES = 1 << 30


def embed_metadata(path: Path, meta: dict[str, str]) -> None:
    """Write edgetl's description into the ONNX file's metadata_props (what Netron and friends show)."""
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name, model.producer_version = "edgetl", meta.get("edgetl.version", "")
    tmp = Path(path).with_suffix(".meta.tmp.onnx")
    weights = sum(t.ByteSize() for t in model.graph.initializer)
    if weights > EXTERNAL_DATA_BYTES:  # protobuf caps a file at 2 GB: weights go to one <model>.data file
        data = Path(path).with_name(Path(path).name + ".data")
        data.unlink(missing_ok=True)  # onnx appends to an existing data file; the tensors are in memory
        onnx.save(
            model,
            str(tmp),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
    else:
        onnx.save(model, str(tmp))
    tmp.replace(path)
