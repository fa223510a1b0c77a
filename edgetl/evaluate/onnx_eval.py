"""Scoring an exported ONNX artifact on a split, exactly like a checkpoint (same metrics code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.evaluate.metrics import all_task_metrics
from edgetl.runtime.batching import predict_in_batches


def ort_session(path: Path, threads: int | None = None, providers=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])


def feeds_for(prep, examples, idx) -> dict[str, np.ndarray]:
    x = prep(examples.inputs(idx))
    return {k: v.numpy() for k, v in x.items()} if isinstance(x, dict) else {"input": x.numpy()}


def onnx_outputs(sess, prep, examples, batch_size: int = 64) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return predict_in_batches(
        lambda idx: dict(zip(names, sess.run(None, feeds_for(prep, examples, idx)))), len(examples), batch_size
    )


def evaluate_onnx(path: Path, loaded, split: str = "test", full: bool = False, sess=None) -> dict[str, dict]:
    ex = getattr(loaded.splits, split)
    outputs = onnx_outputs(sess or ort_session(path), loaded.prep, ex)
    return all_task_metrics(outputs, ex.targets, loaded.kinds, loaded.splits.labels, full)
