"""Scoring an exported ONNX artifact on a split, exactly like a checkpoint (same metrics code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.evaluate.metrics import all_task_metrics


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
    outs: dict[str, list] = {n: [] for n in names}
    for start in range(0, len(examples), batch_size):
        idx = np.arange(start, min(start + batch_size, len(examples)))
        for n, arr in zip(names, sess.run(None, feeds_for(prep, examples, idx))):
            outs[n].append(arr)
    return {n: np.concatenate(v) for n, v in outs.items()}


def evaluate_onnx(path: Path, loaded, split: str = "test", full: bool = False, sess=None) -> dict[str, dict]:
    ex = getattr(loaded.splits, split)
    outputs = onnx_outputs(sess or ort_session(path), loaded.prep, ex)
    return all_task_metrics(outputs, ex.targets, loaded.kinds, loaded.splits.labels, full)
